"""What ``import ccxt_questdb_assets`` offers: the spec's names and every error class, lazily."""

from __future__ import annotations

import inspect
import subprocess
import sys

import ccxt_questdb_assets
from ccxt_questdb_assets.core import errors


def test_every_exported_name_resolves():
    for name in ccxt_questdb_assets.__all__:
        assert getattr(ccxt_questdb_assets, name) is not None, name


def test_every_error_class_is_exported_at_the_top():
    classes = {n for n, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)}
    assert classes <= set(ccxt_questdb_assets.__all__), classes - set(ccxt_questdb_assets.__all__)
    assert ccxt_questdb_assets.UnsupportedHistoryError is errors.UnsupportedHistoryError


def test_the_package_imports_without_ccxt_or_dagster():
    code = "import sys, ccxt_questdb_assets; print('ccxt' in sys.modules, 'dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_dagster_definitions_load_without_an_http_client():
    """Loading the definitions (every run's process does) imports neither ccxt nor aiohttp: a run
    that fetches nothing (a warm rerun, checks alone) never pays for them; a fetch imports them."""
    code = (
        "import sys, ccxt_questdb_assets.defs.build, ccxt_questdb_assets.defs.ingest_assets; "
        "print('ccxt' in sys.modules, 'aiohttp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_process_that_built_the_definitions_keeps_what_lives_on_out_of_the_collectors_walks():
    """Building the definitions (a code server, a run worker) freezes what is alive then, once
    however often they are built, and makes gc.freeze() the first exit handler: a handler
    registered earlier runs after it and finds what was made since frozen too; the process still
    ends cleanly (exit code, last output)."""
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('at exit', gc.get_freeze_count() > made, flush=True))\n"
        "from ccxt_questdb_assets.defs.build import build_definitions\n"
        "from ccxt_questdb_assets.core.long_lived import freeze_long_lived\n"
        "from ccxt_questdb_assets.defs.project_config import ProjectConfig\n"
        "before = gc.get_freeze_count()\n"
        "build_definitions(ProjectConfig.load())\n"
        "built = gc.get_freeze_count()\n"
        "build_definitions(ProjectConfig.load())\n"
        "freeze_long_lived()\n"
        "made = gc.get_freeze_count()  # no more (objects freed since leave the count)\n"
        "kept = [[i] for i in range(1000)]  # made after: frozen at exit only\n"
        "print('built', before == 0 and built > 100_000, 'again', made <= built, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    assert done.stdout.splitlines() == ["built True again True", "at exit True"]


def test_a_library_a_run_loads_late_is_imported_without_a_collection_and_frozen_where_the_process_freezes():
    """``import_long_lived`` (pandas when a fill begins, an exchange's ccxt module, a run's engine):
    no collection runs during the import; in a library process nothing is frozen, in one that froze
    its long-lived objects (a run worker) what the import built is frozen with them; the collector
    is on again afterwards, and a module already imported is returned as it is."""
    code = (
        "import gc\n"
        "from ccxt_questdb_assets.core.long_lived import freeze_long_lived, import_long_lived\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(info['generation']) if phase == 'start' else None)\n"
        "fractions = import_long_lived('fractions')\n"
        "print('library', not runs, gc.get_freeze_count() == 0, gc.isenabled())\n"
        "freeze_long_lived()\n"
        "frozen, before = gc.get_freeze_count(), len(runs)\n"
        "pandas = import_long_lived('pandas')\n"
        "during, grew = len(runs) - before, gc.get_freeze_count() - frozen\n"
        "print('frozen', during == 0, grew > 50_000, gc.isenabled(), import_long_lived('pandas') is pandas)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    assert done.stdout.splitlines() == ["library True True True", "frozen True True True True"], done.stdout


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "CCXT_QUESTDB_PROJECT"}  # the embedded default

"""The embedded default stack: a local QuestDB and the bundled exchange emulator, wired to the
default project config through environment variables.

Used by ``ccxt-questdb demo`` and ``ccxt-questdb dev``. With ``CCXT_QUESTDB_PROJECT`` set (a real
project), nothing is started: the project says where QuestDB and the exchanges are.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from ccxt_questdb_assets.defs.project_config import ENV_PROJECT
from ccxt_questdb_assets.instance_home import ENV_DAGSTER_HOME, prepare_dagster_home
from ccxt_questdb_assets.services.questdb_server import ServerSettings, server_status, start_detached

DEFAULT_EMULATOR_PORT = 8765


def dagster_home() -> Path:
    """Prepare the instance directory (:func:`prepare_dagster_home`) and export it as ``$DAGSTER_HOME``."""
    home = prepare_dagster_home()
    os.environ[ENV_DAGSTER_HOME] = str(home)
    return home


@contextmanager
def local_stack(*, emulator_port: int = 0) -> Iterator[dict[str, str]]:
    """Start what the default project needs and export where it is; yields the exported variables."""
    from ccxt_questdb_assets.testing.emulator.server import EmulatorServer

    exported: dict[str, str] = {}
    if os.environ.get(ENV_PROJECT):
        print(f"using the project {os.environ[ENV_PROJECT]}: no local services started")
        yield exported
        return
    settings = ServerSettings.from_env()
    status = server_status(settings.data_dir)
    if not status.running:
        print(f"starting QuestDB in {settings.data_dir} ...")
        status = start_detached(settings)
    print(f"QuestDB {status.version or ''} running (pid {status.pid}); web console "
          f"http://{settings.client_host}:{settings.ports.http}")
    exported.update({
        "CCXT_QUESTDB_HOST": settings.client_host,
        "CCXT_QUESTDB_PG_PORT": str(settings.ports.pg),
        "CCXT_QUESTDB_HTTP_PORT": str(settings.ports.http),
    })
    emulator = EmulatorServer(port=emulator_port).start()
    exported["CCXT_QUESTDB_EXCHANGE_URL"] = emulator.base_url
    print(f"exchange emulator (Binance REST dialect) at {emulator.base_url}")
    os.environ.update(exported)
    try:
        yield exported
    finally:
        emulator.stop()

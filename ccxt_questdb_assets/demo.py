"""``ccxt-questdb demo``: the main job on the embedded default, launched as the UI launches it.

Starts the local stack headless (:mod:`ccxt_questdb_assets.dev_stack`: QuestDB unless already
running, the bundled emulator, ``dagster dev`` on a free port with ``./dagster_home`` as the
instance), adds the project's symbols to the dynamic partitions, launches each exchange's job once
per symbol over the last ``--days`` full UTC days through the webserver
(:mod:`ccxt_questdb_assets.demo_runs`), waits for the runs, prints what the instance recorded
(:mod:`ccxt_questdb_assets.demo_summary`), then stops ``dagster dev`` and the emulator. QuestDB
stays up for inspection, and ``ccxt-questdb dev`` shows these runs. Exits 1 if a run failed. Ctrl-C
or SIGTERM stop everything it started; runs it launched that had not ended are then marked
canceled.
"""

from __future__ import annotations

import argparse
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccxt_questdb_assets.demo_runs import DemoRun
    from ccxt_questdb_assets.demo_summary import RunResult
    from ccxt_questdb_assets.dev_stack import DevStack

#: A run of a week of two series and their derived assets takes minutes on a busy laptop.
DEFAULT_RUNS_TIMEOUT_S = 3600.0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="materialize a week of partitions for two symbols (the main job)")
    p.add_argument("--days", type=int, default=7, help="last full UTC days to materialize (default 7)")
    p.add_argument("--symbols", nargs="*", help="symbols of the project (default: each exchange's first two)")
    p.add_argument("--emulator-port", type=int, default=None, help="default 8765, as ccxt-questdb dev's")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_RUNS_TIMEOUT_S,
        help=f"seconds to wait for the runs (default {DEFAULT_RUNS_TIMEOUT_S:.0f})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from ccxt_questdb_assets.demo_summary import format_run
    from ccxt_questdb_assets.dev_stack import cancel_unfinished, dev_stack
    from ccxt_questdb_assets.instance_home import prepare_dagster_home
    from ccxt_questdb_assets.services.ports import free_port
    from ccxt_questdb_assets.stop_signals import sigterm_as_interrupt

    home = prepare_dagster_home()
    launched: dict[str, DemoRun] = {}
    try:
        with (
            sigterm_as_interrupt(),
            dev_stack(
                home, host="127.0.0.1", port=free_port(), emulator_port=args.emulator_port, stop_started_questdb=False
            ) as stack,
        ):
            results = _run_and_read(args, stack, launched)
            print("", *("\n".join(format_run(r)) for r in results), "", sep="\n", flush=True)
    except BaseException:  # interrupted, or dagster dev failed: the stack and the runs' processes are gone
        with DagsterInstance.from_config(str(home)) as instance:
            canceled = cancel_unfinished(instance, list(launched), "ccxt-questdb demo stopped before the run ended")
        if canceled:
            print(f"marked {len(canceled)} unfinished run(s) canceled", flush=True)
        raise
    failed = [r for r in results if not r.succeeded]
    print(f"{len(results) - len(failed)} of {len(results)} runs succeeded. Dagster instance: {home}")
    if stack.services:
        print("QuestDB stays up for inspection; stop it with: uv run ccxt-questdb questdb stop")
    print("Open the UI (lineage, partitions, these runs) with: uv run ccxt-questdb dev   # http://127.0.0.1:3000")
    return 1 if failed else 0


def _run_and_read(args: argparse.Namespace, stack: DevStack, launched: dict[str, DemoRun]) -> list[RunResult]:
    """Add the symbols' partitions, launch the runs (recorded in ``launched``), wait, read them back."""
    from datetime import datetime

    from dagster import DagsterInstance

    from ccxt_questdb_assets.defs.listings import sync_symbol_partitions
    from ccxt_questdb_assets.defs.project_config import ProjectConfig
    from ccxt_questdb_assets.demo_runs import launch, plan_runs
    from ccxt_questdb_assets.demo_summary import read_run

    project = ProjectConfig.load()  # after the stack exported where QuestDB and the emulator are
    plan = plan_runs(project, args.days, datetime.now(UTC).date(), args.symbols)
    home: Path = stack.home
    with DagsterInstance.from_config(str(home)) as instance:
        sync_symbol_partitions(instance, project)
    for run_id, demo_run in launch(stack.dagster, plan):
        launched[run_id] = demo_run
    stack.dagster.wait_for_runs(list(launched), args.timeout)
    with DagsterInstance.from_config(str(home)) as instance:
        return [read_run(instance, run_id, demo_run.label) for run_id, demo_run in launched.items()]

"""``ccxt-questdb dev``: the Dagster UI on the embedded default (or on a real project).

Runs the local stack (:mod:`ccxt_questdb_assets.dev_stack`: QuestDB unless already running, the
exchange emulator on a fixed port so the definitions match the demo's, ``dagster dev`` on
``./dagster_home``) until Ctrl-C or SIGTERM, then stops all it started, QuestDB included if it
started it, within 10 s. Runs it started that are still in progress then (a refresh, a backfill)
are stopped with it and marked canceled, so the UI does not show them running forever; the next
materialization of their partitions fetches only what they had not stored. (Only on the local
SQLite instance: a shared instance's runs may belong to other hosts.)
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagster import DagsterInstance


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "dev", help="open the Dagster UI (starts QuestDB and the emulator unless a project is set)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--emulator-port", type=int, default=None, help="default 8765, as the demo's")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from ccxt_questdb_assets.dev_stack import dev_stack
    from ccxt_questdb_assets.instance_home import prepare_dagster_home
    from ccxt_questdb_assets.stop_signals import sigterm_as_interrupt

    home = prepare_dagster_home()
    started = datetime.now(UTC)
    # Opened now, not at Ctrl-C: the runs left are marked within the stop budget.
    with DagsterInstance.from_config(str(home)) as instance, sigterm_as_interrupt():
        try:
            with dev_stack(
                home, host=args.host, port=args.port, emulator_port=args.emulator_port, stop_started_questdb=True
            ) as stack:
                print(
                    f"Dagster UI at http://{args.host}:{args.port} (Ctrl-C stops it and the services it started)",
                    flush=True,
                )
                code = stack.dagster.proc.wait()
                print(
                    f"dagster dev exited by itself with code {code}; see its log {stack.dagster.log_path}", flush=True
                )
                return code or 1
        except KeyboardInterrupt:
            return 0
        finally:
            cancel_left_runs(instance, started)


def cancel_left_runs(instance: DagsterInstance, started: datetime) -> list[str]:
    """Mark canceled the runs started since ``started`` that the stopped stack left unfinished (only
    on a local SQLite instance: a shared instance's runs may belong to other hosts)."""
    from dagster._core.storage.runs import SqliteRunStorage

    from ccxt_questdb_assets.dev_stack import cancel_unfinished, unfinished_runs

    if not isinstance(instance.run_storage, SqliteRunStorage):
        return []
    canceled = cancel_unfinished(
        instance, unfinished_runs(instance, started), "ccxt-questdb dev stopped before the run ended"
    )
    if canceled:
        print(f"marked {len(canceled)} run(s) it had started canceled", flush=True)
    return canceled

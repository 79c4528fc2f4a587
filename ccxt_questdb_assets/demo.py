"""The main job on the embedded default: a week of partitions for two symbols, through Dagster.

Starts the local QuestDB and the bundled exchange emulator (unless ``CCXT_QUESTDB_PROJECT`` names
a real project), materializes every asset of each exchange for the last full ``--days`` UTC days,
one run per symbol, in the local Dagster instance (``./dagster_home``), prints what was stored,
and says how to open the UI, which then shows these runs.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="materialize a week of partitions for two symbols (the main job)")
    p.add_argument("--days", type=int, default=7, help="last full UTC days to materialize (default 7)")
    p.add_argument("--symbols", nargs="*", help="symbols (default: the project's first two)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    warnings.filterwarnings("ignore", module="dagster")
    from ccxt_questdb_assets.instance_home import prepare_dagster_home
    from ccxt_questdb_assets.local_stack import local_stack

    home = prepare_dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    with local_stack():
        return _materialize(args, home)


def _materialize(args: argparse.Namespace, home) -> int:
    from dagster import DagsterInstance
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from ccxt_questdb_assets.defs.automation import ingest_job_name
    from ccxt_questdb_assets.defs.definitions import build_definitions
    from ccxt_questdb_assets.defs.partitions import sync_symbol_partitions
    from ccxt_questdb_assets.defs.project_config import ProjectConfig

    project = ProjectConfig.load()
    defs = build_definitions(project)
    today = datetime.now(timezone.utc).date()
    first, last = today - timedelta(days=args.days), today - timedelta(days=1)
    failures = 0
    with DagsterInstance.get() as instance:
        sync_symbol_partitions(instance, project)
        for ex in project.exchanges:
            assets = [a for a in defs.resolve_all_asset_specs() if a.group_name == ex.exchange_id]
            job = defs.resolve_job_def(ingest_job_name(ex.exchange_id))
            for symbol in args.symbols or ex.symbols[:2]:
                t0 = time.perf_counter()
                result = job.execute_in_process(instance=instance, raise_on_error=False, tags={
                    ASSET_PARTITION_RANGE_START_TAG: f"{first}|{symbol}",
                    ASSET_PARTITION_RANGE_END_TAG: f"{last}|{symbol}",
                    "ccxt_questdb/job": "demo",
                })
                failures += not result.success
                print(f"\n{ex.exchange_id} {symbol} {first}..{last}: run {result.run_id} "
                      f"{'succeeded' if result.success else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
                for spec in assets:
                    events = result.asset_materializations_for_node(spec.key.to_python_identifier())
                    if not events:
                        continue
                    md = events[0].metadata
                    print(f"  {spec.key.to_user_string():32s} rows stored {_v(md, 'dagster/row_count'):>8}  "
                          f"written {_v(md, 'rows_written', _v(md, 'rows_sent')):>8}  "
                          f"exchange requests {_v(md, 'exchange_requests', '-'):>4}  ({len(events)} partitions)")
                checks = result.get_asset_check_evaluations()
                failed = [c for c in checks if not c.passed]
                print(f"  asset checks: {len(checks) - len(failed)} passed, {len(failed)} failed")
                for check in failed:
                    print(f"  check {check.check_name} on {check.asset_key.to_user_string()} FAILED")
    print(f"\nDagster instance: {home}. Open the UI (lineage, partitions, these runs) with:\n"
          f"  uv run ccxt-questdb dev      # then http://127.0.0.1:3000\n"
          f"QuestDB stays up for inspection; stop it with: uv run ccxt-questdb questdb stop")
    return 1 if failures else 0


def _v(md: dict, key: str, default: Any = "-") -> Any:
    value = md.get(key)
    return getattr(value, "value", value) if value is not None else default

"""This project's side of a peer workload, as one whole process (targets 8 and 9).

    python -m benchmarks.peer_child --path library|dagster --mode ohlcv|trades --start-ms S --end-ms E \\
        --base-url URL --host H --port P --http-port HP --prefix T [--archive-url URL]

``library``: ``CcxtQuestDBProvider.from_config(...)`` and one ``ensure_range`` of ``[S, E)`` for
BTC/USDT (1m candles, or trades), unthrottled (limiter ``scope: local``, ``min_interval_s`` 0.001,
so ccxt's own throttle is off), through the archive at ``--archive-url`` when given.
``dagster``: one run materializing the project's ``binance/ohlcv/ohlcv_1m`` ingest asset for the
daily partitions of ``[S, E)`` (a partition-range run, as ``BACKFILL_POLICY`` makes of a backfill)
on an ephemeral instance, with the project's resources. The last stdout line is JSON: rows written,
pages, when the work began (``work_started_at``, epoch seconds: after the imports, the config and
the markets check; just before ``materialize`` for Dagster) and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import UTC, datetime, timedelta

from benchmarks.child_args import add_service_args, questdb_config

SYMBOL = "BTC/USDT"
UNTHROTTLED = {"scope": "local", "max_concurrency": 1, "min_interval_s": 0.001}


def library(args: argparse.Namespace) -> dict:
    from ccxt_questdb_assets import CcxtQuestDBProvider

    config = {
        "exchange": "binance",
        "mode": args.mode,
        "symbols": [SYMBOL],
        "questdb": questdb_config(args),
        "base_url": args.base_url,
        "rate_limiter": UNTHROTTLED,
    }
    if args.mode == "ohlcv":
        config["timeframe"] = "1m"
    if args.archive_url:
        config["archive"] = {"base_url": args.archive_url}
    provider = CcxtQuestDBProvider.from_config(config)
    node = CcxtQuestDBProvider.make_node_id(
        exchange_id="binance", symbol=SYMBOL, timeframe="1m" if args.mode == "ohlcv" else None, mode=args.mode
    )
    args.work_started_at = time.time()
    try:
        report = provider.ensure_range_sync(args.start_ms / 1000, args.end_ms / 1000, node_id=node)
    finally:
        provider.close_sync()
    return {"rows": report.rows_written, "pages": report.pages, "requests": report.requests}


def dagster(args: argparse.Namespace) -> dict:
    import tempfile

    from dagster import DagsterInstance, materialize
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from ccxt_questdb_assets.defs.asset_keys import ohlcv_key
    from ccxt_questdb_assets.defs.build import build_resources
    from ccxt_questdb_assets.defs.ingest_assets import build_ingest_assets
    from ccxt_questdb_assets.defs.project_config import ProjectConfig

    project = ProjectConfig.from_mapping(
        {
            "start_date": "2017-01-01",
            "questdb": questdb_config(args),
            "rate_limiter": UNTHROTTLED,
            "exchanges": {"binance": {"base_url": args.base_url, "symbols": [SYMBOL], "timeframes": ["1m"]}},
        },
        source="benchmark",
    )
    asset = next(a for a in build_ingest_assets(project) if a.key == ohlcv_key("binance", "1m"))
    first = datetime.fromtimestamp(args.start_ms / 1000, UTC).date()
    last = datetime.fromtimestamp(args.end_ms / 1000, UTC).date() - timedelta(days=1)
    tags = {ASSET_PARTITION_RANGE_START_TAG: f"{first}|{SYMBOL}", ASSET_PARTITION_RANGE_END_TAG: f"{last}|{SYMBOL}"}
    with tempfile.TemporaryDirectory(prefix="ccxt-peer-dagster-") as home:
        instance = DagsterInstance.ephemeral(tempdir=home)
        try:
            instance.add_dynamic_partitions("binance_symbols", [SYMBOL])
            args.work_started_at = time.time()
            result = materialize([asset], instance=instance, resources=build_resources(project), tags=tags)
            if not result.success:
                raise SystemExit("the Dagster run failed")
            events = result.asset_materializations_for_node(asset.node_def.name)
            days = [{k: getattr(v, "value", v) for k, v in e.metadata.items()} for e in events]
        finally:
            instance.dispose()
    return {
        "rows": sum(int(d.get("rows_written", 0)) for d in days),
        "partitions": len(days),
        "requests": sum(int(d.get("exchange_requests", 0)) for d in days),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_child", description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=("library", "dagster"), required=True)
    parser.add_argument("--mode", choices=("ohlcv", "trades"), default="ohlcv")
    parser.add_argument("--start-ms", type=int, required=True)
    parser.add_argument("--end-ms", type=int, required=True)
    parser.add_argument("--archive-url")
    add_service_args(parser)
    args = parser.parse_args()
    t0 = time.perf_counter()
    result = library(args) if args.path == "library" else dagster(args)
    result["seconds"] = time.perf_counter() - t0
    result["work_started_at"] = args.work_started_at
    result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()

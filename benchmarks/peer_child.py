"""This project's side of a peer workload, as one whole process (targets 8 and 9).

    python -m benchmarks.peer_child --path library|dagster|dagster-floor --mode ohlcv|trades --start-ms S \\
        --end-ms E [--grain day|month] --base-url URL --host H --port P --http-port HP --prefix T [--archive-url URL]

``library``: ``CcxtQuestDBProvider.from_config(...)`` and one ``ensure_range`` of ``[S, E)`` for
BTC/USDT (1m candles, or trades), unthrottled (limiter ``scope: local``, ``min_interval_s`` 0.001,
so ccxt's own throttle is off), through the archive at ``--archive-url`` when given.
``dagster``: one run materializing the project's ``binance/ohlcv/ohlcv_1m`` ingest asset for the
daily (``--grain month``: monthly) partitions of ``[S, E)`` (a partition-range run, as
``BACKFILL_POLICY`` makes of a backfill) on an ephemeral instance, with the project's resources,
out of the project's definitions built as a run worker builds them (and so ending as it ends).
``dagster-floor``: the same run of an asset with the same partitions and checks that does nothing
(Dagster's own cost for the run). The last stdout line is JSON: rows written,
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


def _project(args: argparse.Namespace):
    from ccxt_questdb_assets.defs.project_config import ProjectConfig

    return ProjectConfig.from_mapping(
        {
            "start_date": "2017-01-01",
            "questdb": questdb_config(args),
            "rate_limiter": UNTHROTTLED,
            "partitions": args.grain,
            "exchanges": {"binance": {"base_url": args.base_url, "symbols": [SYMBOL], "timeframes": ["1m"]}},
        },
        source="benchmark",
    )


def _range_tags(args: argparse.Namespace) -> dict[str, str]:
    """The partition-range run's tags: the days (or months) of ``[S, E)``."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    first = datetime.fromtimestamp(args.start_ms / 1000, UTC).date()
    last = datetime.fromtimestamp(args.end_ms / 1000, UTC).date() - timedelta(days=1)
    if args.grain == "month":
        first, last = first.replace(day=1), last.replace(day=1)
    return {ASSET_PARTITION_RANGE_START_TAG: f"{first}|{SYMBOL}", ASSET_PARTITION_RANGE_END_TAG: f"{last}|{SYMBOL}"}


def _materialize(args: argparse.Namespace, asset, resources: dict) -> list[dict]:
    """One run of ``asset`` over the range on an ephemeral instance; each partition's metadata."""
    import tempfile

    from dagster import DagsterInstance, materialize

    with tempfile.TemporaryDirectory(prefix="ccxt-peer-dagster-") as home:
        instance = DagsterInstance.ephemeral(tempdir=home)
        try:
            instance.add_dynamic_partitions("binance_symbols", [SYMBOL])
            args.work_started_at = time.time()
            result = materialize([asset], instance=instance, resources=resources, tags=_range_tags(args))
            if not result.success:
                raise SystemExit("the Dagster run failed")
            events = result.asset_materializations_for_node(asset.node_def.name)
            return [{k: getattr(v, "value", v) for k, v in e.metadata.items()} for e in events]
        finally:
            instance.dispose()


def dagster(args: argparse.Namespace) -> dict:
    from ccxt_questdb_assets.defs.asset_keys import ohlcv_key
    from ccxt_questdb_assets.defs.build import build_definitions

    definitions = build_definitions(_project(args))  # as a run worker loads the code location
    asset = definitions.get_assets_def(ohlcv_key("binance", "1m"))
    periods = _materialize(args, asset, dict(definitions.resources or {}))
    return {
        "rows": sum(int(d.get("rows_written", 0)) for d in periods),
        "partitions": len(periods),
        "requests": sum(int(d.get("exchange_requests", 0)) for d in periods),
    }


def dagster_floor(args: argparse.Namespace) -> dict:
    """The same run doing nothing, with Dagster alone (this project is not imported): an asset of
    the same key, partitions (UTC days or months since 2017 x the symbol) and three blocking
    partitioned checks, whose body stores nothing, gives each partition two numbers and passes
    every check. What it costs is Dagster's own part of the ``dagster`` path: its imports, the
    instance, the run and its events."""
    import warnings

    from dagster import (
        AssetCheckEvaluation,
        AssetCheckSpec,
        AssetKey,
        DailyPartitionsDefinition,
        DynamicPartitionsDefinition,
        MaterializeResult,
        MonthlyPartitionsDefinition,
        MultiPartitionsDefinition,
        Output,
        asset,
    )

    dates = (MonthlyPartitionsDefinition if args.grain == "month" else DailyPartitionsDefinition)(
        start_date="2017-01-01", timezone="UTC", end_offset=1
    )
    partitions = MultiPartitionsDefinition(
        {"date": dates, "symbol": DynamicPartitionsDefinition(name="binance_symbols")}
    )
    key = AssetKey(["binance", "ohlcv", "ohlcv_1m"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # partitioned checks are a preview feature, as the project says
        specs = [
            AssetCheckSpec(name, asset=key, blocking=True, partitions_def=partitions)
            for name in ("no_gaps", "unique_increasing_timestamps", "ohlc_sanity")
        ]

    @asset(key=key, partitions_def=partitions, check_specs=specs)
    def floor(context):
        keys = context.partition_keys
        for partition in keys:
            context.add_asset_metadata({"dagster/row_count": 0, "rows_written": 0}, partition_key=partition)
        yield MaterializeResult(asset_key=key)
        for spec in specs:
            for partition in keys:
                yield AssetCheckEvaluation(
                    asset_key=key, check_name=spec.name, passed=True, partition=partition, blocking=True
                )
            yield Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(spec.key))

    return {"rows": 0, "partitions": len(_materialize(args, floor, {})), "requests": 0}


PATHS = {"library": library, "dagster": dagster, "dagster-floor": dagster_floor}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_child", description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=tuple(PATHS), required=True)
    parser.add_argument("--grain", choices=("day", "month"), default="day", help="Dagster paths: the partition grain")
    parser.add_argument("--mode", choices=("ohlcv", "trades"), default="ohlcv")
    parser.add_argument("--start-ms", type=int, required=True)
    parser.add_argument("--end-ms", type=int, required=True)
    parser.add_argument("--archive-url")
    add_service_args(parser)
    args = parser.parse_args()
    t0 = time.perf_counter()
    result = PATHS[args.path](args)
    result["seconds"] = time.perf_counter() - t0
    result["work_started_at"] = args.work_started_at
    result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()

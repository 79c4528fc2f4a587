"""Derived assets: candles computed inside QuestDB from what the ingestion assets stored.

* ``{exchange}/ohlcv/ohlcv_{tf}_resampled``, one per ``resample_to`` timeframe: the exchange's
  first timeframe (``{exchange}/ohlcv/ohlcv_1m``) resampled with ``SAMPLE BY {tf} ALIGN TO CALENDAR`` (first
  open, max high, min low, last close, summed volume) into ``{prefix}_ohlcv_resampled``.
* ``{exchange}/ohlcv/trade_bars_1m`` (exchanges with ``trades: true``): 1m bars built from the trades
  asset (open = first trade, close = last trade of the minute by time then trade id, volume =
  summed amount) into ``{prefix}_trade_bars``.

Only bars lying wholly inside what the upstream's coverage claims (closed, complete or known to
be empty) are computed, so every derived bar is final (``closed`` true); the rest of a partition
is reported as ``uncovered_closed_bars`` and computed by a later run once the upstream covers it.
Each run recomputes its partitions' covered bars (an upsert: the tables' DEDUP keys replace the
previous values), then records the derived series' own coverage beside its table (bars without
upstream rows as empty spans), once the rows are visible, so the ``no_gaps`` check treats
ingested and derived candles alike. Bars longer than a partition (a day or a month) are computed
only by runs whose partition range holds the whole bar. The assets take their upstream's grain,
so a partition maps to the same partition upstream (identity).

The assets follow their upstream (``asset_options.follow_upstream``): a partition the UI, a
backfill or the refresh updates upstream is computed next, once the upstream's blocking checks
passed. The assets return a :class:`StoredSlice` with each partition's own figures (bars written
into that day or month, bars computed, closed bars left uncovered); the IO manager waits for the WAL and
adds what each partition holds; the candle checks run per partition in the same step.
"""

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    IdentityPartitionMapping,
    MaterializeResult,
)

from ccxt_questdb_assets.core.long_lived import import_long_lived
from ccxt_questdb_assets.core.node_ids import OHLCV, TRADES
from ccxt_questdb_assets.defs.asset_keys import (
    COMPUTED,
    TRADE_BARS_TIMEFRAME,
    catalog_tags,
    ohlcv_key,
    resampled_key,
    trade_bars_key,
    trades_key,
)
from ccxt_questdb_assets.defs.asset_options import AssetOptions
from ccxt_questdb_assets.defs.checks import CandleChecks
from ccxt_questdb_assets.defs.derivation import Derivation
from ccxt_questdb_assets.defs.exchange_project import ExchangeProject
from ccxt_questdb_assets.defs.ingest_assets import ohlcv_table, trades_table
from ccxt_questdb_assets.defs.io_manager import series_metadata
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.storage.series_table import SeriesTable

KINDS = {"questdb"}


def resampled_table(ex: ExchangeProject, timeframe: str) -> SeriesTable:
    return SeriesTable.candles(ex.ohlcv.tables, ex.exchange_id, timeframe, related="ohlcv_resampled")


def trade_bars_table(ex: ExchangeProject) -> SeriesTable:
    return SeriesTable.candles(ex.ohlcv.tables, ex.exchange_id, TRADE_BARS_TIMEFRAME, related="trade_bars")


def build_derived_assets(project: ProjectConfig) -> list[AssetsDefinition]:
    out: list[AssetsDefinition] = []
    for ex in project.exchanges:
        candles = AssetOptions.of(project, ex, OHLCV)  # a derived asset takes its upstream's grain
        out += [_resampled_asset(candles, ex, tf) for tf in ex.resample_to]
        if ex.trades:
            out.append(_trade_bars_asset(AssetOptions.of(project, ex, TRADES), ex))
    return out


def _resampled_asset(options: AssetOptions, ex: ExchangeProject, tf: str) -> AssetsDefinition:
    """``tf`` candles computed from the first timeframe (the project file ensures there is one)."""
    base_tf = ex.timeframes[0]
    source, upstream = ohlcv_table(ex, base_tf), ohlcv_key(ex.exchange_id, base_tf)
    target, key = resampled_table(ex, tf), resampled_key(ex.exchange_id, tf)
    description = (
        f"{tf} candles of {ex.exchange_id}, computed inside QuestDB from the {base_tf} candles of "
        f"`{upstream.to_user_string()}` with `SAMPLE BY {tf} ALIGN TO CALENDAR`: open = first open, "
        f"high = max high, low = min low, close = last close, volume = sum of volumes. Only {tf} bars "
        f"lying wholly inside what the upstream's coverage claims are written, so each is final "
        f"(`closed`); the rest of the partition is reported as uncovered and computed once the "
        f"upstream covers it. Table `{target.table}`, coverage `{target.coverage_table}`."
    )
    derivation = Derivation(source, target, ex.ohlcv.recheck)
    checks = CandleChecks(key, target, ex.ohlcv.recheck, options.partitions_def)
    return _derived_asset(options, upstream, derivation, checks, description)


def _trade_bars_asset(options: AssetOptions, ex: ExchangeProject) -> AssetsDefinition:
    """1m bars built from the trades, checked against the exchange's own 1m candles if it has them."""
    source, upstream = trades_table(ex), trades_key(ex.exchange_id)
    target, key = trade_bars_table(ex), trade_bars_key(ex.exchange_id)
    description = (
        f"1m bars of {ex.exchange_id} built inside QuestDB from the trades of "
        f"`{upstream.to_user_string()}` with `SAMPLE BY 1m`: open = first trade of the minute, close = "
        "last trade (by time, then trade id), high/low = max/min price, volume = sum of amounts. Only "
        "minutes wholly covered by the trades' coverage are written; a covered minute without trades "
        "has no bar and is recorded as empty. Checked against the exchange's own 1m candles. Table "
        f"`{target.table}`, coverage `{target.coverage_table}`."
    )
    policy = ex.trades_config.recheck
    candles = (ohlcv_key(ex.exchange_id, TRADE_BARS_TIMEFRAME), ohlcv_table(ex, TRADE_BARS_TIMEFRAME))
    exchange_candles = candles if TRADE_BARS_TIMEFRAME in ex.timeframes else None
    derivation = Derivation(source, target, policy)
    checks = CandleChecks(key, target, policy, options.partitions_def, exchange_candles=exchange_candles)
    return _derived_asset(options, upstream, derivation, checks, description)


def _derived_asset(
    options: AssetOptions, upstream: AssetKey, derivation: Derivation, checks: CandleChecks, description: str
) -> AssetsDefinition:
    """The asset of ``derivation``'s target (the checks' asset), computed from ``upstream``'s partitions."""
    key, source, target = checks.asset_key, derivation.source, derivation.target

    def derived(
        context: AssetExecutionContext, questdb: QuestDBResource
    ):  # yields MaterializeResult, then check evaluations
        client = questdb.client()
        if key in context.selected_asset_keys:
            run_derived = import_long_lived("ccxt_questdb_assets.defs.derived_run").run_derived  # the SQL
            yield MaterializeResult(asset_key=key, value=run_derived(context, client, derivation, options.grain))
        yield from checks.evaluate(context, client)

    metadata = {
        **series_metadata(target),
        "computed_from": upstream.to_user_string(),
        "questdb/source_table": source.table,
    }
    deps = [AssetDep(upstream, partition_mapping=IdentityPartitionMapping())]
    tags = catalog_tags(target.exchange, OHLCV, COMPUTED, target.timeframe)
    spec = AssetSpec(key, description=description, tags=tags, kinds=KINDS, deps=deps, metadata=metadata)
    return options.define(derived, spec, checks.specs(), fetched=False)

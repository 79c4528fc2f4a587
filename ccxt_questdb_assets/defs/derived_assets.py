"""Derived assets: candles computed inside QuestDB from what the ingestion assets stored.

* ``{exchange}_ohlcv_{tf}_resampled``, one per ``resample_to`` timeframe: the exchange's first
  timeframe (``{exchange}_ohlcv_1m``) resampled with ``SAMPLE BY {tf} ALIGN TO CALENDAR`` (first
  open, max high, min low, last close, summed volume) into ``{prefix}_ohlcv_resampled``.
* ``{exchange}_trade_bars_1m`` (exchanges with ``trades: true``): 1m bars built from the trades
  asset (open = first trade, close = last trade of the minute by time then trade id, volume =
  summed amount) into ``{prefix}_trade_bars``.

Only bars lying wholly inside what the upstream's coverage claims (closed, complete or known to
be empty) are computed, so every derived bar is final (``closed`` true); the rest of a partition
is reported as ``uncovered_closed_bars`` and computed by a later run once the upstream covers it.
Each run recomputes its partitions' covered bars (an upsert: the tables' DEDUP keys replace the
previous values), then records the derived series' own coverage beside its table (bars without
upstream rows as empty spans), once the rows are visible, so the ``no_gaps`` check treats
ingested and derived candles alike. Bars longer than a day are computed only by runs whose
partition range holds the whole bar.

The assets return a :class:`StoredSlice`: the IO manager waits for the WAL and describes the slice.
"""

from collections.abc import Callable

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    IdentityPartitionMapping,
    MetadataValue,
    asset,
)

from ccxt_questdb_assets.core.coverage import EmptyRecheckPolicy
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.defs.ingest_assets import (
    IO_MANAGER_KEY,
    ohlcv_asset_name,
    ohlcv_table,
    trades_asset_name,
    trades_table,
)
from ccxt_questdb_assets.defs.io_manager import SeriesTable, StoredSlice
from ccxt_questdb_assets.defs.partitions import BACKFILL_POLICY, market_partitions, slices_of
from ccxt_questdb_assets.defs.project_config import ExchangeProject, ProjectConfig
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.exchange.fetchers import wall_clock_ms
from ccxt_questdb_assets.history.config import DEFAULT_TABLE_PREFIX
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.storage.derived import (
    bar_opens,
    bar_windows,
    bars_from_trades,
    derived_spans,
    resample_candles,
)
from ccxt_questdb_assets.storage.identifiers import validate_table_name
from ccxt_questdb_assets.storage.schema import TableNames

KINDS = {"questdb"}
TRADE_BARS_TIMEFRAME = "1m"


def resampled_asset_name(exchange_id: str, timeframe: str) -> str:
    return f"{exchange_id}_ohlcv_{timeframe}_resampled"


def trade_bars_asset_name(exchange_id: str) -> str:
    return f"{exchange_id}_trade_bars_{TRADE_BARS_TIMEFRAME}"


def _table_name(ex: ExchangeProject, suffix: str) -> str:
    """``{table_prefix}_{suffix}``; with an explicit ``questdb.table``, ``{table}_{suffix}``."""
    q = ex.mapping.get("questdb") or {}
    base = q["table"] if q.get("table") else (q.get("table_prefix") or DEFAULT_TABLE_PREFIX)
    return validate_table_name(f"{base}_{suffix}")


def resampled_table(ex: ExchangeProject, timeframe: str) -> SeriesTable:
    return SeriesTable(_table_name(ex, "ohlcv_resampled"), "ohlcv", ex.exchange_id, Timeframe.parse(timeframe).name)


def trade_bars_table(ex: ExchangeProject) -> SeriesTable:
    return SeriesTable(_table_name(ex, "trade_bars"), "ohlcv", ex.exchange_id, TRADE_BARS_TIMEFRAME)


def coverage_table(table: SeriesTable) -> str:
    """Where a series' coverage lives: beside its data table, as the ingestion engine keeps it."""
    return TableNames.for_data_table(table.table).coverage


def build_derived_assets(project: ProjectConfig) -> list[AssetsDefinition]:
    out: list[AssetsDefinition] = []
    for ex in project.exchanges:
        base_tf = ex.timeframes[0]
        source = ohlcv_table(ex, base_tf)
        for tf in ex.resample_to:
            target = resampled_table(ex, tf)
            out.append(_derived_asset(
                project, ex, name=resampled_asset_name(ex.exchange_id, tf), target=target, source=source,
                upstream=ohlcv_asset_name(ex.exchange_id, base_tf), policy=ex.ohlcv.recheck,
                write=_resample_writer(source, target),
                description=(
                    f"{tf} candles of {ex.exchange_id}, computed inside QuestDB from the {base_tf} candles of "
                    f"`{ohlcv_asset_name(ex.exchange_id, base_tf)}` with `SAMPLE BY {tf} ALIGN TO CALENDAR`: open = "
                    f"first open, high = max high, low = min low, close = last close, volume = sum of volumes. "
                    f"Only {tf} bars lying wholly inside what the upstream's coverage claims are written, so "
                    f"each is final (`closed`); the rest of the partition is reported as uncovered and computed "
                    f"once the upstream covers it. Table `{target.table}`."),
            ))
        if ex.trades:
            source = trades_table(ex)
            target = trade_bars_table(ex)
            out.append(_derived_asset(
                project, ex, name=trade_bars_asset_name(ex.exchange_id), target=target, source=source,
                upstream=trades_asset_name(ex.exchange_id), policy=ex.trades_config.recheck,
                write=_trade_bars_writer(source, target),
                description=(
                    f"1m bars of {ex.exchange_id} built inside QuestDB from the trades of "
                    f"`{trades_asset_name(ex.exchange_id)}` with `SAMPLE BY 1m`: open = first trade of the minute, "
                    "close = last trade (by time, then trade id), high/low = max/min price, volume = sum of "
                    "amounts. Only minutes wholly covered by the trades' coverage are written; a covered minute "
                    "without trades has no bar and is recorded as empty. Checked against the exchange's own 1m "
                    f"candles. Table `{target.table}`."),
            ))
    return out


Writer = Callable[[QuestDBClient, str, TimeWindow], None]


def _resample_writer(source: SeriesTable, target: SeriesTable) -> Writer:
    tf = Timeframe.parse(target.timeframe)

    def write(client: QuestDBClient, symbol: str, window: TimeWindow) -> None:
        resample_candles(client, source_table=source.table, target_table=target.table, source=source.node(symbol),
                         target=tf, window=window)

    return write


def _trade_bars_writer(source: SeriesTable, target: SeriesTable) -> Writer:
    tf = Timeframe.parse(target.timeframe)

    def write(client: QuestDBClient, symbol: str, window: TimeWindow) -> None:
        bars_from_trades(client, trades_table=source.table, target_table=target.table, exchange=source.exchange,
                         symbol=symbol, timeframe=tf, window=window)

    return write


def _derived_asset(project: ProjectConfig, ex: ExchangeProject, *, name: str, target: SeriesTable,
                   source: SeriesTable, upstream: str, policy: EmptyRecheckPolicy, write: Writer,
                   description: str) -> AssetsDefinition:
    @asset(
        name=name,
        group_name=ex.exchange_id,
        description=description,
        partitions_def=market_partitions(ex.exchange_id, project.start_date),
        backfill_policy=BACKFILL_POLICY,
        deps=[AssetDep(AssetKey(upstream), partition_mapping=IdentityPartitionMapping())],
        kinds=KINDS,
        io_manager_key=IO_MANAGER_KEY,
        metadata={**target.definition_metadata(), "computed_from": upstream,
                  "questdb/source_table": source.table},
    )
    def derived(context: AssetExecutionContext, questdb: QuestDBResource) -> StoredSlice:
        return run_derived(context, questdb.client(), source=source, target=target, policy=policy, write=write)

    derived.__name__ = name
    return derived


def run_derived(context: AssetExecutionContext, client: QuestDBClient, *, source: SeriesTable, target: SeriesTable,
                policy: EmptyRecheckPolicy, write: Writer) -> StoredSlice:
    """Compute every covered bar of the run's partitions, record the derived coverage, report."""
    tf = Timeframe.parse(target.timeframe)
    now = wall_clock_ms()
    source_coverage = CoverageStore(client, coverage_table(source))
    target_coverage = CoverageStore(client, coverage_table(target))
    bars = computed = closed_bars = 0
    windows_done = 0
    for sl in slices_of(context.partition_keys):
        covered = source_coverage.load(str(source.node(sl.symbol))).covered(now, policy)
        todo = [w for window in sl.windows for w in bar_windows(covered, window, tf)]
        for w in todo:
            write(client, sl.symbol, w)
        if todo:
            client.wait_visible(target.table)  # rows visible before their coverage is recorded
        spans = []
        for w in todo:
            opens = bar_opens(client, target.table, target.node(sl.symbol), w)
            bars += int(opens.size)
            computed += tf.bars_between(w.start_ms, w.end_ms)
            spans += derived_spans(w, opens, tf, now, policy)
        target_coverage.record(str(target.node(sl.symbol)), spans)
        windows_done += len(todo)
        for window in sl.windows:
            last = min(window.end_ms, tf.floor(now))
            first = tf.ceil(window.start_ms)
            closed_bars += tf.bars_between(first, last) if last > first else 0
        context.log.info(f"{target.node(sl.symbol)}: {len(todo)} covered window(s) computed from {source.table}")
    uncovered = closed_bars - computed
    context.add_output_metadata({
        "rows_written": bars,
        "bars_computed": computed,
        "windows_computed": windows_done,
        "uncovered_closed_bars": uncovered,
        "coverage_after": MetadataValue.float(round(computed / closed_bars, 6) if closed_bars else 0.0),
        "computed_from": source.table,
    })
    if uncovered:
        context.log.warning(f"{uncovered} closed {tf.name} bar(s) of this run lie outside the upstream's coverage "
                            f"and were not computed: materialize the upstream partitions first")
    return StoredSlice(rows_written=bars)

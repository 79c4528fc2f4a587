"""Asset checks on every candle asset (ingested and derived), partitioned like the assets.

One result per run: a run of one partition checks that day of that symbol; a range run (a
backfill under the multi-run policy) checks every symbol and day of ``context.partition_keys``
and reports the first problems across them.

Blocking (a failure stops downstream assets of the same run, e.g. the resampled candles):

* ``no_gaps``: every closed bar of the window that the series' coverage claims, and does not
  know to be empty (an outage, before listing), is stored as a closed row. Closed time that
  coverage does not claim is reported (``uncovered_closed_bars``, ``first_uncovered``) without
  failing: the partition is not fully materialized yet, which is a matter for the schedule.
* ``unique_increasing_timestamps``: as many distinct timestamps as rows per series and window
  (rows come back in timestamp order, so unique means strictly increasing), and every timestamp
  on the timeframe's bar grid.
* ``ohlc_sanity``: no row with high < max(open, close), low > min(open, close), high < low,
  volume < 0, or a NaN/NULL value. QuestDB compares doubles with a tolerance of about 1e-10.

Not blocking: ``agrees_with_exchange_candles`` on ``{exchange}_trade_bars_1m``: on the minutes
both hold, the bars built from trades equal the exchange's 1m candles (open, high, low, close
exactly, volume within 1e-9 relative).

The SQL lives in ``storage.quality``; these functions only choose series, windows and metadata.
"""

from dataclasses import dataclass

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetDep,
    AssetKey,
    IdentityPartitionMapping,
    MetadataValue,
    PartitionsDefinition,
    asset_check,
)

from ccxt_questdb_assets.core.coverage import EmptyRecheckPolicy
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import format_ms
from ccxt_questdb_assets.defs.derived_assets import (
    TRADE_BARS_TIMEFRAME,
    coverage_table,
    resampled_asset_name,
    resampled_table,
    trade_bars_asset_name,
    trade_bars_table,
)
from ccxt_questdb_assets.defs.ingest_assets import ohlcv_asset_name, ohlcv_table
from ccxt_questdb_assets.defs.io_manager import SeriesTable
from ccxt_questdb_assets.defs.partitions import SymbolSlice, market_partitions, slices_of
from ccxt_questdb_assets.defs.project_config import ExchangeProject, ProjectConfig
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.exchange.fetchers import wall_clock_ms
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.storage.quality import (
    EXAMPLES,
    OHLC_RULES,
    bar_gaps,
    bar_runs,
    compare_candles,
    ms_list,
    ohlc_report,
    stored_opens,
    timestamp_report,
)

VOLUME_REL_TOL = 1e-9


@dataclass(frozen=True)
class CandleAsset:
    """A candle asset to check: its name, table and the empty-recheck policy of its coverage."""

    name: str
    table: SeriesTable
    policy: EmptyRecheckPolicy


def candle_assets(ex: ExchangeProject) -> list[CandleAsset]:
    out = [CandleAsset(ohlcv_asset_name(ex.exchange_id, tf), ohlcv_table(ex, tf), ex.ohlcv.recheck)
           for tf in ex.timeframes]
    out += [CandleAsset(resampled_asset_name(ex.exchange_id, tf), resampled_table(ex, tf), ex.ohlcv.recheck)
            for tf in ex.resample_to]
    if ex.trades:
        out.append(CandleAsset(trade_bars_asset_name(ex.exchange_id), trade_bars_table(ex), ex.trades_config.recheck))
    return out


def build_checks(project: ProjectConfig) -> list[AssetChecksDefinition]:
    out: list[AssetChecksDefinition] = []
    for ex in project.exchanges:
        parts = market_partitions(ex.exchange_id, project.start_date)
        for candle in candle_assets(ex):
            out += _candle_checks(candle, parts)
        if ex.trades and TRADE_BARS_TIMEFRAME in ex.timeframes:
            out.append(_agreement_check(ex, parts))
    return out


def _candle_checks(candle: CandleAsset, parts: PartitionsDefinition) -> list[AssetChecksDefinition]:
    key = AssetKey(candle.name)
    table = candle.table

    @asset_check(asset=key, name="no_gaps", partitions_def=parts, blocking=True,
                 description="Every closed bar the series' coverage claims, and does not know to be empty, is "
                             "stored (missing bars fail); closed time coverage does not claim is reported.")
    def no_gaps(context: AssetCheckExecutionContext, questdb: QuestDBResource) -> AssetCheckResult:
        return check_no_gaps(questdb.client(), table, candle.policy, slices_of(context.partition_keys))

    @asset_check(asset=key, name="unique_increasing_timestamps", partitions_def=parts, blocking=True,
                 description="One row per bar: as many distinct timestamps as rows per series and window, every "
                             "timestamp on the bar grid.")
    def unique_increasing_timestamps(context: AssetCheckExecutionContext, questdb: QuestDBResource) -> AssetCheckResult:
        return check_unique_timestamps(questdb.client(), table, slices_of(context.partition_keys))

    @asset_check(asset=key, name="ohlc_sanity", partitions_def=parts, blocking=True,
                 description="No bar with high < max(open, close), low > min(open, close), high < low, "
                             "volume < 0, or a NaN.")
    def ohlc_sanity(context: AssetCheckExecutionContext, questdb: QuestDBResource) -> AssetCheckResult:
        return check_ohlc_sanity(questdb.client(), table, slices_of(context.partition_keys))

    return [no_gaps, unique_increasing_timestamps, ohlc_sanity]


def _agreement_check(ex: ExchangeProject, parts: PartitionsDefinition) -> AssetChecksDefinition:
    bars = trade_bars_table(ex)
    candles = ohlcv_table(ex, TRADE_BARS_TIMEFRAME)
    upstream = AssetKey(ohlcv_asset_name(ex.exchange_id, TRADE_BARS_TIMEFRAME))

    @asset_check(asset=AssetKey(trade_bars_asset_name(ex.exchange_id)), name="agrees_with_exchange_candles",
                 partitions_def=parts, blocking=False,
                 additional_deps=[AssetDep(upstream, partition_mapping=IdentityPartitionMapping())],
                 description=f"On the minutes both hold, bars built from trades equal the exchange's 1m candles "
                             f"(`{upstream.to_user_string()}`): open, high, low, close exactly, volume within "
                             f"{VOLUME_REL_TOL:g} relative.")
    def agrees_with_exchange_candles(context: AssetCheckExecutionContext, questdb: QuestDBResource) -> AssetCheckResult:
        return check_agreement(questdb.client(), bars, candles, slices_of(context.partition_keys))

    return agrees_with_exchange_candles


# -- evaluations -------------------------------------------------------------------------------
def _scope(slices: list[SymbolSlice]) -> str:
    return "; ".join(f"{sl.symbol} " + ", ".join(str(w) for w in sl.windows) for sl in slices)


def check_no_gaps(client: QuestDBClient, table: SeriesTable, policy: EmptyRecheckPolicy,
                  slices: list[SymbolSlice]) -> AssetCheckResult:
    tf = Timeframe.parse(table.timeframe)
    coverage_store = CoverageStore(client, coverage_table(table))
    now = wall_clock_ms()
    totals = dict.fromkeys(("closed_bars", "expected_bars", "known_empty_bars", "missing_bars",
                            "uncovered_closed_bars", "provisional_bars"), 0)
    first_missing: list[str] = []
    first_uncovered: list[str] = []
    for sl in slices:
        node = table.node(sl.symbol)
        coverage = coverage_store.load(str(node))
        for window in sl.windows:
            stored, closed = stored_opens(client, table.table, node, window)
            report = bar_gaps(coverage, stored, closed, window, tf, now, policy)
            totals["closed_bars"] += report.closed_bars
            totals["expected_bars"] += report.expected_bars
            totals["known_empty_bars"] += report.known_empty_bars
            totals["missing_bars"] += report.missing_bars
            totals["uncovered_closed_bars"] += report.uncovered_bars
            totals["provisional_bars"] += report.provisional
            first_missing += [f"{sl.symbol} {t}" for t in ms_list(report.missing)]
            first_uncovered += [f"{sl.symbol} {w}" for w in bar_runs(report.uncovered, tf.ms)]
    passed = totals["missing_bars"] == 0
    description = (f"{totals['expected_bars']} covered closed bars stored" if passed else
                   f"{totals['missing_bars']} of {totals['expected_bars']} covered closed bars are not stored")
    if totals["uncovered_closed_bars"]:
        description += f"; {totals['uncovered_closed_bars']} closed bars not covered yet (materialize to fetch them)"
    return AssetCheckResult(passed=passed, description=description, metadata={
        **totals,
        "first_missing": MetadataValue.json(first_missing[:EXAMPLES]),
        "first_uncovered": MetadataValue.json(first_uncovered[:EXAMPLES]),
        "checked": _scope(slices),
    })


def check_unique_timestamps(client: QuestDBClient, table: SeriesTable, slices: list[SymbolSlice]) -> AssetCheckResult:
    rows = distinct = off_grid = 0
    first_duplicates: list[str] = []
    for sl in slices:
        for window in sl.windows:
            report = timestamp_report(client, table.table, table.node(sl.symbol), window)
            rows, distinct, off_grid = rows + report.rows, distinct + report.distinct, off_grid + report.off_grid
            first_duplicates += [f"{sl.symbol} {format_ms(t)} x{n}" for t, n in report.duplicates]
    passed = rows == distinct and off_grid == 0
    return AssetCheckResult(
        passed=passed,
        description=f"{rows} rows, {distinct} distinct timestamps, {off_grid} off the {table.timeframe} grid",
        metadata={"rows": rows, "distinct_timestamps": distinct, "duplicate_rows": rows - distinct,
                  "off_grid_rows": off_grid, "first_duplicates": MetadataValue.json(first_duplicates[:EXAMPLES]),
                  "checked": _scope(slices)},
    )


def check_ohlc_sanity(client: QuestDBClient, table: SeriesTable, slices: list[SymbolSlice]) -> AssetCheckResult:
    rows = 0
    violations = dict.fromkeys(OHLC_RULES, 0)
    examples: list[tuple] = []
    for sl in slices:
        for window in sl.windows:
            report = ohlc_report(client, table.table, table.node(sl.symbol), window)
            rows += report.rows
            for rule, n in report.violations.items():
                violations[rule] += n
            examples += [(sl.symbol, format_ms(t), *values) for t, *values in report.examples]
    passed = not any(violations.values())
    metadata = {"rows_checked": rows, **violations, "checked": _scope(slices)}
    if examples:
        frame = pd.DataFrame(examples[:EXAMPLES], columns=["symbol", "ts", "open", "high", "low", "close", "volume"])
        metadata["first_bad_rows"] = MetadataValue.md(frame.to_markdown(index=False))
    broken = ", ".join(f"{rule} {n}" for rule, n in violations.items() if n)
    return AssetCheckResult(passed=passed, metadata=metadata,
                            description=f"{rows} rows sane" if passed else f"{rows} rows checked: {broken}")


def check_agreement(client: QuestDBClient, bars: SeriesTable, candles: SeriesTable,
                    slices: list[SymbolSlice]) -> AssetCheckResult:
    both = mismatches = only_bars = only_candles = 0
    examples: list[tuple] = []
    for sl in slices:
        for window in sl.windows:
            cmp = compare_candles(client, bars.table, bars.node(sl.symbol), candles.table, candles.node(sl.symbol),
                                  window, volume_rel_tol=VOLUME_REL_TOL)
            both, mismatches = both + cmp.both, mismatches + cmp.mismatches
            only_bars, only_candles = only_bars + cmp.only_left, only_candles + cmp.only_right
            examples += [(sl.symbol, format_ms(t), *values) for t, *values in cmp.examples]
    metadata = {"minutes_compared": both, "mismatches": mismatches, "only_in_trade_bars": only_bars,
                "only_in_exchange_candles": only_candles, "checked": _scope(slices)}
    if examples:
        columns = ["symbol", "ts", *(f"trades_{c}" for c in "ohlcv"), *(f"exchange_{c}" for c in "ohlcv")]
        frame = pd.DataFrame(examples[:EXAMPLES], columns=columns)
        metadata["first_mismatches"] = MetadataValue.md(frame.to_markdown(index=False))
    return AssetCheckResult(
        passed=mismatches == 0, metadata=metadata,
        description=f"{both} minutes compared, {mismatches} differ",
    )

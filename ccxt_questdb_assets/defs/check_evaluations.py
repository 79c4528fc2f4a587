"""The evaluations of the candle checks ``checks`` declares: one per selected check and partition
of a run, each against that partition's own materialization. What a run's evaluations read is read
once for all of its partitions (:class:`CheckReads`); the SQL lives in ``storage.quality``, these
functions choose series, windows and metadata. Loaded by the first evaluation, not by definitions."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    MetadataValue,
    Output,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.coverage import Coverage, EmptyRecheckPolicy
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow, format_ms
from ccxt_questdb_assets.defs.check_names import (
    AGREES_WITH_EXCHANGE,
    NO_GAPS,
    OHLC_SANITY,
    UNIQUE_TIMESTAMPS,
    VOLUME_REL_TOL,
)
from ccxt_questdb_assets.defs.markdown_table import markdown_table
from ccxt_questdb_assets.defs.partitions import Grain, MarketPartition, slices_of
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.storage.quality import (
    EXAMPLES,
    OhlcReport,
    TimestampReport,
    bar_gaps,
    bar_runs,
    compare_candles,
    ms_list,
    ohlc_reports,
    stored_opens,
    timestamp_reports,
)
from ccxt_questdb_assets.storage.series_table import SeriesTable

CheckFn = Callable[["CheckReads", MarketPartition], AssetCheckResult]
R = TypeVar("R")


class CheckReads:
    """What a run's evaluations read, read once for all of the run's partitions (the series were
    stored before the checks run; they hold still): each series' coverage, and its bar opens over
    the run's span of its symbol (``spans``), which each partition's window cuts."""

    def __init__(self, client: QuestDBClient, spans: Mapping[str, TimeWindow], grain: Grain) -> None:
        self.client = client
        self.spans = spans
        self.grain = grain
        self._coverage: dict[tuple[str, str], Coverage] = {}
        self._opens: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._periods: dict[tuple[str, str, str], dict[int, Any]] = {}

    def coverage(self, table: SeriesTable, node: NodeId) -> Coverage:
        key = (table.coverage_table, str(node))
        if key not in self._coverage:
            self._coverage[key] = CoverageStore(self.client, table.coverage_table).load(str(node))
        return self._coverage[key]

    def opens(self, table: SeriesTable, p: MarketPartition) -> tuple[np.ndarray, np.ndarray]:
        """``(all bar opens, opens of closed bars)`` of ``p``'s series in ``p``'s window, epoch ms."""
        node = table.node(p.symbol)
        key = (table.table, str(node))
        if key not in self._opens:
            every, closed = stored_opens(self.client, table.table, node, self.spans.get(p.symbol, p.window))
            self._opens[key] = (np.sort(every), np.sort(closed))
        every, closed = self._opens[key]
        return _cut(every, p.window), _cut(closed, p.window)

    def timestamps(self, table: SeriesTable, p: MarketPartition) -> TimestampReport:
        """``p``'s timestamp report, read by period for the run's span of its symbol."""
        return self._by_period(timestamp_reports, table, p).get(p.window.start_ms) or TimestampReport.of_no_rows()

    def ohlc(self, table: SeriesTable, p: MarketPartition) -> OhlcReport:
        """``p``'s OHLC report, read by period for the run's span of its symbol."""
        return self._by_period(ohlc_reports, table, p).get(p.window.start_ms) or OhlcReport.of_no_rows()

    def _by_period(self, read: Callable[..., dict[int, R]], table: SeriesTable, p: MarketPartition) -> dict[int, R]:
        """``read``'s reports by period start (ms) of ``p``'s series over its symbol's span, read once."""
        node = table.node(p.symbol)
        key = (read.__name__, table.table, str(node))
        if key not in self._periods:
            span = self.spans.get(p.symbol, p.window)
            self._periods[key] = read(self.client, table.table, node, span, self.grain.sql_unit)
        return self._periods[key]


def _cut(opens: np.ndarray, window: TimeWindow) -> np.ndarray:
    lo, hi = np.searchsorted(opens, [window.start_ms, window.end_ms])
    return opens[lo:hi]


def evaluate(
    context: AssetExecutionContext,
    client: QuestDBClient,
    asset_key: AssetKey,
    specs: Sequence[AssetCheckSpec],
    grain: Grain,
    table: SeriesTable,
    policy: EmptyRecheckPolicy,
    *,
    exchange_candles: SeriesTable | None = None,
) -> Iterator[AssetCheckEvaluation | Output]:
    """``CandleChecks.evaluate``: one evaluation of each of ``specs`` (those selected) per partition
    of the run, then each check's output."""
    evaluations: dict[str, CheckFn] = {
        NO_GAPS: lambda reads, p: check_no_gaps(reads, table, policy, p),
        UNIQUE_TIMESTAMPS: lambda reads, p: check_unique_timestamps(reads, table, p),
        OHLC_SANITY: lambda reads, p: check_ohlc_sanity(reads, table, p),
    }
    if exchange_candles is not None:
        evaluations[AGREES_WITH_EXCHANGE] = lambda reads, p: check_agreement(reads.client, table, exchange_candles, p)
    selected = [spec for spec in specs if spec.key in context.selected_asset_check_keys]
    if not selected:
        return
    slices = slices_of(context.partition_keys, grain)
    partitions = [p for sl in slices for p in sl.partitions]
    targets = _targets(context, asset_key, partitions)
    reads = CheckReads(client, {sl.symbol: sl.span for sl in slices}, grain)
    for spec in selected:
        fn = evaluations[spec.name]
        for p in partitions:
            result = fn(reads, p)
            yield AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=spec.name,
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
                blocking=spec.blocking,
                partition=p.key,
                target_materialization_data=targets.get(p.key),
            )
        yield Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(spec.key))


def _targets(
    context: AssetExecutionContext, asset_key: AssetKey, partitions: list[MarketPartition]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each partition's materialization the evaluation is about: this run's when the run
    materialized it, else the partition's latest (a check-only run).

    One query for the run's partitions: after a materializing run their newest materializations
    are this run's, one each. A partition it leaves out (another partition's older
    materializations took its place, as in a check-only run) is asked alone."""
    keys = [p.key for p in partitions]
    out: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}

    def latest(wanted: list[str], limit: int) -> None:
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=wanted), limit=limit
        ).records
        for record in records:  # newest first
            key = record.partition_key
            if key is not None and key not in out:
                out[key] = AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.event_log_entry.run_id, timestamp=record.timestamp
                )

    latest(keys, len(keys))
    for key in keys:
        if key not in out:
            latest([key], 1)
    return out


# -- evaluations: one partition (a symbol's UTC day or month) each ----------------------------
def _scope(p: MarketPartition) -> str:
    return str(p)


def _examples(p: MarketPartition, rows: Sequence[Sequence[Any]], columns: list[str]) -> MetadataValue:
    """The first of a report's example rows (time, then ``columns``) as a markdown table, each row
    led by the partition's symbol and its time as text."""
    examples = [(p.symbol, format_ms(t), *values) for t, *values in rows]
    return MetadataValue.md(markdown_table(["symbol", "ts", *columns], examples[:EXAMPLES]))


def check_no_gaps(
    reads: CheckReads, table: SeriesTable, policy: EmptyRecheckPolicy, p: MarketPartition
) -> AssetCheckResult:
    tf = Timeframe.parse(table.timeframe)
    node = table.node(p.symbol)
    coverage = reads.coverage(table, node)
    stored, closed = reads.opens(table, p)
    report = bar_gaps(coverage, stored, closed, p.window, tf, wall_clock_ms(), policy)
    passed = report.missing_bars == 0
    description = (
        f"{report.expected_bars} covered closed bars stored"
        if passed
        else f"{report.missing_bars} of {report.expected_bars} covered closed bars are not stored"
    )
    if report.uncovered_bars:
        description += f"; {report.uncovered_bars} closed bars not covered yet (materialize to fetch them)"
    return AssetCheckResult(
        passed=passed,
        description=description,
        metadata={
            "closed_bars": report.closed_bars,
            "expected_bars": report.expected_bars,
            "known_empty_bars": report.known_empty_bars,
            "missing_bars": report.missing_bars,
            "uncovered_closed_bars": report.uncovered_bars,
            "provisional_bars": report.provisional,
            "first_missing": MetadataValue.json([f"{p.symbol} {t}" for t in ms_list(report.missing)][:EXAMPLES]),
            "first_uncovered": MetadataValue.json(
                [f"{p.symbol} {w}" for w in bar_runs(report.uncovered, tf.ms)][:EXAMPLES]
            ),
            "checked": _scope(p),
        },
    )


def check_unique_timestamps(reads: CheckReads, table: SeriesTable, p: MarketPartition) -> AssetCheckResult:
    report = reads.timestamps(table, p)
    passed = report.rows == report.distinct and report.off_grid == 0
    duplicates = [f"{p.symbol} {format_ms(t)} x{n}" for t, n in report.duplicates]
    return AssetCheckResult(
        passed=passed,
        description=f"{report.rows} rows, {report.distinct} distinct timestamps, {report.off_grid} off the "
        f"{table.timeframe} grid",
        metadata={
            "rows": report.rows,
            "distinct_timestamps": report.distinct,
            "duplicate_rows": report.duplicate_rows,
            "off_grid_rows": report.off_grid,
            "first_duplicates": MetadataValue.json(duplicates[:EXAMPLES]),
            "checked": _scope(p),
        },
    )


def check_ohlc_sanity(reads: CheckReads, table: SeriesTable, p: MarketPartition) -> AssetCheckResult:
    report = reads.ohlc(table, p)
    passed = report.bad_rows == 0
    metadata = {"rows_checked": report.rows, **report.violations, "checked": _scope(p)}
    if report.examples:
        metadata["first_bad_rows"] = _examples(p, report.examples, ["open", "high", "low", "close", "volume"])
    broken = ", ".join(f"{rule} {n}" for rule, n in report.violations.items() if n)
    return AssetCheckResult(
        passed=passed,
        metadata=metadata,
        description=f"{report.rows} rows sane" if passed else f"{report.rows} rows checked: {broken}",
    )


def check_agreement(
    client: QuestDBClient, bars: SeriesTable, candles: SeriesTable, p: MarketPartition
) -> AssetCheckResult:
    cmp = compare_candles(
        client,
        bars.table,
        bars.node(p.symbol),
        candles.table,
        candles.node(p.symbol),
        p.window,
        volume_rel_tol=VOLUME_REL_TOL,
    )
    metadata = {
        "minutes_compared": cmp.both,
        "mismatches": cmp.mismatches,
        "only_in_trade_bars": cmp.only_left,
        "only_in_exchange_candles": cmp.only_right,
        "checked": _scope(p),
    }
    if cmp.examples:
        columns = [*(f"trades_{c}" for c in "ohlcv"), *(f"exchange_{c}" for c in "ohlcv")]
        metadata["first_mismatches"] = _examples(p, cmp.examples, columns)
    return AssetCheckResult(
        passed=cmp.mismatches == 0,
        metadata=metadata,
        description=f"{cmp.both} minutes compared, {cmp.mismatches} differ",
    )

"""Asset checks on every candle asset (ingested and derived), one evaluation per partition.

The checks are ``check_specs`` of their asset, evaluated in the asset's own step right after the
IO manager has stored the partitions and made them visible: no extra process per check, and the
asset and its checks run as one unit. A run of many partitions (a backfill range) records one
evaluation per date x symbol partition (a symbol's day, or month with the month grain), each
against that partition's own materialization, so the UI's partition view shows every partition
checked. When only checks are selected (the UI's
"Execute checks"), the asset is not materialized and each partition is checked against its latest
materialization.

Blocking (a failure fails the asset's step, which stops downstream assets of the same run, e.g.
the resampled candles):

* ``no_gaps``: every closed bar of the window that the series' coverage claims, and does not
  know to be empty (an outage, before listing), is stored as a closed row. Closed time that
  coverage does not claim is reported (``uncovered_closed_bars``, ``first_uncovered``) without
  failing: the partition is not fully materialized yet, which is a matter for the refresh.
* ``unique_increasing_timestamps``: as many distinct timestamps as rows per series and window
  (rows come back in timestamp order, so unique means strictly increasing), and every timestamp
  on the timeframe's bar grid.
* ``ohlc_sanity``: no row with high < max(open, close), low > min(open, close), high < low,
  volume < 0, or a NaN/NULL value. QuestDB compares doubles with a tolerance of about 1e-10.

Not blocking: ``agrees_with_exchange_candles`` on ``{exchange}/ohlcv/trade_bars_1m``: on the minutes
both hold, the bars built from trades equal the exchange's 1m candles (open, high, low, close
exactly, volume within 1e-9 relative).

Partitioned asset checks are a preview feature of Dagster 1.13 (docs/dagster.md says why the
project uses them); the SQL lives in ``storage.quality``, these functions choose series,
windows and metadata.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
    PartitionsDefinition,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.coverage import Coverage, EmptyRecheckPolicy
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow, format_ms
from ccxt_questdb_assets.defs.asset_options import chosen_features
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

VOLUME_REL_TOL = 1e-9

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


@dataclass(frozen=True)
class CandleChecks:
    """The checks of one candle asset: their specs, and their evaluation per partition.

    ``exchange_candles`` (trade bars only): the exchange's own 1m candle asset and table, which
    the bars built from trades must agree with.
    """

    asset_key: AssetKey
    table: SeriesTable
    policy: EmptyRecheckPolicy
    partitions_def: PartitionsDefinition
    exchange_candles: tuple[AssetKey, SeriesTable] | None = None

    def _checks(self) -> list[tuple[AssetCheckSpec, CheckFn]]:
        table, policy = self.table, self.policy
        out = [
            (
                self._spec(
                    "no_gaps",
                    True,
                    "Every closed bar the series' coverage claims, and does not know to be empty, "
                    "is stored (missing bars fail); closed time coverage does not claim is "
                    "reported.",
                ),
                lambda reads, p: check_no_gaps(reads, table, policy, p),
            ),
            (
                self._spec(
                    "unique_increasing_timestamps",
                    True,
                    "One row per bar: as many distinct timestamps as rows "
                    "per series and window, every timestamp on the bar "
                    "grid.",
                ),
                lambda reads, p: check_unique_timestamps(reads, table, p),
            ),
            (
                self._spec(
                    "ohlc_sanity",
                    True,
                    "No bar with high < max(open, close), low > min(open, close), high < low, volume < 0, or a NaN.",
                ),
                lambda reads, p: check_ohlc_sanity(reads, table, p),
            ),
        ]
        if self.exchange_candles is not None:
            key, candles = self.exchange_candles
            out.append(
                (
                    self._spec(
                        "agrees_with_exchange_candles",
                        False,
                        f"On the minutes both hold, bars built from trades equal the exchange's 1m candles "
                        f"(`{key.to_user_string()}`): open, high, low, close exactly, volume within "
                        f"{VOLUME_REL_TOL:g} relative.",
                        additional_deps=[key],
                    ),
                    lambda reads, p: check_agreement(reads.client, table, candles, p),
                )
            )
        return out

    def _spec(self, name: str, blocking: bool, description: str, **kwargs) -> AssetCheckSpec:
        with chosen_features():  # partitioned checks: a deliberate preview feature (docs/dagster.md)
            return AssetCheckSpec(
                name,
                asset=self.asset_key,
                blocking=blocking,
                description=description,
                partitions_def=self.partitions_def,
                **kwargs,
            )

    def specs(self) -> list[AssetCheckSpec]:
        return [spec for spec, _ in self._checks()]

    @property
    def grain(self) -> Grain:
        return Grain.of(self.partitions_def)

    def evaluate(
        self, context: AssetExecutionContext, client: QuestDBClient
    ) -> Iterator[AssetCheckEvaluation | Output]:
        """One evaluation per selected check and partition of the run, then each check's output.

        Called after the asset's own materializations were recorded (or, checks alone, against
        each partition's latest materialization)."""
        selected = context.selected_asset_check_keys
        checks = [(spec, fn) for spec, fn in self._checks() if spec.key in selected]
        if not checks:
            return
        slices = slices_of(context.partition_keys, self.grain)
        partitions = [p for sl in slices for p in sl.partitions]
        targets = _targets(context, self.asset_key, partitions)
        reads = CheckReads(client, {sl.symbol: sl.span for sl in slices}, self.grain)
        for spec, fn in checks:
            for p in partitions:
                result = fn(reads, p)
                yield AssetCheckEvaluation(
                    asset_key=self.asset_key,
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

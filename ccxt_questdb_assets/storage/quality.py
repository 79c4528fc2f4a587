"""Data-quality questions asked of a candle table, one node at a time, over a window or by period.

Every query binds its values (exchange, symbol, timeframe, the UTC window in microseconds) and
formats only validated table names. QuestDB stores a NaN or infinite double as NULL, so "not a
number" is asked as ``IS NULL``. The answers are small: counts, plus the first few offending
rows for a report.

* :func:`bar_gaps`: closed bars that coverage says are stored (and not known to be empty) but are
  not, and closed time that coverage does not claim at all.
* :func:`timestamp_reports`: duplicate and off-grid bar timestamps, by day or month.
* :func:`ohlc_reports`: rows breaking high >= max(open, close), low <= min(open, close),
  high >= low, volume >= 0, or holding a NaN, by day or month.
* :func:`compare_candles`: two candle series of the same bars (trade-built vs exchange), value by
  value on the bars both hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ccxt_questdb_assets.core.coverage import Coverage, EmptyRecheckPolicy, merge
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow, format_ms
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.identifiers import quote_ident
from ccxt_questdb_assets.storage.schema import CANDLES
from ccxt_questdb_assets.storage.series import period_floor

#: Offending rows or timestamps kept per report.
EXAMPLES = 5
OHLC_RULES = ("high_below_open_or_close", "low_above_open_or_close", "high_below_low", "negative_volume", "nan_values")
_OHLC_CONDITIONS = {
    "high_below_open_or_close": "(high < open OR high < close)",
    "low_above_open_or_close": "(low > open OR low > close)",
    "high_below_low": "high < low",
    "negative_volume": "volume < 0",
    "nan_values": "(open IS NULL OR high IS NULL OR low IS NULL OR close IS NULL OR volume IS NULL)",
}


def _us(ms: int) -> int:
    return ms * 1000


def _candle_node(node: NodeId) -> Timeframe:
    if node.timeframe is None:
        raise ConfigError(f"{node} is not a candle series")
    return node.timeframe


def _where(node: NodeId, window: TimeWindow) -> tuple[str, tuple]:
    tf = _candle_node(node)
    return (
        "exchange = %s AND symbol = %s AND timeframe = %s AND ts >= %s::timestamp AND ts < %s::timestamp",
        (node.exchange, node.symbol, tf.name, _us(window.start_ms), _us(window.end_ms)),
    )


# -- gaps ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GapReport:
    """Closed bars of one window, by what coverage says of them."""

    closed_bars: int
    expected_bars: int  # covered, not known to be empty
    known_empty_bars: int
    missing: np.ndarray  # open ms of expected bars with no closed row
    uncovered: np.ndarray  # open ms of closed bars coverage does not claim
    provisional: int  # expected bars stored only as still-open rows

    @property
    def missing_bars(self) -> int:
        return int(self.missing.size)

    @property
    def uncovered_bars(self) -> int:
        return int(self.uncovered.size)


def _inside(opens: np.ndarray, tf_ms: int, windows: list[TimeWindow]) -> np.ndarray:
    """Which bars ``[open, open + tf)`` lie wholly inside one of ``windows`` (merged, sorted)."""
    if not windows or opens.size == 0:
        return np.zeros(opens.shape, dtype=bool)
    starts = np.array([w.start_ms for w in windows], dtype=np.int64)
    ends = np.array([w.end_ms for w in windows], dtype=np.int64)
    idx = np.searchsorted(starts, opens, side="right") - 1
    ok = idx >= 0
    return ok & (opens + tf_ms <= ends[np.maximum(idx, 0)])


def bar_gaps(
    coverage: Coverage,
    stored: np.ndarray,
    closed_stored: np.ndarray,
    window: TimeWindow,
    tf: Timeframe,
    now_ms: int,
    policy: EmptyRecheckPolicy,
) -> GapReport:
    """Compare the closed bars of ``window`` with coverage and the stored bar opens (epoch ms)."""
    last_open = min(window.end_ms, tf.floor(now_ms)) - tf.ms  # a bar is closed once now >= open + tf
    start = tf.ceil(window.start_ms)
    grid = np.arange(start, last_open + 1, tf.ms, dtype=np.int64) if last_open >= start else np.zeros(0, np.int64)
    covered = _inside(grid, tf.ms, coverage.covered(now_ms, policy))
    empty = _inside(grid, tf.ms, merge(coverage.empty_windows()))
    expected = covered & ~empty
    has_closed = np.isin(grid, closed_stored)
    missing = grid[expected & ~has_closed]
    provisional = int((expected & ~has_closed & np.isin(grid, stored)).sum())
    return GapReport(
        closed_bars=int(grid.size),
        expected_bars=int(expected.sum()),
        known_empty_bars=int((covered & empty).sum()),
        missing=missing,
        uncovered=grid[~covered],
        provisional=provisional,
    )


def stored_opens(client: QuestDBClient, table: str, node: NodeId, window: TimeWindow) -> tuple[np.ndarray, np.ndarray]:
    """``(all bar opens, opens of closed bars)`` of ``node`` in ``window``, epoch ms."""
    client.ensure_table(CANDLES, table)
    where, params = _where(node, window)
    rows = client.query(f"SELECT cast(ts AS long), closed FROM {quote_ident(table)} WHERE {where}", params)
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    ts = np.array([r[0] for r in rows], dtype=np.int64) // 1000
    closed = np.array([bool(r[1]) for r in rows], dtype=bool)
    return ts, ts[closed]


# -- timestamps ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimestampReport:
    rows: int
    distinct: int
    off_grid: int
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (open ms, rows) of the first few

    @property
    def duplicate_rows(self) -> int:
        return self.rows - self.distinct

    @classmethod
    def of_no_rows(cls) -> TimestampReport:
        return cls(0, 0, 0)


def timestamp_reports(
    client: QuestDBClient, table: str, node: NodeId, window: TimeWindow, unit: str
) -> dict[int, TimestampReport]:
    """``{UTC period start ms: its report}``: rows, distinct and off-grid timestamps of ``node`` in
    each period (``timestamp_floor`` ``unit``: ``d`` or ``M``) of ``window`` holding rows, in one
    query; the first duplicates are asked only of a period that has some."""
    tf = _candle_node(node)
    floor = period_floor(unit)
    client.ensure_table(CANDLES, table)
    where, params = _where(node, window)
    rows = client.query(
        f"SELECT cast({floor} AS long), count(), count_distinct(ts), "
        f"sum(CASE WHEN (cast(ts AS long) - %s) %% %s != 0 THEN 1 ELSE 0 END) FROM {quote_ident(table)} "
        f"WHERE {where} GROUP BY 1 ORDER BY 1",
        (_us(tf.anchor_ms), _us(tf.ms), *params),
    )
    out: dict[int, TimestampReport] = {}
    for start_us, n, distinct, off in rows:
        report = TimestampReport(int(n or 0), int(distinct or 0), int(off or 0))
        if report.duplicate_rows:
            dup = client.query(
                f"SELECT * FROM (SELECT cast(ts AS long) t, count() n FROM {quote_ident(table)} "
                f"WHERE {where} AND {floor} = %s::timestamp) WHERE n > 1 ORDER BY t LIMIT {EXAMPLES}",
                (*params, int(start_us)),
            )
            report.duplicates.extend((int(t) // 1000, int(c)) for t, c in dup)
        out[int(start_us) // 1000] = report
    return out


# -- OHLC sanity -----------------------------------------------------------------------------
@dataclass(frozen=True)
class OhlcReport:
    rows: int
    violations: dict[str, int]
    examples: list[tuple]  # (open ms, open, high, low, close, volume) of the first few bad rows

    @property
    def bad_rows(self) -> int:
        return sum(self.violations.values())

    @classmethod
    def of_no_rows(cls) -> OhlcReport:
        return cls(0, dict.fromkeys(OHLC_RULES, 0), [])


def ohlc_reports(
    client: QuestDBClient, table: str, node: NodeId, window: TimeWindow, unit: str
) -> dict[int, OhlcReport]:
    """``{UTC period start ms: its report}``: counts of rows breaking each OHLC rule (a row may
    break several) in each period (``timestamp_floor`` ``unit``) of ``window`` holding rows, in one
    query; the first bad rows are asked only of a period that has some.

    The rules are evaluated by QuestDB, whose double comparisons treat values within about 1e-10
    of each other as equal: a violation smaller than that is not reported.
    """
    floor = period_floor(unit)
    client.ensure_table(CANDLES, table)
    where, params = _where(node, window)
    sums = ", ".join(f"sum(CASE WHEN {_OHLC_CONDITIONS[r]} THEN 1 ELSE 0 END)" for r in OHLC_RULES)
    rows = client.query(
        f"SELECT cast({floor} AS long), count(), {sums} FROM {quote_ident(table)} WHERE {where} GROUP BY 1 ORDER BY 1",
        params,
    )
    out: dict[int, OhlcReport] = {}
    for row in rows:
        start = int(row[0]) // 1000
        violations = {rule: int(v or 0) for rule, v in zip(OHLC_RULES, row[2:], strict=True)}
        examples: list[tuple] = []
        if any(violations.values()):
            bad = " OR ".join(_OHLC_CONDITIONS[r] for r in OHLC_RULES)
            examples = [
                (int(r[0]) // 1000, *r[1:])
                for r in client.query(
                    f"SELECT cast(ts AS long), open, high, low, close, volume FROM {quote_ident(table)} "
                    f"WHERE {where} AND {floor} = %s::timestamp AND ({bad}) ORDER BY ts LIMIT {EXAMPLES}",
                    (*params, int(row[0])),
                )
            ]
        out[start] = OhlcReport(int(row[1] or 0), violations, examples)
    return out


# -- two series of the same bars -------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    left_rows: int
    right_rows: int
    both: int
    mismatches: int
    examples: list[tuple]  # (open ms, left o h l c v, right o h l c v) of the first few mismatches

    @property
    def only_left(self) -> int:
        return self.left_rows - self.both

    @property
    def only_right(self) -> int:
        return self.right_rows - self.both


def compare_candles(
    client: QuestDBClient,
    left_table: str,
    left: NodeId,
    right_table: str,
    right: NodeId,
    window: TimeWindow,
    *,
    volume_rel_tol: float = 1e-9,
) -> Comparison:
    """Compare two candle series bar by bar on the bars both hold in ``window``: open, high, low
    and close must be equal, volumes equal within ``volume_rel_tol`` (relative).

    QuestDB joins the bars; the values are compared here, because QuestDB's double comparisons
    treat values within about 1e-10 as equal and this comparison is exact.
    """
    if _candle_node(left) != _candle_node(right):
        raise ConfigError(f"{left} and {right} have different timeframes: nothing to compare bar by bar")
    for table in (left_table, right_table):
        client.ensure_table(CANDLES, table)
    lw, lp = _where(left, window)
    rw, rp = _where(right, window)
    cols = "ts, open, high, low, close, volume"
    rows = client.query(
        "SELECT cast(a.ts AS long), a.open, a.high, a.low, a.close, a.volume, b.open, b.high, b.low, b.close, b.volume "
        f"FROM (SELECT {cols} FROM {quote_ident(left_table)} WHERE {lw}) a "
        f"JOIN (SELECT {cols} FROM {quote_ident(right_table)} WHERE {rw}) b ON a.ts = b.ts",
        (*lp, *rp),
    )
    counts = [
        client.query(f"SELECT count() FROM {quote_ident(t)} WHERE {w}", p)[0][0]
        for t, w, p in ((left_table, lw, lp), (right_table, rw, rp))
    ]
    if not rows:
        return Comparison(int(counts[0]), int(counts[1]), 0, 0, [])
    values = np.array([r[1:] for r in rows], dtype=np.float64)  # NULL (NaN in QuestDB) -> nan
    a, b = values[:, :5], values[:, 5:]
    prices_differ = (a[:, :4] != b[:, :4]).any(axis=1)  # nan != anything: a NaN is a mismatch
    va, vb = a[:, 4], b[:, 4]
    volume_differs = ~(np.abs(va - vb) <= volume_rel_tol * np.maximum(np.abs(va), np.abs(vb)))
    bad = np.flatnonzero(prices_differ | volume_differs)
    ts = np.array([r[0] for r in rows], dtype=np.int64) // 1000
    order = bad[np.argsort(ts[bad], kind="stable")][:EXAMPLES]
    examples = [(int(ts[i]), *a[i].tolist(), *b[i].tolist()) for i in order]
    return Comparison(int(counts[0]), int(counts[1]), len(rows), int(bad.size), examples)


def ms_list(values, limit: int = EXAMPLES) -> list[str]:
    """The first few epoch-ms values as ISO timestamps, for reports."""
    return [format_ms(int(v)) for v in list(values)[:limit]]


def bar_runs(opens: np.ndarray, tf_ms: int, limit: int = EXAMPLES) -> list[TimeWindow]:
    """The first ``limit`` runs of consecutive bars (sorted opens, epoch ms) as windows."""
    out: list[TimeWindow] = []
    if opens.size == 0:
        return out
    breaks = np.flatnonzero(np.diff(opens) != tf_ms)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [opens.size - 1]))
    for s, e in zip(starts[:limit], ends[:limit], strict=True):
        out.append(TimeWindow(int(opens[s]), int(opens[e]) + tf_ms))
    return out

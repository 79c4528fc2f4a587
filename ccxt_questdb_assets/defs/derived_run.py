"""A derived asset's run: its partitions' covered bars computed inside QuestDB, the derived
coverage recorded once the rows are visible, and what each partition got (``derived_assets``
declares the assets; this module loads when a run starts)."""

from __future__ import annotations

import numpy as np
from dagster import AssetExecutionContext

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.node_ids import TRADES
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.defs.derivation import Derivation
from ccxt_questdb_assets.defs.io_manager import StoredSlice
from ccxt_questdb_assets.defs.partitions import Grain, MarketPartition, slices_of
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.storage.derived import (
    bar_opens,
    bar_windows,
    bars_from_trades,
    derived_spans,
    resample_candles,
)


def run_derived(
    context: AssetExecutionContext, client: QuestDBClient, derivation: Derivation, grain: Grain
) -> StoredSlice:
    """Compute every covered bar of the run's partitions, record the derived coverage, count per partition."""
    source, target, policy = derivation.source, derivation.target, derivation.policy
    tf = Timeframe.parse(target.timeframe)
    now = wall_clock_ms()
    source_coverage = CoverageStore(client, source.coverage_table)
    target_coverage = CoverageStore(client, target.coverage_table)
    figures: dict[str, dict[str, object]] = {}
    uncovered_total = 0
    for sl in slices_of(context.partition_keys, grain):
        covered = source_coverage.load(str(source.node(sl.symbol))).covered(now, policy)
        todo = [w for window in sl.windows for w in bar_windows(covered, window, tf)]
        for w in todo:
            write_bars(client, derivation, sl.symbol, w)
        if todo:
            client.wait_visible(target.table)  # rows visible before their coverage is recorded
        spans, written = [], []
        for w in todo:
            opens = bar_opens(client, target.table, target.node(sl.symbol), w)
            written.append(opens)
            spans += derived_spans(w, opens, tf, now, policy)
        target_coverage.record(str(target.node(sl.symbol)), spans)
        computed = np.concatenate([_opens_in(w, tf) for w in todo] or [np.empty(0, np.int64)])
        stored = np.concatenate(written or [np.empty(0, np.int64)])
        for p in sl.partitions:
            figures[p.key] = _partition_figures(p, tf, now, computed, stored, source.table)
            uncovered_total += figures[p.key]["uncovered_closed_bars"]
        context.log.info(f"{target.node(sl.symbol)}: {len(todo)} covered window(s) computed from {source.table}")
    if uncovered_total:
        context.log.warning(
            f"{uncovered_total} closed {tf.name} bar(s) of this run lie outside the upstream's "
            f"coverage and were not computed: materialize the upstream partitions first"
        )
    return StoredSlice(figures)


def _opens_in(window: TimeWindow, tf: Timeframe) -> np.ndarray:
    """Open times of the bars of ``window`` (on the bar grid)."""
    return np.arange(window.start_ms, window.end_ms, tf.ms, dtype=np.int64)


def _partition_figures(
    p: MarketPartition, tf: Timeframe, now_ms: int, computed: np.ndarray, stored: np.ndarray, source_table: str
) -> dict[str, object]:
    """A partition's bars (each counted in the day or month it opens): written, computed, closed but uncovered."""
    w = p.window
    closed_end = min(w.end_ms, tf.floor(now_ms))
    first = tf.ceil(w.start_ms)
    closed = tf.bars_between(first, closed_end) if closed_end > first else 0
    inside = int(((computed >= w.start_ms) & (computed < w.end_ms)).sum())
    return {
        "rows_written": int(((stored >= w.start_ms) & (stored < w.end_ms)).sum()),
        "bars_computed": inside,
        "uncovered_closed_bars": int(closed - inside),
        "coverage_after": round(inside / closed, 6) if closed else 0.0,
        "computed_from": source_table,
    }


def write_bars(client: QuestDBClient, derivation: Derivation, symbol: str, window: TimeWindow) -> None:
    """Compute ``symbol``'s bars of ``derivation``'s target in ``window`` inside QuestDB (an upsert)."""
    source, target = derivation.source, derivation.target
    tf = Timeframe.parse(target.timeframe)
    if source.kind == TRADES:
        bars_from_trades(
            client,
            trades_table=source.table,
            target_table=target.table,
            exchange=source.exchange,
            symbol=symbol,
            timeframe=tf,
            window=window,
        )
    else:
        resample_candles(
            client,
            source_table=source.table,
            target_table=target.table,
            source=source.node(symbol),
            target=tf,
            window=window,
        )

"""A partition's own figures: what a run did for one date x symbol partition, and what it holds.

A run may cover many partitions (a backfill range), yet each materialization Dagster records is
one partition's: its rows, first and last timestamps, coverage, rows written and requests are
that period's alone (a day, or a month with the month grain), never the run's totals copied onto
every partition. What belongs to the run (gaps, rate-limiter waits) goes to the run's log.

* :class:`PartitionLedger` counts, page by page as the engine stores them, the rows written into
  each partition and the exchange requests, each request in the partition its page started from.
* :func:`coverage_by_partition`: the share of each partition's window the series' coverage claims.
* :func:`stored_by_partition`: rows and first/last timestamps per partition, one query per symbol.
* :func:`previews_by_partition`: each partition's first rows, one query per symbol.
* :func:`describe_partitions`: all of the above, as the metadata of each partition's materialization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dagster import MetadataValue

from ccxt_questdb_assets.core.coverage import Coverage
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.pages import Page
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.defs.markdown_table import markdown_table
from ccxt_questdb_assets.defs.partitions import Grain, MarketPartition, SymbolSlice
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.series import SeriesStore
from ccxt_questdb_assets.storage.series_table import SeriesTable


class PartitionLedger:
    """Rows written and exchange requests by partition, for one symbol's partitions (a ``PageObserver``)."""

    def __init__(self, partitions: Sequence[MarketPartition]) -> None:
        self.partitions = tuple(sorted(partitions, key=lambda p: p.window.start_ms))
        self._starts = np.array([p.window.start_ms for p in self.partitions], dtype=np.int64)
        self._ends = np.array([p.window.end_ms for p in self.partitions], dtype=np.int64)
        self.rows = np.zeros(len(self.partitions), dtype=np.int64)
        self.requests = np.zeros(len(self.partitions), dtype=np.int64)

    def _index(self, ts_ms: np.ndarray) -> np.ndarray:
        """The partition index of each timestamp, -1 outside every partition."""
        idx = np.searchsorted(self._starts, ts_ms, side="right") - 1
        inside = (idx >= 0) & (ts_ms < self._ends[np.maximum(idx, 0)])
        return np.where(inside, idx, -1)

    def page_stored(self, page: Page) -> None:
        at = int(self._index(np.array([page.start_ms], dtype=np.int64))[0])
        if at >= 0:
            self.requests[at] += page.requests
        if len(page.rows):
            idx = self._index(page.rows["ts"].to_numpy(dtype=np.int64))
            idx = idx[idx >= 0]
            self.rows += np.bincount(idx, minlength=len(self.partitions))

    def by_partition(self) -> dict[str, tuple[int, int]]:
        """``{partition key: (rows written, exchange requests)}``."""
        return {p.key: (int(r), int(q)) for p, r, q in zip(self.partitions, self.rows, self.requests, strict=True)}


def coverage_by_partition(coverage: Coverage, partitions: Iterable[MarketPartition], now_ms: int) -> dict[str, float]:
    """The share of each partition's window that coverage claims (stored, or known to be empty)."""
    return {p.key: round(coverage.covered_ms(p.window, now_ms) / p.window.duration_ms, 6) for p in partitions}


@dataclass(frozen=True, slots=True)
class StoredFigures:
    """What one partition holds in QuestDB."""

    rows: int = 0
    first_ms: int | None = None
    last_ms: int | None = None


def stored_by_partition(
    store: SeriesStore, node: NodeId, partitions: Sequence[MarketPartition]
) -> dict[str, StoredFigures]:
    """Rows and first/last timestamps of each partition of one series (one query; the partitions
    share a grain)."""
    if not partitions:
        return {}
    grain, span = _grain_and_span(partitions)
    periods = store.period_stats(node, span, grain.sql_unit)
    out = {}
    for p in partitions:
        n, first, last = periods.get(p.window.start_ms, (0, None, None))
        out[p.key] = StoredFigures(n, first, last)
    return out


def previews_by_partition(
    store: SeriesStore, node: NodeId, partitions: Sequence[MarketPartition], rows: int
) -> dict[str, list[tuple]]:
    """The first ``rows`` rows (``ts``, then the value columns) of each partition of one series
    holding any (one query; the partitions share a grain); none when ``rows`` is 0."""
    if not partitions or rows <= 0:
        return {}
    grain, span = _grain_and_span(partitions)
    heads = store.period_heads(node, span, grain.sql_unit, rows)
    return {p.key: heads[p.window.start_ms] for p in partitions if p.window.start_ms in heads}


def describe_partitions(
    table: SeriesTable,
    client: QuestDBClient,
    slices: Sequence[SymbolSlice],
    figures: Mapping[str, Mapping[str, Any]],
    preview_rows: int,
) -> dict[str, dict[str, Any]]:
    """Metadata by partition key: rows stored, first and last timestamps, a preview, and what the
    run counted for that partition (``figures``)."""
    store = table.store(client)
    columns = ["ts", *table.series_kind.value_columns]
    out: dict[str, dict[str, Any]] = {}
    for sl in slices:
        node = table.node(sl.symbol)
        stored = stored_by_partition(store, node, sl.partitions)
        heads = previews_by_partition(store, node, sl.partitions, preview_rows)
        for p in sl.partitions:
            held = stored[p.key]
            md: dict[str, Any] = {"dagster/row_count": held.rows, **figures.get(p.key, {})}
            if held.rows:
                md["first_ts"] = MetadataValue.timestamp(held.first_ms / 1000)
                md["last_ts"] = MetadataValue.timestamp(held.last_ms / 1000)
                if p.key in heads:
                    md["preview"] = MetadataValue.md(markdown_table(columns, heads[p.key]))
            out[p.key] = md
    return out


def _grain_and_span(partitions: Sequence[MarketPartition]) -> tuple[Grain, TimeWindow]:
    """The partitions' one grain, and the window from the first one's start to the last one's end."""
    grains = {p.grain for p in partitions}
    if len(grains) != 1:
        raise ValueError(f"partitions of one grain expected, got {sorted(grains)}")
    return grains.pop(), TimeWindow(
        min(p.window.start_ms for p in partitions), max(p.window.end_ms for p in partitions)
    )

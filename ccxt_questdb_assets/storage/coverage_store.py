"""Coverage metadata in QuestDB: a lookup reads a handful of span rows for one node, so it
costs the same whether the series holds ten rows or a hundred million.

Rows are keyed by ``(span start, node_id, empty)``. A fill extends its own row in place (DEDUP
upsert). When a node accumulates many rows, ``compact`` rewrites the merged spans and turns
the rows they absorbed into tombstones (``end_ts = ts``), which reads skip. Compaction only
ever shrinks claims, so a race with another writer can cost a refetch, never a hole.

Callers record a span only after the data it claims is visible (``QuestDBClient.wait_visible``).
``record(..., wait=False)`` saves the wait for the span's own visibility (one round of WAL
polling per page of a backfill); a later ``load`` through the same store then waits first, so
a store always reads its own writes.

A lookup reads only this table, filtered on the node: it never touches the data table, so its
cost does not depend on how many rows the series holds (benchmark target 3).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

from ccxt_questdb_assets.core.coverage import Coverage, CoverageSpan, merge
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.identifiers import quote_ident
from ccxt_questdb_assets.storage.schema import COVERAGE

COMPACT_AFTER_ROWS = 32


class CoverageStore:
    def __init__(self, client: QuestDBClient, table: str) -> None:
        self.client = client
        self.table = table
        self._recorded = 0  # writes of this store that returned without waiting for visibility
        self._seen = 0  # of those, how many a wait_visible has covered
        self._count_lock = threading.Lock()

    def ensure(self) -> None:
        self.client.ensure_table(COVERAGE, self.table)

    def load(self, node_id: str) -> Coverage:
        self.ensure()
        recorded = self._recorded
        if recorded > self._seen:  # read our own writes
            self.client.wait_visible(self.table)
            self._seen = max(self._seen, recorded)
        rows = self.client.query(
            f"SELECT cast(ts AS long), cast(end_ts AS long), empty, cast(checked_at AS long) "
            f"FROM {quote_ident(self.table)} WHERE node_id = %s AND end_ts > ts",
            (node_id,),
        )
        spans = tuple(
            CoverageSpan(start // 1000, end // 1000, bool(empty), (checked or 0) // 1000)
            for start, end, empty, checked in rows
        )
        return Coverage(spans)

    def record(self, node_id: str, spans: Iterable[CoverageSpan], *, wait: bool = True) -> None:
        """Upsert ``spans`` (each keyed by its start) and, by default, wait until readable."""
        spans = [s for s in spans if s.end_ms > s.start_ms]
        if not spans:
            return
        self.ensure()
        self._write(node_id, spans)
        if wait:
            self.client.wait_visible(self.table)
        else:
            with self._count_lock:
                self._recorded += 1

    def compact(self, node_id: str, now_ms: int) -> int:
        """Merge data spans of ``node_id`` into few rows; returns the rows tombstoned."""
        coverage = self.load(node_id)
        data = [s for s in coverage.spans if not s.empty]
        if len(data) <= COMPACT_AFTER_ROWS:
            return 0
        merged = merge(s.window for s in data)
        keep_starts = {w.start_ms for w in merged}
        checked = max(s.checked_at_ms for s in data)
        rewritten = [CoverageSpan(w.start_ms, w.end_ms, False, checked) for w in merged]
        tombstones = [
            CoverageSpan(s.start_ms, s.start_ms, False, now_ms) for s in data if s.start_ms not in keep_starts
        ]
        # Merged rows first: a crash in between leaves both, never neither.
        self._write(node_id, rewritten)
        self.client.wait_visible(self.table)
        self._write(node_id, tombstones, allow_zero_length=True)
        self.client.wait_visible(self.table)
        return len(tombstones)

    def _write(self, node_id: str, spans: list[CoverageSpan], *, allow_zero_length: bool = False) -> None:
        import pandas as pd

        if not spans:
            return
        if not allow_zero_length:
            assert all(s.end_ms > s.start_ms for s in spans)
        n = len(spans)
        frame = pd.DataFrame(
            {
                "ts": pd.to_datetime(np.array([s.start_ms for s in spans], dtype=np.int64), unit="ms", utc=True),
                "node_id": pd.Categorical([node_id] * n),
                "end_ts": pd.to_datetime(np.array([s.end_ms for s in spans], dtype=np.int64), unit="ms", utc=True),
                "empty": np.array([s.empty for s in spans], dtype=bool),
                "checked_at": pd.to_datetime(
                    np.array([s.checked_at_ms for s in spans], dtype=np.int64), unit="ms", utc=True
                ),
            }
        )
        self.client.write_frame(self.table, frame, symbols=("node_id",))

    def windows(self, node_id: str, now_ms: int) -> list[TimeWindow]:
        return self.load(node_id).covered(now_ms)

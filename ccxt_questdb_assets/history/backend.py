"""The QuestDB backend of the spec: ``coverage``, ``read_range``, ``write_rows``.

It serves one series kind (candles or trades) from one data table and its coverage table.
Blocking database work runs in a worker thread so the async engine keeps paging meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.coverage import Coverage, CoverageSpan, to_inclusive_bars
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import MODES, OHLCV, NodeId
from ccxt_questdb_assets.core.timeframes import Interval, parse_duration_ms
from ccxt_questdb_assets.core.windows import TimeLike, TimeWindow, to_epoch_ms
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.storage.schema import TableNames
from ccxt_questdb_assets.storage.series import SeriesStore
from ccxt_questdb_assets.storage.series_kind import CANDLE_KIND, TRADE_KIND

if TYPE_CHECKING:
    import pandas as pd


class QuestDBBackend:
    """Candles or trades in QuestDB, with coverage metadata beside them."""

    def __init__(self, client: QuestDBClient, tables: TableNames, *, mode: str) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r} is not valid: use 'ohlcv' or 'trades'")
        self.client = client
        self.tables = tables
        self.mode = mode
        self.series = SeriesStore(client, tables.data, CANDLE_KIND if mode == OHLCV else TRADE_KIND)
        self.coverage_store = CoverageStore(client, tables.coverage)

    # -- the spec's interface ---------------------------------------------------------------
    async def coverage(
        self, *, node_id: str, interval: Interval = None, now_ms: int | None = None
    ) -> list[tuple[int, int]]:
        """Covered bars as the spec returns them: inclusive ``(first_open_s, last_open_s)``."""
        node = self._node(node_id)
        step = node.timeframe.ms if node.timeframe else parse_duration_ms(interval or 1)
        cov = await self.load_coverage(node)
        now = now_ms if now_ms is not None else wall_clock_ms()
        return to_inclusive_bars(cov.covered(now), step)

    async def read_range(
        self, start: TimeLike, end: TimeLike, *, node_id: str, interval: Interval = None
    ) -> pd.DataFrame:
        node = self._node(node_id)
        window = TimeWindow(to_epoch_ms(start, what="start"), to_epoch_ms(end, what="end"))
        return await self.read(node, window)

    async def write_rows(self, rows: pd.DataFrame, *, node_id: str, interval: Interval = None) -> int:
        """Upsert rows whose ``ts`` is a datetime column or epoch seconds (the original unit).

        Writing does not mark anything covered: coverage is what the engine proves.
        """
        import pandas as pd

        node = self._node(node_id)
        frame = rows.copy()
        ts = frame["ts"]
        if pd.api.types.is_datetime64_any_dtype(ts):
            frame["ts"] = (
                ts.dt.tz_convert("UTC").astype("int64") // 1_000_000
                if ts.dt.tz
                else ts.astype("datetime64[ms]").astype("int64")
            )
        else:
            frame["ts"] = (pd.to_numeric(ts) * 1000).astype("int64")
        if node.mode == OHLCV and "closed" not in frame:
            frame["closed"] = True
        return await self.write(node, frame, wait=True)

    # -- what the engine uses ---------------------------------------------------------------
    async def load_coverage(self, node: NodeId) -> Coverage:
        return await asyncio.to_thread(self.coverage_store.load, str(node))

    async def record_coverage(self, node: NodeId, spans: list[CoverageSpan], *, wait: bool = True) -> None:
        """Record spans whose data is already visible. ``wait=False`` skips the wait for the spans'
        own visibility (this backend's next ``load_coverage`` waits first, so it reads its own writes)."""
        await asyncio.to_thread(self.coverage_store.record, str(node), spans, wait=wait)

    async def compact_coverage(self, node: NodeId, now_ms: int) -> int:
        return await asyncio.to_thread(self.coverage_store.compact, str(node), now_ms)

    async def write(self, node: NodeId, rows_ms: pd.DataFrame, *, wait: bool) -> int:
        """Write rows (``ts`` in epoch ms); with ``wait``, return only once they are readable."""

        def work() -> int:
            n = self.series.write(node, rows_ms)
            if wait and n:
                self.series.wait_visible()
            return n

        return await asyncio.to_thread(work)

    async def wait_visible(self) -> None:
        await asyncio.to_thread(self.series.wait_visible)

    async def read(self, node: NodeId, window: TimeWindow) -> pd.DataFrame:
        return await asyncio.to_thread(self.series.read, node, window)

    def _node(self, node_id: str | NodeId) -> NodeId:
        node = node_id if isinstance(node_id, NodeId) else NodeId.parse(node_id)
        if node.mode != self.mode:
            raise ConfigError(f"node id {str(node)!r} is {node.mode}, but this backend stores {self.mode}")
        return node

"""``AugmentedHistoryProvider``: the spec's read path.

``fetch(start, end, node_id=..., interval=...)`` asks coverage, fills the gaps through the
backfill strategy, then answers from QuestDB, so what a caller sees is always what is stored.
Async-native; ``fetch_sync`` and friends serve callers without an event loop.

Lifecycle: ``async with provider:`` (or ``await provider.close()``) releases the connections. A
provider is not tied to one event loop: each loop gets its own exchange, released when the loop
shuts down, so successive ``asyncio.run`` calls (and the ``*_sync`` helpers) may share it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.timeframes import Interval
from ccxt_questdb_assets.core.windows import TimeLike, TimeWindow, to_epoch_ms
from ccxt_questdb_assets.exchange.loops import PerLoop, run_sync
from ccxt_questdb_assets.history.backend import QuestDBBackend
from ccxt_questdb_assets.history.backfill import (
    BackfillReport,
    BackfillRequest,
    FetcherBackfillStrategy,
    PageObserver,
)
from ccxt_questdb_assets.history.page_source import PageSource

if TYPE_CHECKING:
    import pandas as pd


class AugmentedHistoryProvider:
    """Reads a series from the backend, backfilling what coverage lacks first."""

    def __init__(
        self,
        backend: QuestDBBackend,
        *,
        fetcher: PageSource | None = None,
        auto_backfill: FetcherBackfillStrategy | None = None,
    ) -> None:
        self.backend = backend
        self.fetcher = fetcher
        self.auto_backfill = auto_backfill or (FetcherBackfillStrategy(fetcher) if fetcher is not None else None)
        self.last_report: BackfillReport | None = None
        self._locks: PerLoop[dict[str, asyncio.Lock]] = PerLoop(dict)

    def _request(
        self, start: TimeLike, end: TimeLike, node_id: str | NodeId, interval: Interval, force: bool = False
    ) -> BackfillRequest:
        """The spec's arguments (epoch seconds or datetimes, a node id string) as a typed request."""
        node = NodeId.parse(node_id) if not isinstance(node_id, NodeId) else node_id
        if self.fetcher is not None:
            self.fetcher.check_interval(self.fetcher.node(node), interval)
        window = TimeWindow(to_epoch_ms(start, what="start"), to_epoch_ms(end, what="end"))
        return self.request(node, window, force=force)

    def request(self, node: NodeId, window: TimeWindow, *, force: bool = False) -> BackfillRequest:
        """What covering ``window`` (epoch ms) of ``node`` asks: the node checked against the fetcher,
        the window widened to what it pages (candles: the bar grid)."""
        if self.fetcher is not None:
            node = self.fetcher.node(node)
            window = self.fetcher.align(node, window)
        elif node.timeframe is not None:
            window = TimeWindow(node.timeframe.floor(window.start_ms), node.timeframe.ceil(window.end_ms))
        return BackfillRequest(node, window, force)

    async def ensure_range(
        self,
        start: TimeLike,
        end: TimeLike,
        *,
        node_id: str,
        interval: Interval = None,
        force: bool = False,
        observer: PageObserver | None = None,
    ) -> BackfillReport:
        """Make the backend cover ``[start, end)`` (closed bars only); returns what it took.

        ``force`` refetches the whole window even where coverage says it is stored (rows are
        upserted, so nothing is duplicated). ``observer`` is told of every page written.
        """
        return await self.ensure(self._request(start, end, node_id, interval, force), observer=observer)

    async def ensure(self, request: BackfillRequest, *, observer: PageObserver | None = None) -> BackfillReport:
        """``ensure_range`` for a typed request (``request(node, window)``): no parsing, exact ms."""
        if self.auto_backfill is None:
            raise ConfigError("this provider has no fetcher: it can read stored data but not backfill")
        # One fill per series at a time in this process; other processes are safe through dedup.
        lock = self._locks.get().setdefault(str(request.node), asyncio.Lock())
        async with lock:
            report = await self.auto_backfill.ensure_range(request, self.backend, observer)
        self.last_report = report
        return report

    async def fetch(self, start: TimeLike, end: TimeLike, *, node_id: str, interval: Interval = None) -> pd.DataFrame:
        request = self._request(start, end, node_id, interval)
        if self.auto_backfill is not None:
            await self.ensure_range(start, end, node_id=str(request.node), interval=interval)
        return await self.backend.read(request.node, request.window)

    async def coverage(self, *, node_id: str, interval: Interval = None) -> list[tuple[int, int]]:
        return await self.backend.coverage(node_id=node_id, interval=interval)

    async def close(self) -> None:
        """Release the fetcher's exchange. Idempotent; the provider stays usable (the next call
        connects again)."""
        if self.fetcher is not None:
            await self.fetcher.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- sync helpers: each runs one event loop, whose shutdown releases the exchange -------------
    def fetch_sync(self, start: TimeLike, end: TimeLike, *, node_id: str, interval: Interval = None) -> pd.DataFrame:
        return run_sync(lambda: self.fetch(start, end, node_id=node_id, interval=interval))

    def ensure_range_sync(
        self, start: TimeLike, end: TimeLike, *, node_id: str, interval: Interval = None, force: bool = False
    ) -> BackfillReport:
        return run_sync(lambda: self.ensure_range(start, end, node_id=node_id, interval=interval, force=force))

    def coverage_sync(self, *, node_id: str, interval: Interval = None) -> list[tuple[int, int]]:
        return run_sync(lambda: self.coverage(node_id=node_id, interval=interval))

    def close_sync(self) -> None:
        run_sync(self.close)

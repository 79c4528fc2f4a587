"""Pages from the archive where it has the window, from the REST API for the rest.

``ArchiveSource.pages`` plans the window (``layout.plan``: whole published months, then days; the
rest to REST), reads the next few files ahead while the engine writes the current one (at most
``prefetch`` files in memory), and yields each file as pages that prove its span, exactly like REST
pages do: only closed bars (or final trade milliseconds), the minutes without rows as empty. A file
the archive does not have, or cannot give intact (``client.ArchiveMiss``), is read through REST:
a month as its days, a day through the exchange's own paging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ccxt_questdb_assets.archive.client import ArchiveClient, ArchiveMiss
from ccxt_questdb_assets.archive.heap import return_large_blocks
from ccxt_questdb_assets.archive.layout import (
    ArchiveFile,
    ArchiveKind,
    ArchiveMarket,
    ArchiveSeries,
    plan,
)
from ccxt_questdb_assets.archive.settings import ArchiveSettings
from ccxt_questdb_assets.core.coverage import holes
from ccxt_questdb_assets.core.node_ids import TRADES, NodeId
from ccxt_questdb_assets.core.pages import Page
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.windows import TimeWindow

#: Kline intervals the archive publishes.
KLINE_INTERVALS = frozenset(
    {"1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w"}
)

__all__ = ["ArchiveCounts", "ArchiveSource", "KLINE_INTERVALS"]

RestPages = Callable[[TimeWindow], AsyncIterator[Page]]


@dataclass
class ArchiveCounts:
    """What one source read: files, their rows, and the spans that fell back to REST (and why)."""

    files: int = 0
    rows: int = 0
    fallbacks: list[str] = field(default_factory=list)


class ArchiveSource:
    """The archive of one exchange (``binance`` spot, ``binanceusdm`` USD-M futures)."""

    def __init__(self, exchange_id: str, settings: ArchiveSettings) -> None:
        self.market = ArchiveMarket.of(exchange_id)
        self.settings = settings
        self.counts = ArchiveCounts()

    def serves(self, node: NodeId) -> bool:
        """Trades, and candles of an interval the archive publishes."""
        return node.mode == TRADES or (node.timeframe is not None and node.timeframe.name in KLINE_INTERVALS)

    def series(self, node: NodeId, symbol_id: str) -> ArchiveSeries:
        if node.mode == TRADES:
            return ArchiveSeries(self.market, symbol_id, ArchiveKind.AGG_TRADES)
        assert node.timeframe is not None
        return ArchiveSeries(self.market, symbol_id, ArchiveKind.KLINES, node.timeframe.name)

    async def pages(
        self, node: NodeId, window: TimeWindow, symbol_id: str, rest: RestPages, *, now_ms: int, final_until: int
    ) -> AsyncIterator[Page]:
        """The pages of ``window``: archive files where published, ``rest(span)`` elsewhere."""
        series = self.series(node, symbol_id)
        return_large_blocks()
        # trades: a month of one busy symbol is gigabytes, so trades are read a day at a time
        monthly_lag = self.settings.monthly_lag_ms if node.mode != TRADES else 10**15
        layout = plan(series, window, now_ms, daily_lag_ms=self.settings.daily_lag_ms, monthly_lag_ms=monthly_lag)
        spans: list[ArchiveFile | TimeWindow] = sorted(
            [*layout.files, *layout.rest],
            key=lambda item: item.span.start_ms if isinstance(item, ArchiveFile) else item.start_ms,
        )
        files = [item for item in spans if isinstance(item, ArchiveFile)]
        async with ArchiveClient(self.settings.base_url) as client:
            reads = _Prefetch(client, files, self.settings.prefetch)
            try:
                for item in spans:
                    if isinstance(item, TimeWindow):
                        async for page in rest(item):
                            yield page
                        continue
                    got = await reads.next()
                    async for page in self._file_pages(client, node, series, item, got, window, rest, final_until):
                        yield page
            finally:
                await reads.cancel()

    async def _file_pages(
        self,
        client: ArchiveClient,
        node: NodeId,
        series: ArchiveSeries,
        file: ArchiveFile,
        got: bytes | ArchiveMiss,
        window: TimeWindow,
        rest: RestPages,
        final_until: int,
    ) -> AsyncIterator[Page]:
        if isinstance(got, ArchiveMiss):
            self.counts.fallbacks.append(f"{file.name}: {got.reason}")
            if file.monthly:  # the month's days may be there
                for day in series.days_of(file):
                    got_day = await client.read(day)
                    async for page in self._file_pages(client, node, series, day, got_day, window, rest, final_until):
                        yield page
                return
            async for page in rest(_clip(file.span, window)):
                yield page
            return
        self.counts.files += 1
        page = await asyncio.to_thread(_file_page, node, file, got, window, final_until)
        self.counts.rows += len(page.rows)
        yield page


def _start(item: ArchiveFile | TimeWindow) -> int:
    return item.span.start_ms if isinstance(item, ArchiveFile) else item.start_ms


def _clip(span: TimeWindow, window: TimeWindow) -> TimeWindow:
    return TimeWindow(max(span.start_ms, window.start_ms), min(span.end_ms, window.end_ms))


def _file_page(node: NodeId, file: ArchiveFile, data: bytes, window: TimeWindow, final_until: int) -> Page:
    """One file as one page: its rows inside the window, proving the span up to what is final.
    Parsed off the event loop (pyarrow releases the GIL while it reads)."""
    from ccxt_questdb_assets.archive.parse import agg_trade_frame, csv_member, kline_frame  # pyarrow: with a file

    span = _clip(file.span, window)
    if node.mode == TRADES:
        with csv_member(data, file.name) as csv:
            rows = agg_trade_frame(csv, file.name)
        rows = rows[(rows["ts"] >= span.start_ms) & (rows["ts"] < span.end_ms)].reset_index(drop=True)
        claim_end = min(span.end_ms, final_until)
        claim = TimeWindow(span.start_ms, claim_end) if claim_end > span.start_ms else None
        return Page(
            rows=rows, start_ms=span.start_ms, claim=claim, empty=[claim] if claim and rows.empty else [], requests=0
        )
    tf: Timeframe = node.timeframe  # type: ignore[assignment]
    with csv_member(data, file.name) as csv:
        rows = kline_frame(csv, tf, file.name)
    rows = rows[(rows["ts"] >= span.start_ms) & (rows["ts"] < span.end_ms)].reset_index(drop=True)
    closed_until = tf.floor(final_until)
    rows["closed"] = rows["ts"] + tf.ms <= closed_until
    claim_end = min(span.end_ms, closed_until)
    claim = TimeWindow(span.start_ms, claim_end) if claim_end > span.start_ms else None
    empty = holes(rows["ts"].to_numpy(), claim, tf.ms) if claim else []
    return Page(rows=rows, start_ms=span.start_ms, claim=claim, empty=empty, requests=0)


class _Prefetch:
    """Reads files in order, at most ``ahead`` in flight or waiting (bounded memory)."""

    def __init__(self, client: ArchiveClient, files: list[ArchiveFile], ahead: int) -> None:
        self._client = client
        self._files = files
        self._ahead = max(1, ahead)
        self._tasks: list[asyncio.Task[bytes | ArchiveMiss]] = []
        self._next = 0

    def _fill(self) -> None:
        while self._next < len(self._files) and len(self._tasks) < self._ahead:
            self._tasks.append(asyncio.ensure_future(self._client.read(self._files[self._next])))
            self._next += 1

    async def next(self) -> bytes | ArchiveMiss:
        self._fill()
        task = self._tasks.pop(0)
        result = await task
        self._fill()
        return result

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

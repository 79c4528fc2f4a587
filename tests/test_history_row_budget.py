"""The page pipeline's memory bound by rows (pure logic: a fake page source and a fake, slow backend).

A source of large pages (the archive's month files: 44,640 one-minute candles each) must not fill
the pipeline's 26 page places with a year of rows; REST-sized pages batch as before. The real
path (archive, QuestDB, peak RSS) is measured by benchmark target 10.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pandas as pd

from ccxt_questdb_assets.core.coverage import Coverage, CoverageSpan
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.pages import Page
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.history.backfill import (
    MAX_BATCH_PAGES,
    MAX_BATCH_ROWS,
    MAX_ROWS_IN_FLIGHT,
    BackfillRequest,
    FetcherBackfillStrategy,
)

MIN = 60_000
START = 1_640_995_200_000  # 2022-01-01
NOW = START + 400 * 86_400_000
NODE = NodeId.parse("ohlcv:binance:BTC/USDT:1m")


class Source:
    """``count`` consecutive pages of ``size`` one-minute rows; counts the rows it handed over."""

    clock = staticmethod(lambda: NOW)

    def __init__(self, size: int, count: int) -> None:
        self.size, self.count = size, count
        self.yielded = 0
        self.backend: Backend | None = None
        self.most_in_flight = 0

    async def pages(self, node: NodeId, window: TimeWindow) -> AsyncIterator[Page]:
        for i in range(self.count):
            start = window.start_ms + i * self.size * MIN
            rows = pd.DataFrame({"ts": range(start, start + self.size * MIN, MIN), "close": 1.0})
            self.yielded += self.size
            yield Page(rows=rows, start_ms=start, claim=TimeWindow(start, start + self.size * MIN), requests=0)
            # the engine has taken the page: what it holds is every row handed over and not covered
            assert self.backend is not None
            self.most_in_flight = max(self.most_in_flight, self.yielded - self.backend.covered_rows)


class Backend:
    """Stores nothing; each write takes ``write_s``; remembers each write's size and the coverage."""

    def __init__(self, write_s: float) -> None:
        self.write_s = write_s
        self.writes: list[int] = []
        self.covered_end = START

    @property
    def covered_rows(self) -> int:
        return (self.covered_end - START) // MIN

    async def load_coverage(self, node: NodeId) -> Coverage:
        return Coverage((CoverageSpan(START, self.covered_end, False, NOW),) if self.covered_end > START else ())

    async def write(self, node: NodeId, rows: pd.DataFrame, *, wait: bool) -> int:
        await asyncio.sleep(self.write_s)
        self.writes.append(len(rows))
        return len(rows)

    async def wait_visible(self) -> None:
        await asyncio.sleep(self.write_s / 2)

    async def record_coverage(self, node: NodeId, spans: list[CoverageSpan], *, wait: bool) -> None:
        self.covered_end = max([self.covered_end, *(s.end_ms for s in spans if not s.empty)])

    async def compact_coverage(self, node: NodeId, now_ms: int) -> None:
        return None


def fill(size: int, count: int, write_s: float) -> tuple[Source, Backend]:
    source, backend = Source(size, count), Backend(write_s)
    source.backend = backend
    window = TimeWindow(START, START + size * count * MIN)
    report = asyncio.run(
        FetcherBackfillStrategy(source).ensure_range(BackfillRequest(NODE, window), backend)  # type: ignore[arg-type]
    )
    assert report.rows_written == size * count == backend.covered_rows
    return source, backend


def test_month_pages_are_held_by_rows_not_by_page_places():
    month = 31 * 1440
    source, backend = fill(month, 12, write_s=0.02)
    assert MAX_BATCH_ROWS <= month < MAX_ROWS_IN_FLIGHT
    assert backend.writes == [month] * 12  # a month is a batch of its own: the write's buffer is one month
    assert source.most_in_flight <= MAX_ROWS_IN_FLIGHT, source.most_in_flight  # a month at a time, not twelve


def test_rest_sized_pages_still_batch_by_pages():
    source, backend = fill(1000, 40, write_s=0.05)
    assert max(backend.writes) == MAX_BATCH_PAGES * 1000  # a slow store takes full batches of pages
    assert source.most_in_flight > MAX_BATCH_PAGES * 1000  # pages, not rows, bound them

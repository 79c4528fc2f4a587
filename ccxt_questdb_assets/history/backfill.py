"""``FetcherBackfillStrategy``: fill the gaps of a request, page by page, crash-safe.

For each gap the fetcher yields pages; each page is written, made visible, and only then is
its claim recorded as coverage. Three stages overlap: the fetcher queues pages; the storer takes
every page waiting (at most ``MAX_BATCH_PAGES``) and writes them as one request; meanwhile the
previous batch is waited for (WAL applied) and its claims recorded, in page order. When storing
is faster than fetching, a batch is one page; when it is slower (a loaded database, an
unthrottled exchange), batches grow and the per-request costs are shared, so storage keeps up
with the exchange. Memory stays bounded by ``MAX_PAGES_IN_FLIGHT`` pages and, for sources of
large pages (an archive's month file is one page of 44,640 candles), by ``MAX_ROWS_IN_FLIGHT``
rows, a batch closing at ``MAX_BATCH_ROWS``; a crash loses at most those: a rerun resumes from
the recorded coverage.

Claims of consecutive pages extend one coverage row in place. Empty sub-windows (outages,
before listing) are recorded as empty spans; a recent one splits the run so that it alone
is rechecked after ``EmptyRecheckPolicy.recheck_after_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from ccxt_questdb_assets.core.coverage import Coverage, CoverageSpan, EmptyRecheckPolicy
from ccxt_questdb_assets.core.coverage import gaps as subtract
from ccxt_questdb_assets.core.long_lived import import_long_lived
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.pages import Page
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.history.backend import QuestDBBackend
from ccxt_questdb_assets.history.page_source import PageSource

MAX_BATCH_PAGES = 24
"""Most pages stored by one write (and one visibility wait, one coverage record). Each write is a
WAL commit the server applies: an unthrottled year of 1m candles costs QuestDB half the CPU in
batches of 24 pages that it costs in batches of 8 (docs/benchmarks.md)."""
BATCH_LINGER_S = 0.2
"""How long a batch waits for more pages after its first (a page is never held longer)."""
MAX_PAGES_IN_FLIGHT = 3 * MAX_BATCH_PAGES + 2
"""Pages fetched but not yet covered at any moment: a batch being covered, one being written, a
full queue, the one waiting for a place in it and the one asked ahead (candles page forward)."""
MAX_BATCH_ROWS = 40_000
"""A batch also closes once it holds this many rows (the write's buffer stays a few MB)."""
MAX_ROWS_IN_FLIGHT = 50_000
"""Rows queued, being written or being covered: the fetcher waits for room before it queues a
page (a page alone always fits). REST pages (1,000 rows) never reach it: pages bound them first."""


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """A series and window to cover; ``force`` refetches the window whatever coverage says."""

    node: NodeId
    window: TimeWindow
    force: bool = False


class PageObserver(Protocol):
    """Told of every page once it is written (before its claim is recorded): per-page accounting
    such as requests and rows by partition, without holding the pages."""

    def page_stored(self, page: Page) -> None: ...


@dataclass
class BackfillReport:
    """What one ``ensure_range`` did; feeds logs and Dagster metadata."""

    node_id: str
    window: TimeWindow
    gaps: list[TimeWindow] = field(default_factory=list)
    covered_before_ms: int = 0
    covered_after_ms: int = 0
    pages: int = 0
    requests: int = 0
    rows_written: int = 0
    empty_windows: int = 0
    seconds: float = 0.0
    coverage: Coverage | None = field(default=None, repr=False)
    """The series' whole coverage as the engine last read it: after the fill, its writes visible."""


class _CoverageRecorder:
    """Turns page claims into coverage rows: one row per contiguous run, extended in place."""

    def __init__(self, backend: QuestDBBackend, node: NodeId, policy: EmptyRecheckPolicy, now_ms: int) -> None:
        self.backend, self.node, self.policy, self.now_ms = backend, node, policy, now_ms
        self.run_start: int | None = None
        self.run_end: int | None = None

    async def pages(self, pages: list[Page]) -> None:
        """Record the claims of stored, visible pages (consecutive, in order) in one write."""
        latest: dict[tuple[int, bool], CoverageSpan] = {}
        for page in pages:
            for span in self._spans(page):
                latest[(span.start_ms, span.empty)] = span  # a run extended page by page: its last extent
        if latest:
            # The rows are visible already; the claim's own visibility is waited for once, by the
            # engine's closing load_coverage, not batch by batch (the limiter's pace is kept).
            await self.backend.record_coverage(self.node, list(latest.values()), wait=False)

    def _spans(self, page: Page) -> list[CoverageSpan]:
        claim = page.claim
        if claim is None or claim.empty:
            return []
        checked = self.now_ms
        recent = [w for w in page.empty if w.end_ms > checked - self.policy.recent_ms]
        spans = [CoverageSpan(w.start_ms, w.end_ms, True, checked) for w in page.empty]
        for piece in subtract(claim, recent):
            if self.run_end == piece.start_ms and self.run_start is not None:
                self.run_end = piece.end_ms
            else:
                self.run_start, self.run_end = piece.start_ms, piece.end_ms
            spans.append(CoverageSpan(self.run_start, self.run_end, False, checked))
        if recent:
            self.run_start = self.run_end = None  # a recheckable hole ends the run
        return spans


class FetcherBackfillStrategy:
    """Ensure a backend covers a request by paging its fetcher through the gaps."""

    def __init__(self, fetcher: PageSource, *, recheck: EmptyRecheckPolicy | None = None) -> None:
        self.fetcher = fetcher
        self.recheck = recheck or EmptyRecheckPolicy()

    async def ensure_range(
        self, request: BackfillRequest, backend: QuestDBBackend, observer: PageObserver | None = None
    ) -> BackfillReport:
        started = time.perf_counter()
        node, window = request.node, request.window
        now = self.fetcher.clock()
        coverage = await backend.load_coverage(node)
        report = BackfillReport(node_id=str(node), window=window)
        report.gaps = [window] if request.force else coverage.gaps(window, now, self.recheck)
        report.covered_before_ms = coverage.covered_ms(window, now)
        for gap in report.gaps:
            await self._fill(node, gap, backend, report, now, observer)
        report.coverage = coverage
        if report.gaps:
            await backend.compact_coverage(node, now)
            report.coverage = await backend.load_coverage(node)
            report.covered_after_ms = report.coverage.covered_ms(window, self.fetcher.clock())
        else:
            report.covered_after_ms = report.covered_before_ms
        report.seconds = time.perf_counter() - started
        return report

    async def _fill(
        self,
        node: NodeId,
        gap: TimeWindow,
        backend: QuestDBBackend,
        report: BackfillReport,
        now: int,
        observer: PageObserver | None,
    ) -> None:
        # Pages are frames: pandas loads here, before the first request, not while the paging has
        # requests in flight (a 0.25 s import would hold the event loop and bunch their sends).
        pd = import_long_lived("pandas")

        recorder = _CoverageRecorder(backend, node, self.recheck, now)
        queue: asyncio.Queue[Page | None] = asyncio.Queue(maxsize=MAX_BATCH_PAGES)
        rows_in_flight = _RowBudget(MAX_ROWS_IN_FLIGHT)

        async def cover(batch: list[Page]) -> None:
            await backend.wait_visible()  # every batch written so far, this one included
            await recorder.pages(batch)
            await rows_in_flight.give(sum(len(p.rows) for p in batch))

        async def store() -> None:
            covering: asyncio.Task[None] | None = None
            try:
                done = False
                while not done:
                    batch, done = await _next_batch(queue)
                    if not batch:
                        continue
                    frames = [p.rows for p in batch if len(p.rows)]
                    if frames:
                        rows = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
                        report.rows_written += await backend.write(node, rows, wait=False)
                    report.empty_windows += sum(len(p.empty) for p in batch)
                    if observer is not None:
                        for page in batch:
                            observer.page_stored(page)
                    if covering is not None:
                        await covering  # claims are recorded in page order; its error stops the fill
                    covering = asyncio.create_task(cover(batch))
                if covering is not None:
                    await covering
            finally:
                if covering is not None and not covering.done():
                    covering.cancel()
                    await asyncio.gather(covering, return_exceptions=True)

        storer = asyncio.create_task(store())
        try:
            try:
                async for page in self.fetcher.pages(node, gap):
                    report.pages += 1
                    report.requests += page.requests
                    if storer.done():
                        break
                    await _unless_failed(rows_in_flight.take(len(page.rows)), storer)
                    await _put(queue, page, storer)
            except Exception:
                # The exchange failed mid-gap: keep what it did send (stored and covered), then
                # report the failure; a rerun starts after it.
                if not storer.done():
                    with contextlib.suppress(Exception):
                        await _put(queue, None, storer)
                        await storer
                raise
            await _put(queue, None, storer)
            await storer
        finally:
            if not storer.done():
                storer.cancel()
                await asyncio.gather(storer, return_exceptions=True)


async def _next_batch(queue: asyncio.Queue[Page | None]) -> tuple[list[Page], bool]:
    """The next pages to store together, and whether the fetcher has finished.

    A batch closes at ``MAX_BATCH_PAGES`` pages or ``MAX_BATCH_ROWS`` rows, when the fetcher
    finishes, or ``BATCH_LINGER_S`` after its first page: a throttled backfill stores each page as
    it comes, a fast one in few, large requests (each request costs the server a commit).
    """
    batch: list[Page] = []
    rows = 0
    item = await queue.get()
    deadline = time.monotonic() + BATCH_LINGER_S
    while item is not None:
        batch.append(item)
        rows += len(item.rows)
        if len(batch) == MAX_BATCH_PAGES or rows >= MAX_BATCH_ROWS:
            return batch, False
        if queue.empty():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch, False
            try:
                item = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                return batch, False
        else:
            item = queue.get_nowait()
    return batch, True


async def _put(queue: asyncio.Queue[Page | None], item: Page | None, storer: asyncio.Task[None]) -> None:
    """Queue ``item`` unless the storer failed (then raise its error)."""
    await _unless_failed(queue.put(item), storer)


async def _unless_failed(step: Coroutine[Any, Any, None], storer: asyncio.Task[None]) -> None:
    """Wait for ``step`` unless the storer fails first (then ``step`` is cancelled and the
    storer's error raised): a failed storer never frees room or takes a page."""
    waiting = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({waiting, storer}, return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:
        waiting.cancel()
    if storer in done and storer.exception() is not None:
        raise storer.exception()  # type: ignore[misc]


class _RowBudget:
    """Rows taken by pages not yet covered; ``take`` waits until a page fits (or nothing is taken)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0
        self._room = asyncio.Condition()

    async def take(self, rows: int) -> None:
        async with self._room:
            await self._room.wait_for(lambda: self.taken == 0 or self.taken + rows <= self.limit)
            self.taken += rows

    async def give(self, rows: int) -> None:
        async with self._room:
            self.taken -= rows
            self._room.notify_all()

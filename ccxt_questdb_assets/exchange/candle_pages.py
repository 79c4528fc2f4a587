"""Candle pages per dialect (see exchange/dialects.py): what to ask, and what each answer proves.

* FORWARD (Binance): ``since`` and ``until`` = the window's end; the exchange answers the first
  ``limit`` bars from ``since``, oldest first. A full page proves up to its last bar, a short one
  up to the window's end.
* NEWEST_FIRST (OKX, Bybit): the exchange answers the *newest* ``limit`` bars of
  ``[since, until]``. Pages walk back from the window's end: a full page proves from its oldest
  bar to its end, and the next page ends there; a short one proves down to the window's start.
* BOUNDED_RANGES (Coinbase; an unproven exchange): each request names a range of at most
  ``limit`` bars, so no cap can cut it: the answer proves the whole range, whatever its order.
* LATEST_ONLY (Kraken): only the latest ``history_bars`` bars exist. A window starting before them
  is refused before any request (:class:`UnsupportedHistoryError`); one inside them is one
  request.

Rows outside the range asked are dropped, never claimed. The bar still open is never claimed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

from ccxt_questdb_assets.core.coverage import holes
from ccxt_questdb_assets.core.errors import ExchangeDataError, UnsupportedHistoryError
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.pages import Page
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.validation import candles_frame
from ccxt_questdb_assets.core.windows import TimeWindow, format_ms
from ccxt_questdb_assets.exchange.client import last_answer_rows
from ccxt_questdb_assets.exchange.dialects import CandlePaging
from ccxt_questdb_assets.exchange.paging import PagingFetcher

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["candle_pages"]


def candle_pages(fetcher: PagingFetcher, node: NodeId, window: TimeWindow, limit: int) -> AsyncIterator[Page]:
    """The pages covering ``window`` (bar-aligned) in the exchange's dialect, ``limit`` bars a request."""
    paging = fetcher.config.dialect.candles
    if paging is CandlePaging.FORWARD:
        return _forward(fetcher, node, window, limit)
    if paging is CandlePaging.LATEST_ONLY:
        return _latest_only(fetcher, node, window)
    return _backward(fetcher, node, window, limit, ranges=paging is CandlePaging.BOUNDED_RANGES)


def _frame(fetcher: PagingFetcher, node: NodeId, raw: list, lo: int, hi: int) -> pd.DataFrame:
    """The rows of ``[lo, hi)`` (oldest first), each marked closed or not by the fetcher's clock."""
    tf: Timeframe = node.timeframe  # type: ignore[assignment]
    frame = candles_frame(raw, tf, what=f"{node} page from {lo}", closed_until=fetcher.closed_until(tf))
    ts = frame["ts"].to_numpy()
    inside = (ts >= lo) & (ts < hi)
    if not inside.all():  # (a page is nearly always inside its range: no copy then)
        frame = frame[inside].reset_index(drop=True)
    return frame


def _page(fetcher: PagingFetcher, node: NodeId, frame: pd.DataFrame, lo: int, hi: int, requests: int) -> Page:
    """A page of ``frame`` proving ``[lo, hi)`` up to the last closed bar."""
    tf: Timeframe = node.timeframe  # type: ignore[assignment]
    claim_end = min(hi, fetcher.closed_until(tf))
    claim = TimeWindow(lo, claim_end) if claim_end > lo else None
    empty = holes(frame["ts"].to_numpy(), claim, tf.ms) if claim else []
    return Page(rows=frame, start_ms=lo, claim=claim, empty=empty, requests=requests)


def _checked_rows(node: NodeId, since: int, rows: list, limit: int) -> list:
    """ccxt's rows, unless it dropped some it could not read (a null open time): the page would look
    short and its last bars be recorded as empty."""
    sent = last_answer_rows()
    if sent is not None and len(rows) < sent <= limit:
        raise ExchangeDataError(
            f"{node}: the exchange answered {sent} candles from {format_ms(since)} but only "
            f"{len(rows)} have a valid open time; refusing the page, nothing of this page was written"
        )
    return rows


async def _forward(fetcher: PagingFetcher, node: NodeId, window: TimeWindow, limit_max: int) -> AsyncIterator[Page]:
    """Pages from the window's start on. The next page's cursor is known once an answer is in (its
    last bar), so the next request is sent before this answer is checked and turned into a page:
    checking overlaps the exchange's answer time, and the requests are the ones the loop would make
    one after the other (a page whose checked end differs from the cursor read early, which only
    an answer the checks refuse can do, has its early request cancelled)."""
    tf: Timeframe = node.timeframe  # type: ignore[assignment]

    def asking(cursor: int) -> tuple[int, Awaitable[tuple[list, int]]]:
        limit = max(1, min(limit_max, tf.bars_between(cursor, window.end_ms)))
        since, end = cursor, window.end_ms

        async def ask() -> list:
            rows = await fetcher.call(
                "fetch_ohlcv", node.symbol, tf.name, since=since, limit=limit, params={"until": end - 1}
            )
            return _checked_rows(node, since, rows, limit)

        def probe():  # the last bar at or before the window's end
            return fetcher.call("fetch_ohlcv", node.symbol, tf.name, since=None, limit=1, params={"until": end - 1})

        answer = fetcher.confirmed(
            node,
            TimeWindow(since, end),
            ask,
            probe,
            fetcher.first_bar_in(since, end),
            held_before=cursor > window.start_ms,
        )
        return limit, answer

    cursor = window.start_ms
    ahead: tuple[int, int, asyncio.Future[tuple[list, int]]] | None = None  # (cursor, limit, answer)
    try:
        while cursor < window.end_ms:
            if ahead is not None and ahead[0] == cursor:
                _, limit, answer = ahead
            else:
                if ahead is not None:  # asked for a cursor the checked page did not end at
                    await _cancel(ahead[2])
                limit, coroutine = asking(cursor)
                answer = asyncio.ensure_future(coroutine)
            ahead = None
            raw, requests = await answer
            early = _next_cursor(raw, cursor, window.end_ms, limit, tf)
            if early is not None:
                next_limit, coroutine = asking(early)
                ahead = (early, next_limit, asyncio.ensure_future(coroutine))
                for _ in range(2):  # let it send the request before this answer is checked: its
                    await asyncio.sleep(0)  # socket write comes in the second loop step
            frame = _frame(fetcher, node, raw, cursor, window.end_ms)
            complete_to = window.end_ms if len(raw) < limit else int(frame["ts"].iloc[-1]) + tf.ms
            if len(raw) >= limit and frame.empty:
                raise ExchangeDataError(f"{node}: a full page of {len(raw)} candles lies outside the window asked")
            yield _page(fetcher, node, frame, cursor, complete_to, requests)
            if complete_to <= cursor:
                break
            cursor = complete_to
    finally:
        if ahead is not None:
            await _cancel(ahead[2])


async def _cancel(answer: asyncio.Future[Any]) -> None:
    answer.cancel()
    await asyncio.gather(answer, return_exceptions=True)


def _next_cursor(raw: Any, cursor: int, end: int, limit: int, tf: Timeframe) -> int | None:
    """Where the page after a full answer starts, read from the answer before it is checked: after
    its last bar (ccxt's rows come sorted), when that bar lies inside the window; else None."""
    if len(raw) < limit:
        return None
    last = int(raw[-1][0])
    return last + tf.ms if cursor <= last and last + tf.ms < end else None


async def _backward(
    fetcher: PagingFetcher, node: NodeId, window: TimeWindow, limit_max: int, *, ranges: bool
) -> AsyncIterator[Page]:
    """Pages from the window's end back to its start. ``ranges``: each request spans at most
    ``limit_max`` bars (the exchange refuses more); else it spans the rest of the window."""
    tf: Timeframe = node.timeframe  # type: ignore[assignment]
    upper = window.end_ms
    while upper > window.start_ms:
        lo = max(window.start_ms, upper - limit_max * tf.ms) if ranges else window.start_ms
        limit = max(1, min(limit_max, tf.bars_between(lo, upper)))

        async def ask(lo: int = lo, upper: int = upper, limit: int = limit) -> list:
            rows = await fetcher.call(
                "fetch_ohlcv", node.symbol, tf.name, since=lo, limit=limit, params={"until": upper - 1}
            )
            return _checked_rows(node, lo, rows, limit)

        def probe(upper: int = upper):  # the newest bar of the page before the window's end
            since = max(0, upper - limit_max * tf.ms)
            return fetcher.call("fetch_ohlcv", node.symbol, tf.name, since=since, limit=1, params={"until": upper - 1})

        raw, requests = await fetcher.confirmed(
            node, TimeWindow(lo, upper), ask, probe, fetcher.first_bar_in(lo, upper), held_before=False
        )
        frame = _frame(fetcher, node, raw, lo, upper)
        proven_from = lo
        if len(raw) >= limit and tf.bars_between(lo, upper) > limit:
            if frame.empty:
                raise ExchangeDataError(
                    f"{node}: a full page of {len(raw)} candles lies outside the range asked "
                    f"[{format_ms(lo)}, {format_ms(upper)})"
                )
            proven_from = int(frame["ts"].iloc[0])  # the newest `limit` bars: nothing proven before them
        yield _page(fetcher, node, frame, proven_from, upper, requests)
        upper = proven_from


async def _latest_only(fetcher: PagingFetcher, node: NodeId, window: TimeWindow) -> AsyncIterator[Page]:
    tf: Timeframe = node.timeframe  # type: ignore[assignment]
    dialect = fetcher.config.dialect
    served = dialect.history_bars or 1
    oldest = tf.floor(fetcher.clock()) - (served - 1) * tf.ms
    if window.start_ms < oldest:
        raise UnsupportedHistoryError(
            f"{node}: {dialect.exchange_id} serves only its latest {served} {tf.name} candles (from "
            f"{format_ms(oldest)} now), and the window {window} starts before them; nothing was asked or "
            f"recorded. {dialect.limits}"
        )

    async def ask() -> list:
        rows = await fetcher.call("fetch_ohlcv", node.symbol, tf.name, since=window.start_ms, limit=served)
        return _checked_rows(node, window.start_ms, rows, served)

    raw, requests = await fetcher.confirmed(
        node, window, ask, ask, fetcher.first_bar_in(window.start_ms, window.end_ms), held_before=False
    )
    frame = _frame(fetcher, node, raw, window.start_ms, window.end_ms)
    proven_from = window.start_ms
    if len(raw) >= served and not frame.empty and int(frame["ts"].iloc[0]) > window.start_ms:
        proven_from = int(frame["ts"].iloc[0])  # the exchange moved on between the check and the answer
    yield _page(fetcher, node, frame, proven_from, window.end_ms, requests)

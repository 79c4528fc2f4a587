"""Trade pages per dialect (see exchange/dialects.py) for the dialects other than Binance's.

Binance's id paging (and the by-time paging of an unproven exchange) lives in the trades fetcher;
here are the others. A trade millisecond is claimed only once every trade of it is held: a page
cut by the exchange's cap proves nothing about the millisecond (or second) where it was cut.

* ID_BACKWARD (OKX ``history-trades``): newest first, 100 a page; the first page asks the trades
  older than the window's end (``type=2``: by time), the next ones the trades older than the
  oldest trade id held (``type=1``), so trades sharing a millisecond are never split.
* SECONDS_BACKWARD (Coinbase ``ticker``): the newest ``limit`` trades of ``[start, end)`` in whole
  seconds; the next page ends with the second of the oldest trade held (its trades come again and
  are deduplicated). Coinbase's ``side`` is the maker's: stored flipped, as everywhere the taker's.
* CURSOR_FORWARD (Kraken ``Trades``): oldest first after the exclusive cursor ``last`` the previous
  answer returned (ccxt appends it to the last row). Rows of 7 fields carry Kraken's trade id;
  classic rows of 6 carry none, so each gets one made of its millisecond and its order within it
  (``<ms>-<n>``), counted across pages: the same trade gets the same id on every fetch that
  starts at a claim boundary.
* NONE (Bybit): refused before any request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ccxt_questdb_assets.core.errors import ExchangeDataError, UnsupportedHistoryError
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.pages import Page
from ccxt_questdb_assets.core.validation import trades_frame
from ccxt_questdb_assets.core.windows import TimeWindow, format_ms
from ccxt_questdb_assets.exchange.dialects import TradePaging
from ccxt_questdb_assets.exchange.paging import Ask, PagingFetcher

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["dialect_trade_pages"]

_OKX_HISTORY = "publicGetMarketHistoryTrades"


def dialect_trade_pages(fetcher: PagingFetcher, node: NodeId, window: TimeWindow) -> AsyncIterator[Page] | None:
    """The pages of ``window`` for dialects paged here; None for Binance's and by-time paging."""
    dialect = fetcher.config.dialect
    paging = dialect.trades
    if paging is TradePaging.NONE:
        raise UnsupportedHistoryError(
            f"{node}: trades of {window} cannot be backfilled: {dialect.limits}; nothing was asked or recorded"
        )
    if dialect.trade_history_days is not None:
        oldest = fetcher.clock() - dialect.trade_history_days * 86_400_000
        if window.start_ms < oldest:
            raise UnsupportedHistoryError(
                f"{node}: {dialect.exchange_id} serves trades of the last {dialect.trade_history_days} days only "
                f"(from {format_ms(oldest)} now), and the window {window} starts before; nothing was asked or "
                f"recorded. {dialect.limits}"
            )
    if paging is TradePaging.ID_BACKWARD:
        return _id_backward(fetcher, node, window, dialect.trade_page)
    if paging is TradePaging.SECONDS_BACKWARD:
        return _seconds_backward(fetcher, node, window, dialect.trade_page)
    if paging is TradePaging.CURSOR_FORWARD:
        return _cursor_forward(fetcher, node, window, dialect.trade_page)
    return None


def _frame(fetcher: PagingFetcher, raw: list, what: str) -> pd.DataFrame:
    """The validated trades, their ``side`` the taker's (flipped where the exchange gives the maker's)."""
    frame = trades_frame(raw, what=what)
    if fetcher.config.dialect.maker_side and len(frame):
        frame["side"] = frame["side"].map({"buy": "sell", "sell": "buy", "": ""})
    return frame


def _page(frame: pd.DataFrame, lo: int, hi: int, requests: int, *, rows: TimeWindow) -> Page:
    """The page's rows inside ``rows`` (the window asked), claiming ``[lo, hi)``. The rows of the
    millisecond where a page was cut are kept although not claimed: the next page, paged by id or
    cursor, holds only the trades beyond them."""
    inside = frame[(frame["ts"] >= rows.start_ms) & (frame["ts"] < rows.end_ms)].reset_index(drop=True)
    claim = TimeWindow(lo, hi) if hi > lo else None
    return Page(
        rows=inside, start_ms=lo, claim=claim, empty=[claim] if claim and inside.empty else [], requests=requests
    )


async def _twice_if_empty(ask: Ask) -> tuple[list, int]:
    """``ask()``'s rows; an empty answer is believed only when asked again (a page that only pages by
    cursor has no other shape to probe with)."""
    raw = await ask()
    if raw:
        return raw, 1
    return await ask(), 2


async def _walk_back(
    fetcher: PagingFetcher,
    node: NodeId,
    window: TimeWindow,
    limit: int,
    next_ask: Callable[[int, pd.DataFrame | None], tuple[Ask, str]],
) -> AsyncIterator[Page]:
    """Newest-first pages from the window's end back to its start. ``next_ask(upper, previous)`` gives
    the request of the page ending at ``upper`` (``previous``: the last page's trades, None at
    first) and how to name it. A full page proves from just after its oldest millisecond (which
    may go on in the next page) to its end; a short one down to the window's start."""
    upper = min(window.end_ms, fetcher.final_until())
    frame: pd.DataFrame | None = None
    while upper > window.start_ms:
        ask, what = next_ask(upper, frame)
        raw, requests = await _twice_if_empty(ask)
        frame = _frame(fetcher, raw, f"{node} page {what}")
        full = len(raw) >= limit
        lo = max(window.start_ms, int(frame["ts"].iloc[0]) + 1) if full else window.start_ms
        yield _page(frame, lo, upper, requests, rows=TimeWindow(window.start_ms, upper))
        if not full or lo <= window.start_ms:
            break
        upper = lo


def _id_backward(fetcher: PagingFetcher, node: NodeId, window: TimeWindow, limit: int) -> AsyncIterator[Page]:
    def next_ask(upper: int, previous: pd.DataFrame | None) -> tuple[Ask, str]:
        if previous is None:  # by time: the trades older than the window's end
            params: dict[str, Any] = {"method": _OKX_HISTORY, "type": "2", "after": str(upper)}
        else:  # by id: the trades older than the oldest held
            params = {"method": _OKX_HISTORY, "type": "1", "after": str(min(int(i) for i in previous["trade_id"]))}
        return lambda: fetcher.call(
            "fetch_trades", node.symbol, None, limit, params=params
        ), f"before {params['after']}"

    return _walk_back(fetcher, node, window, limit, next_ask)


def _seconds_backward(fetcher: PagingFetcher, node: NodeId, window: TimeWindow, limit: int) -> AsyncIterator[Page]:
    start_s = window.start_ms // 1000
    asked: list[int] = []

    def next_ask(upper: int, previous: pd.DataFrame | None) -> tuple[Ask, str]:
        end_s = -(-upper // 1000)
        if asked and asked[-1] == end_s:  # the oldest second of a full page would be asked again
            raise ExchangeDataError(
                f"{node}: more than {limit} trades in the second before {format_ms(end_s * 1000)}; "
                f"{fetcher.config.exchange_id} pages trades by whole seconds and cannot page past it; "
                "nothing of this second was recorded as covered"
            )
        asked.append(end_s)
        # `since` stays None: ccxt would drop rows before it and a capped page would look short.
        params = {"start": str(start_s), "until": end_s * 1000}
        return lambda: fetcher.call(
            "fetch_trades", node.symbol, None, limit, params=params
        ), f"before {format_ms(upper)}"

    return _walk_back(fetcher, node, window, limit, next_ask)


async def _cursor_forward(fetcher: PagingFetcher, node: NodeId, window: TimeWindow, limit: int) -> AsyncIterator[Page]:
    stop = min(window.end_ms, fetcher.final_until())
    cursor = str(window.start_ms * 1_000_000 - 1)  # nanoseconds, exclusive: from the window's first ms
    lo = window.start_ms
    numbering = _Numbering()
    while lo < stop:

        def ask(cursor: str = cursor):
            return fetcher.call("fetch_trades", node.symbol, None, limit, params={"since": cursor})

        raw, requests = await _twice_if_empty(ask)
        full = len(raw) >= limit
        next_cursor = _appended_cursor(raw[-1]) if raw else None
        if not _rows_carry_ids(raw):
            numbering.assign(raw)
        frame = _frame(fetcher, raw, f"{node} page after cursor {cursor}")
        hi = stop
        if full:
            if not next_cursor:
                raise ExchangeDataError(f"{node}: a full page of trades came without the cursor of its next page")
            hi = min(stop, int(frame["ts"].iloc[-1]))  # its last millisecond may go on
        yield _page(frame, lo, hi, requests, rows=TimeWindow(lo, stop))
        if not full or int(frame["ts"].iloc[-1]) >= window.end_ms:
            break
        lo, cursor = max(lo, hi), str(next_cursor)


def _appended_cursor(trade: dict[str, Any]) -> str | None:
    """The answer's ``last`` cursor, which ccxt appends to the raw row of the page's last trade."""
    info = trade.get("info")
    return str(info[-1]) if isinstance(info, list) and info else None


def _rows_carry_ids(trades: list[dict[str, Any]]) -> bool:
    """Rows of 7 fields carry Kraken's trade id (ccxt's ``id``); classic rows of 6 carry none, and
    ccxt gives the page's last trade the appended cursor as its ``id``."""
    if not trades:
        return True
    last = trades[-1].get("info")
    return isinstance(last, list) and len(last) >= 8 and all(t.get("id") for t in trades)


class _Numbering:
    """Ids for trades that have none: ``<ms>-<n>``, ``n`` counting the trades of that ms in order."""

    def __init__(self) -> None:
        self.ms: int | None = None
        self.n = 0

    def assign(self, trades: list[dict[str, Any]]) -> None:
        for trade in trades:
            ms = trade.get("timestamp")
            if ms != self.ms:
                self.ms, self.n = ms, 0
            trade["id"] = f"{ms}-{self.n}"
            self.n += 1

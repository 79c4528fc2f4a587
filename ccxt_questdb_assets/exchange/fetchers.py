"""Fetchers page an exchange through ccxt and yield validated pages with what each proves.

A ``Page`` carries its rows and its *claim*: the window for which the page holds every row
the exchange has, and only closed bars (or trade milliseconds) are ever claimed. The history
engine writes each page as it arrives and records the claim once the rows are visible.

Pages never rely on ccxt's built-in pagination (it drops windows and retries without
backoff). How a page is asked and what it proves depends on the exchange's dialect
(exchange/dialects.py): candles in exchange/candle_pages.py; Binance trades page by aggregate
trade id (``fromId``) here, so trades sharing a millisecond are never split at a page edge, and
an unproven exchange's by time, re-asking from the last millisecond, with the trade id as dedup
key; the other dialects' trades in exchange/trade_pages.py.

Empty answers. ``[]`` for a window is not proof that the exchange has nothing there (proxies,
overloaded nodes and rate-limit shields answer it too), and a believed ``[]`` becomes an empty
coverage span that is never fetched again. So an empty answer is believed only when a repeat of
the request and a *probe* agree: the probe asks the last row at or before the window's end (no
start). A probe row inside the window, or no row at all although this call already holds rows
before the window, proves the empty answers false: the page is asked again, up to
``max_retries`` more rounds, then ``TransientExchangeError``. A probe row before the window (or
after it: an exchange that ignores the end bound; or a probe the exchange refuses) confirms the
empty answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from ccxt_questdb_assets.archive.source import ArchiveSource
from ccxt_questdb_assets.core.clock import Clock, wall_clock_ms
from ccxt_questdb_assets.core.errors import (
    CcxtQuestDBError,
    ConfigError,
    ExchangeDataError,
    PermanentExchangeError,
    TransientExchangeError,
)
from ccxt_questdb_assets.core.node_ids import OHLCV, TRADES, Mode, NodeId
from ccxt_questdb_assets.core.pages import Page
from ccxt_questdb_assets.core.timeframes import Timeframe, parse_duration_ms
from ccxt_questdb_assets.core.validation import candles_frame, trades_frame
from ccxt_questdb_assets.core.windows import TimeWindow, format_ms, to_epoch_ms
from ccxt_questdb_assets.exchange.bulk_candles import bulk_rows
from ccxt_questdb_assets.exchange.candle_pages import candle_pages
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.exchange.dialects import TradePaging
from ccxt_questdb_assets.exchange.session import ExchangeSession
from ccxt_questdb_assets.exchange.trade_pages import dialect_trade_pages

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CcxtOHLCVFetcher", "CcxtTradesFetcher"]

# Binance's parameter walking aggregate trades by id.
_TRADE_ID_PARAM = "fromId"
# Binance's aggTrades accepts at most one hour between startTime and endTime.
_TRADE_TIME_WINDOW_MS = 3_600_000


class _Fetcher:
    mode: Mode

    def __init__(self, config: CcxtBackfillConfig, *, exchange=None, clock: Clock = wall_clock_ms) -> None:
        self.config = config
        self.session = ExchangeSession(config, exchange=exchange)
        self.clock = clock
        self.archive = ArchiveSource(config.exchange_id, config.archive) if config.archive is not None else None

    def node(self, node_id: str | NodeId) -> NodeId:
        node = node_id if isinstance(node_id, NodeId) else NodeId.parse(node_id)
        if node.mode != self.mode:
            raise ConfigError(f"node id {str(node)!r} is a {node.mode} series; this fetcher serves {self.mode}")
        if node.exchange != self.config.exchange_id:
            raise ConfigError(
                f"node id {str(node)!r} names exchange {node.exchange!r}, but this fetcher is for "
                f"{self.config.exchange_id!r}"
            )
        if self.config.symbols and node.symbol not in self.config.symbols:
            raise ConfigError(f"symbol {node.symbol!r} is not among the configured symbols {self.config.symbols}")
        return node

    async def fetch(self, start, end, *, node_id: str, interval=None) -> pd.DataFrame:
        """The spec's fetcher call: every row in ``[start, end)`` straight from the exchange."""
        import pandas as pd

        node = self.node(node_id)
        window = TimeWindow(to_epoch_ms(start, what="start"), to_epoch_ms(end, what="end"))
        self.check_interval(node, interval)
        frames = [p.rows async for p in self.pages(node, self.align(node, window))]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return trades_frame([]) if self.mode == TRADES else candles_frame([], node.timeframe)
        return pd.concat(frames, ignore_index=True)

    def check_interval(self, node: NodeId, interval) -> None:
        """An ``interval`` that disagrees with the series' timeframe is an error, not a refetch loop."""
        if interval is None or node.timeframe is None:
            return
        ms = parse_duration_ms(interval)
        if ms != node.timeframe.ms:
            raise ConfigError(
                f"interval {interval!r} ({ms} ms) disagrees with timeframe {node.timeframe} of "
                f"{str(node)!r}: pass interval={node.timeframe.ms // 1000} or omit it"
            )

    def align(self, node: NodeId, window: TimeWindow) -> TimeWindow:
        return window

    async def pages(self, node: NodeId, window: TimeWindow) -> AsyncIterator[Page]:
        """The pages covering ``window``: from the archive where it has the closed history (when one
        is configured), through the exchange's REST paging elsewhere."""
        if self.archive is None or not self.archive.serves(node):
            async for page in self._rest_pages(node, window):
                yield page
            return
        market = await self.session.require_symbol(node.symbol)
        archived = self.archive.pages(
            node,
            window,
            market["id"],
            lambda span: self._rest_pages(node, span),
            now_ms=self.clock(),
            final_until=self.final_until(),
        )
        async for page in archived:
            yield page

    def _rest_pages(self, node: NodeId, window: TimeWindow) -> AsyncIterator[Page]:
        raise NotImplementedError

    async def close(self) -> None:
        await self.session.close()

    def final_until(self) -> int:
        """Rows before this millisecond are final now (the exchange publishes late)."""
        return self.clock() - self.config.final_lag_ms

    def closed_until(self, tf: Timeframe) -> int:
        """Bars opening before ``closed_until - tf`` are closed and final now."""
        return tf.floor(self.final_until())

    @staticmethod
    def first_bar_in(start: int, end: int) -> Callable[[list], int | None]:
        """The first open time in ``[start, end)`` among probe rows (for ``confirmed``)."""
        return lambda rows: _first_ts_in(rows, start, end, lambda r: r[0])

    async def call(self, method: str, *args, **kwargs):
        """``session.call``; ccxt's parser failing on a malformed answer (a ValueError or TypeError
        from inside ccxt, e.g. a price 'NaN' or a null time) becomes ``ExchangeDataError``."""
        try:
            with bulk_rows():  # candle answers as one array (exchange/bulk_candles.py)
                return await self.session.call(method, *args, **kwargs)
        except CcxtQuestDBError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, ArithmeticError) as exc:
            raise ExchangeDataError(
                f"{self.config.exchange_id} {method} answered rows ccxt cannot parse ({type(exc).__name__}: "
                f"{str(exc)[:200]}); nothing of this page was written"
            ) from None

    async def confirmed(
        self,
        node: NodeId,
        window: TimeWindow,
        ask: Callable[[], Awaitable[list]],
        probe: Callable[[], Awaitable[list]],
        inside: Callable[[list], int | None],
        *,
        held_before: bool,
    ) -> tuple[list, int]:
        """``ask()``'s rows, or ``[]`` once a repeat and a probe agree that ``window`` is empty.

        ``inside(probe_rows)`` gives the timestamp of a probe row proving data in the window.
        ``held_before``: this call already holds rows before the window, so a probe answering
        nothing at all is false too.
        """
        requests = 0
        rounds = self.config.retry_policy.max_retries + 1
        for _ in range(rounds):
            for _ in range(2):
                raw = await ask()
                requests += 1
                if len(raw):
                    return raw, requests
            try:
                seen = await probe()
            except PermanentExchangeError:  # the exchange cannot answer the probe: two empties stand
                return [], requests + 1
            requests += 1
            found = inside(seen) if len(seen) else None
            if found is None and (len(seen) > 0 or not held_before):
                return [], requests
        where = f"a row at {format_ms(found)}" if found is not None else "no row at all before its end"
        raise TransientExchangeError(
            f"{node}: the exchange answered [] for {window} {2 * rounds} times, but a probe shows {where} "
            f"(max_retries={rounds - 1}); the window is not recorded as empty: rerun later"
        )


class CcxtOHLCVFetcher(_Fetcher):
    """Candles of one exchange, paged forward on the bar grid."""

    mode: Mode = OHLCV

    def align(self, node: NodeId, window: TimeWindow) -> TimeWindow:
        """Every bar that overlaps ``[start, end)``: start floors, end ceils to the grid."""
        tf = node.timeframe
        return TimeWindow(tf.floor(window.start_ms), tf.ceil(window.end_ms))

    async def _rest_pages(self, node: NodeId, window: TimeWindow) -> AsyncIterator[Page]:
        market = await self.session.require_symbol(node.symbol)
        limit = self.session.page_limit("fetchOHLCV", market)
        async for page in candle_pages(self, node, window, limit):
            yield page


class CcxtTradesFetcher(_Fetcher):
    """Trades with millisecond timestamps and the exchange's trade id."""

    mode: Mode = TRADES

    async def _rest_pages(self, node: NodeId, window: TimeWindow) -> AsyncIterator[Page]:
        await self.session.require_symbol(node.symbol)
        dialect_pages = dialect_trade_pages(self, node, window)
        if dialect_pages is not None:
            async for page in dialect_pages:
                yield page
            return
        limit = min(self.session.page_limit("fetchTrades"), self.config.dialect.trade_page)
        id_param = _TRADE_ID_PARAM if self.config.dialect.trades is TradePaging.ID_FORWARD else None
        cursor, next_id, held = window.start_ms, None, False
        # One live edge per call: re-reading the clock each page would chase "now" forever.
        final_until = self.clock() - self.config.final_lag_ms
        while cursor < window.end_ms and (cursor < final_until or next_id is not None):
            by_id = next_id is not None
            if by_id:
                slice_end = window.end_ms
                raw, requests = await self._by_id(
                    node, id_param, next_id, cursor, min(window.end_ms, final_until), limit
                )
            else:
                slice_end = min(window.end_ms, cursor + _TRADE_TIME_WINDOW_MS)
                raw, requests = await self._by_time(node, cursor, slice_end, limit, held_before=held)
            frame = trades_frame(raw, what=f"{node} page from {cursor}")
            held = held or not frame.empty
            frame = frame[frame["ts"] >= cursor].reset_index(drop=True)
            inside = frame[frame["ts"] < window.end_ms].reset_index(drop=True)
            full = len(raw) >= limit
            next_id = None
            if len(inside) < len(frame):
                complete_to = window.end_ms  # the exchange is already past the window
            elif full:
                if frame.empty:
                    raise ExchangeDataError(f"{node}: a full page of {len(raw)} trades lies before {cursor}")
                complete_to = int(frame["ts"].iloc[-1])  # its last millisecond may continue
                if id_param:
                    next_id = str(int(frame["trade_id"].iloc[-1]) + 1)
                elif complete_to <= cursor:
                    raise ExchangeDataError(
                        f"{node}: more than {limit} trades share the millisecond {cursor}; "
                        "this exchange cannot be paged without trade ids"
                    )
            else:
                # Nothing more in the slice (by time) or nothing newer at all (by id).
                complete_to = min(slice_end, final_until)
                if id_param and not by_id and not frame.empty and complete_to < min(window.end_ms, final_until):
                    # Every trade of the slice is held: the next ones follow its last id, a full page
                    # a request however quiet the hours (by time, a request an hour).
                    next_id = str(int(frame["trade_id"].iloc[-1]) + 1)
            claim_end = min(complete_to, final_until)
            claim = TimeWindow(cursor, claim_end) if claim_end > cursor else None
            yield Page(
                rows=inside,
                start_ms=cursor,
                claim=claim,
                empty=[claim] if claim and inside.empty else [],
                requests=requests,
            )
            if (by_id and not full) or (complete_to <= cursor and next_id is None):
                break
            cursor = max(cursor, complete_to)

    def _probe(self, node: NodeId, end: int):
        """The last trade at or before ``end - 1``."""
        return self.call("fetch_trades", node.symbol, None, 1, params={"until": end - 1})

    async def _by_time(self, node: NodeId, start: int, end: int, limit: int, *, held_before: bool):
        def ask():
            return self.call("fetch_trades", node.symbol, start, limit, params={"until": end - 1})

        return await self.confirmed(
            node,
            TimeWindow(start, end),
            ask,
            lambda: self._probe(node, end),
            lambda rows: _first_ts_in(rows, start, end, lambda t: t.get("timestamp")),
            held_before=held_before,
        )

    async def _by_id(self, node: NodeId, id_param: str, from_id: str, start: int, end: int, limit: int):
        """Trades from ``from_id``; an empty answer is checked against the last trade before ``end``
        (a trade with an id >= ``from_id`` there proves it false). Earlier pages hold rows.

        Without ``since`` ccxt keeps the *last* ``limit`` rows of an answer, and it counts repeated
        rows against the limit: a full page holding a repeated trade id may have lost its first
        trades, so it is asked again (up to ``max_retries`` times, then ``TransientExchangeError``).
        """
        extra = 0

        async def ask():
            nonlocal extra
            rounds = self.config.retry_policy.max_retries + 1
            for attempt in range(rounds):
                raw = await self.call("fetch_trades", node.symbol, None, limit, params={id_param: from_id})
                if len(raw) < limit or len({str(t.get("id")) for t in raw}) == len(raw):
                    return raw
                extra += attempt < rounds - 1
            raise TransientExchangeError(
                f"{node}: {rounds} full pages from trade id {from_id} repeated trades (ccxt may have cut real "
                f"ones to fit limit={limit}); nothing of them was written: rerun later"
            )

        def newer(rows: list) -> int | None:
            for t in rows:
                try:
                    if int(t.get("id")) >= int(from_id) and start <= int(t.get("timestamp")) < end:
                        return int(t["timestamp"])
                except (TypeError, ValueError):
                    continue
            return None

        if end <= start:  # nothing final left to confirm: an empty answer means the live edge
            raw, requests = await ask(), 1
        else:
            raw, requests = await self.confirmed(
                node, TimeWindow(start, end), ask, lambda: self._probe(node, end), newer, held_before=True
            )
        return raw, requests + extra


def _first_ts_in(rows: list, start: int, end: int, ts_of: Callable) -> int | None:
    """The first timestamp in ``[start, end)`` among probe rows (junk rows ignored)."""
    for row in rows:
        try:
            ts = int(ts_of(row))
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        if start <= ts < end:
            return ts
    return None

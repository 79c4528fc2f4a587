"""What the project knows of each exchange's paging dialect, and the refusal of the rest.

A page proves only what it holds, and what it holds depends on the dialect: the direction of
its rows, which cursor ccxt sends, whether the exchange honours ``since`` at all. Each exchange
the project has proven exact (against an emulator of its dialect, through real ccxt) is listed
here with the way its candles and trades are paged; docs/exchanges.md is the table for humans.

Any other ccxt exchange is refused (:class:`UnprovenExchangeError`) unless the configuration
opts in with ``allow_unproven_exchange: true``: then candles are asked in bounded ranges of at
most one page of bars (safe for either row order, not for an exchange that ignores ``since``)
and trades by time, and the risk is the user's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ccxt_questdb_assets.core.errors import UnprovenExchangeError

__all__ = ["CandlePaging", "ExchangeDialect", "TradePaging", "dialect_for", "proven_exchanges"]


class CandlePaging(enum.Enum):
    FORWARD = "forward"
    """Oldest first from ``since`` up to ``limit`` rows (Binance): a full page proves up to its last bar."""
    NEWEST_FIRST = "newest_first"
    """The newest ``limit`` bars of ``[since, until]`` (OKX, Bybit): pages walk back from the window's end."""
    BOUNDED_RANGES = "bounded_ranges"
    """At most ``limit`` bars per ``[start, end]`` range (Coinbase: more is an error), newest first."""
    LATEST_ONLY = "latest_only"
    """Only the latest ``history_bars`` bars exist, whatever ``since`` says (Kraken)."""


class TradePaging(enum.Enum):
    ID_FORWARD = "id_forward"
    """By sequential trade id, oldest first (Binance ``fromId``)."""
    ID_BACKWARD = "id_backward"
    """By trade id, newest first, older than a cursor (OKX ``history-trades`` ``after``)."""
    SECONDS_BACKWARD = "seconds_backward"
    """The newest ``limit`` trades of ``[start, end]`` in whole seconds (Coinbase)."""
    CURSOR_FORWARD = "cursor_forward"
    """Oldest first after an exclusive cursor the answer returns (Kraken ``last``); rows without a
    trade id get one made of their millisecond and order."""
    TIME_FORWARD = "time_forward"
    """Oldest first from ``since`` (an unproven exchange, at the user's risk)."""
    NONE = "none"
    """No public trade history (Bybit: only the latest trades)."""


@dataclass(frozen=True, slots=True)
class ExchangeDialect:
    exchange_id: str
    candles: CandlePaging
    trades: TradePaging
    #: LATEST_ONLY: how many of the latest bars the exchange serves.
    history_bars: int | None = None
    #: Trades per page at most (ccxt's ``features`` have no trade limits): the endpoint's own cap.
    trade_page: int = 1000
    #: How far back the exchange serves trades (OKX ``history-trades``: 90 days); None: all.
    trade_history_days: int | None = None
    #: The exchange's trade ``side`` is the maker's (Coinbase): stored flipped, as the taker's.
    maker_side: bool = False
    #: Why trades (or old candles) cannot be had, and what to use instead: the error's second half.
    limits: str = ""
    proven: bool = True


_PROVEN: dict[str, ExchangeDialect] = {
    d.exchange_id: d
    for d in (
        ExchangeDialect("binance", CandlePaging.FORWARD, TradePaging.ID_FORWARD),
        ExchangeDialect("binanceus", CandlePaging.FORWARD, TradePaging.ID_FORWARD),
        ExchangeDialect("binanceusdm", CandlePaging.FORWARD, TradePaging.ID_FORWARD),
        ExchangeDialect(
            "okx",
            CandlePaging.NEWEST_FIRST,
            TradePaging.ID_BACKWARD,
            trade_page=100,
            trade_history_days=90,
            limits="okx's GET /api/v5/market/history-trades serves only the last 90 days of trades; store "
            "okx's candles (ohlcv) for older days, or keep the trades asset running so that days "
            "are stored before they age out",
        ),
        ExchangeDialect(
            "bybit",
            CandlePaging.NEWEST_FIRST,
            TradePaging.NONE,
            limits="bybit keeps no public trade history (GET /v5/market/recent-trade serves only the latest "
            "trades); use bybit's candles (ohlcv), or trades from an exchange that keeps them "
            "(binance, okx, coinbase, kraken)",
        ),
        ExchangeDialect("coinbase", CandlePaging.BOUNDED_RANGES, TradePaging.SECONDS_BACKWARD, maker_side=True),
        ExchangeDialect(
            "kraken",
            CandlePaging.LATEST_ONLY,
            TradePaging.CURSOR_FORWARD,
            history_bars=720,
            limits="kraken's OHLC serves only the latest 720 candles whatever 'since' asks; older candles "
            "can only be built from trades, which kraken keeps in full: store kraken's trades "
            "(mode 'trades'; in a project, trades: true) and use the kraken/ohlcv/trade_bars_1m "
            "asset, 1m bars built from them",
        ),
    )
}


def proven_exchanges() -> list[str]:
    return sorted(_PROVEN)


def dialect_for(exchange_id: str, *, allow_unproven: bool = False) -> ExchangeDialect:
    """The dialect of ``exchange_id``; an exchange not proven here is refused unless opted in."""
    dialect = _PROVEN.get(exchange_id)
    if dialect is not None:
        return dialect
    if allow_unproven:
        return ExchangeDialect(exchange_id, CandlePaging.BOUNDED_RANGES, TradePaging.TIME_FORWARD, proven=False)
    raise UnprovenExchangeError(
        f"exchange {exchange_id!r}: this project has not proven its paging dialect exact, and a dialect "
        f"read wrongly loses data silently (a newest-first page or an answer that ignores 'since' taken "
        f"for proof that a window is empty). Proven: {', '.join(proven_exchanges())}. To use "
        f"{exchange_id!r} anyway, set allow_unproven_exchange: true in its exchange config (candles are "
        f"then asked in ranges of one page each, trades by time; verify the stored data yourself)"
    )

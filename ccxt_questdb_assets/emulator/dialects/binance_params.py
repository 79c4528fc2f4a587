"""Binance's query parameters (spot and USD-M futures alike): how each is read, and the error
code and message Binance answers when one is missing or malformed."""

from __future__ import annotations

import re
from collections.abc import Container
from typing import TYPE_CHECKING, Any

from ccxt_questdb_assets.emulator.dialects.base import DialectError
from ccxt_questdb_assets.emulator.market import HOUR_MS

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = ["AGG_TRADES_MAX_WINDOW_MS", "BinanceError", "agg_trades_query", "kline_query"]

_MAX_LIMIT = 1000
_DEFAULT_LIMIT = 500
AGG_TRADES_MAX_WINDOW_MS = HOUR_MS
_LONG_RE = re.compile(r"^[0-9]{1,20}$")


class BinanceError(DialectError):
    """An error answered as Binance does: HTTP status + ``{"code": .., "msg": ..}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(status, {"code": code, "msg": msg})
        self.code, self.msg = code, msg


def _mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _param_long(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None:
        return None
    if raw == "":
        raise BinanceError(-1105, f"Parameter '{name}' was empty.")
    if not _LONG_RE.match(raw):
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def _param_limit(q: Any, max_limit: int) -> int:
    limit = _param_long(q, "limit")
    if limit is None:
        return _DEFAULT_LIMIT
    if not 1 <= limit <= max_limit:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def kline_query(
    state: EmulatorState, q: Any, intervals: Container[str], max_limit: int = _MAX_LIMIT
) -> tuple[str, str, int | None, int | None, int]:
    """A klines query's symbol, interval, startTime, endTime and limit, refused in Binance's order:
    symbol and interval sent, interval one of ``intervals``, symbol listed, numbers well formed."""
    if not q.get("symbol"):
        raise _mandatory("symbol")
    interval = q.get("interval")
    if not interval:
        raise _mandatory("interval")
    if interval not in intervals:
        raise BinanceError(-1120, "Invalid interval.")
    symbol = _param_symbol(state, q)
    start, end = _param_long(q, "startTime"), _param_long(q, "endTime")
    return symbol, interval, start, end, _param_limit(q, max_limit)


def agg_trades_query(
    state: EmulatorState, q: Any, max_limit: int = _MAX_LIMIT
) -> tuple[str, int | None, int | None, int | None, int]:
    """An aggTrades query's symbol, fromId, startTime, endTime and limit, read in Binance's order."""
    symbol = _param_symbol(state, q)
    from_id = _param_long(q, "fromId")
    start, end = _param_long(q, "startTime"), _param_long(q, "endTime")
    return symbol, from_id, start, end, _param_limit(q, max_limit)


def _param_symbol(state: EmulatorState, q: Any) -> str:
    symbol = q.get("symbol")
    if not symbol:
        raise _mandatory("symbol")
    if not state.market.has_symbol(symbol):
        raise BinanceError(-1121, "Invalid symbol.")
    return symbol

"""Node ids name one series: ``ohlcv:{exchange}:{symbol}:{timeframe}`` or ``trades:{exchange}:{symbol}``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.timeframes import Timeframe

Mode = Literal["ohlcv", "trades"]
OHLCV: Final = "ohlcv"
TRADES: Final = "trades"
MODES: tuple[Mode, ...] = (OHLCV, TRADES)


def parse_mode(value: object) -> Mode:
    mode = str(value).strip().lower() if isinstance(value, str) else value
    if mode not in MODES:
        raise ConfigError(f"mode {value!r} is not valid: use 'ohlcv' or 'trades'")
    return mode


_SETTLE = re.compile(r"[A-Z][A-Z0-9]*(-[0-9]{6})?")  # USDT, or BTC-240329 for a dated future


def _part(name: str, value: object, *, settle: bool = False) -> str:
    """An exchange id or (``settle``) a ccxt symbol, where one ':' may name a derivative's settle
    currency (``BTC/USDT:USDT``)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} {value!r} must be a non-empty string")
    head, colon, tail = value.partition(":")
    bad_colon = bool(colon) and not (settle and "/" in head and _SETTLE.fullmatch(tail))
    if bad_colon or any(ch.isspace() for ch in value) or any(ord(ch) < 32 for ch in value):
        allowed = " (one ':' only before a derivative's settle currency, as in 'BTC/USDT:USDT')" if settle else ""
        raise ConfigError(
            f"{name} {value!r} may not contain ':'{allowed}, spaces or control characters (node ids are ':'-separated)"
        )
    return value


@dataclass(frozen=True, slots=True)
class NodeId:
    """A parsed node id: the series of one exchange, symbol and (for candles) timeframe."""

    mode: Mode
    exchange: str
    symbol: str
    timeframe: Timeframe | None = None

    def __post_init__(self) -> None:
        _part("exchange", self.exchange)
        _part("symbol", self.symbol, settle=True)
        if self.mode == "ohlcv" and self.timeframe is None:
            raise ConfigError("an ohlcv node id needs a timeframe, e.g. 'ohlcv:binance:BTC/USDT:1m'")
        if self.mode == "trades" and self.timeframe is not None:
            raise ConfigError("a trades node id has no timeframe: 'trades:{exchange}:{symbol}'")

    @classmethod
    def parse(cls, node_id: str) -> NodeId:
        if not isinstance(node_id, str):
            raise ConfigError(f"node id {node_id!r} must be a string")
        parts = node_id.split(":")  # a swap's symbol holds one too: BTC/USDT:USDT
        if len(parts) in (4, 5) and parts[0] == "ohlcv":
            return cls("ohlcv", parts[1], ":".join(parts[2:-1]), Timeframe.parse(parts[-1]))
        if len(parts) in (3, 4) and parts[0] == "trades":
            return cls("trades", parts[1], ":".join(parts[2:]))
        raise ConfigError(
            f"node id {node_id!r} is not valid: use 'ohlcv:{{exchange}}:{{symbol}}:{{timeframe}}' "
            "or 'trades:{exchange}:{symbol}'"
        )

    def __str__(self) -> str:
        if self.mode == "ohlcv":
            return f"ohlcv:{self.exchange}:{self.symbol}:{self.timeframe}"
        return f"trades:{self.exchange}:{self.symbol}"


def make_node_id(*, exchange_id: str, symbol: str, timeframe: str | None = None, mode: str = "ohlcv") -> str:
    """The spec's helper: candles default to the ``1m`` timeframe."""
    parsed_mode = parse_mode(mode)
    tf = Timeframe.parse(timeframe or "1m") if parsed_mode == "ohlcv" else None
    if parsed_mode == "trades" and timeframe is not None:
        raise ConfigError("trades node ids have no timeframe: leave timeframe unset")
    return str(NodeId(parsed_mode, exchange_id, symbol, tf))

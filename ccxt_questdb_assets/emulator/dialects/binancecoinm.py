"""Binance COIN-M futures' public REST dialect, as far as a client loading every Binance market needs
it: ``/dapi/v1/ping | time | exchangeInfo``.

ccxt's ``binance`` loads spot, USD-M and COIN-M markets by default (``fetchMarkets.types``), so a
client that keeps that default (freqtrade does) asks ``/dapi/v1/exchangeInfo`` before anything
else and stops on a 404. The synthetic market has no coin-margined contracts (every contract it
lists is a USDⓈ-M perpetual, see :mod:`.binanceusdm`), so the answer is COIN-M's exchangeInfo with
an empty ``symbols`` list: ccxt loads no COIN-M market from it, as for an exchange that lists none.
Weights (1 each) and the 2400 per minute budget are COIN-M's; errors, faults and rate-limit answers
are worded as USD-M's (docs/exchanges/binancecoinm.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ccxt_questdb_assets.emulator.dialects.base import Route
from ccxt_questdb_assets.emulator.dialects.binanceusdm import _BinanceUsdm, futures_rate_limits

if TYPE_CHECKING:
    from ccxt_questdb_assets.emulator.state import EmulatorState

__all__ = ["BINANCECOINM", "WEIGHT_LIMIT"]

NAME = "binancecoinm"
WEIGHT_LIMIT = 2400


def _ping(state: EmulatorState, q: Any) -> Any:
    return {}


def _time(state: EmulatorState, q: Any) -> Any:
    return {"serverTime": state.clock.now_ms()}


def _exchange_info(state: EmulatorState, q: Any) -> Any:
    return {
        "timezone": "UTC",
        "serverTime": state.clock.now_ms(),
        "rateLimits": futures_rate_limits(state.budgets[NAME].limit),
        "exchangeFilters": [],
        "symbols": [],  # the synthetic market lists no coin-margined contract
    }


class _BinanceCoinm(_BinanceUsdm):
    """Binance COIN-M futures: markets only (none listed), 2400 weight per minute."""

    name = NAME
    routes = {
        "/dapi/v1/ping": Route(_ping, 1),
        "/dapi/v1/time": Route(_time, 1),
        "/dapi/v1/exchangeInfo": Route(_exchange_info, 1),
    }
    default_limit = WEIGHT_LIMIT


BINANCECOINM = _BinanceCoinm()

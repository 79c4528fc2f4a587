"""Candle answers read in bulk: the decoded JSON rows straight into one float array.

ccxt still builds, signs and sends each request and decodes its JSON; only its per-row parser
(``parse_ohlcvs``: a Python call per row and value) is replaced, for the dialects whose rows this
project knows, on the fetch path alone (inside :func:`bulk_rows`). The answer becomes an
``(n, 6)`` array of ``[ts_ms, open, high, low, close, volume]``, sorted and cut by ``since`` and
``limit`` exactly as ccxt's ``filter_by_since_limit`` does. Anything else (an inverse market, rows
that are not lists of numbers) goes to ccxt's own parser, which the tests keep as the reference.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["bulk_rows", "install_bulk_candles"]

_BULK = contextvars.ContextVar("ccxt_questdb_bulk_candles", default=False)


@dataclass(frozen=True, slots=True)
class KlineLayout:
    """Where a dialect's list rows keep the volume, and whether times are seconds."""

    volume: int = 5
    seconds: bool = False

    def matrix(self, rows: list[Any]) -> np.ndarray:
        # One pass over the six fields of each row, each converted by NumPy as it comes (no
        # intermediate list of rows): a third less time than np.array of the rows cut to six.
        fields = operator.itemgetter(0, 1, 2, 3, 4, self.volume)
        out = np.fromiter(itertools.chain.from_iterable(map(fields, rows)), np.float64, 6 * len(rows))
        out = out.reshape(len(rows), 6)
        if not np.isfinite(out).all():  # None reads as NaN
            raise ValueError("rows are not [time, open, high, low, close, ..., volume] numbers")
        if self.seconds:
            out[:, 0] *= 1000.0
        return out


SPOT_AND_LINEAR = KlineLayout()
KRAKEN = KlineLayout(volume=6, seconds=True)


def layout_for(exchange_id: str, market: Any) -> KlineLayout | None:
    """The row layout ccxt's ``parse_ohlcv`` reads for ``market`` (None: leave it to ccxt)."""
    if isinstance(market, dict) and market.get("inverse"):
        return None  # inverse markets count volume in another column
    if exchange_id in ("binance", "binanceus", "binanceusdm", "bybit"):
        return SPOT_AND_LINEAR
    if exchange_id == "okx":  # derivatives: the base-currency volume (volCcy)
        spot = not isinstance(market, dict) or market.get("type") == "spot"
        return SPOT_AND_LINEAR if spot else KlineLayout(volume=6)
    if exchange_id == "kraken":
        return KRAKEN
    return None


#: The exchanges whose candle rows are read in bulk.
BULK_EXCHANGES = ("binance", "binanceus", "binanceusdm", "bybit", "okx", "kraken")


@contextlib.contextmanager
def bulk_rows() -> Iterator[None]:
    """Inside, an exchange with :func:`install_bulk_candles` answers ``fetch_ohlcv`` with an array."""
    token = _BULK.set(True)
    try:
        yield
    finally:
        _BULK.reset(token)


def install_bulk_candles(exchange: Any) -> None:
    """Give ``exchange`` (a ccxt instance) the bulk reader of its dialect, if this project knows it."""
    exchange_id = getattr(exchange, "id", "")
    if exchange_id not in BULK_EXCHANGES:
        return
    reference = exchange.parse_ohlcvs

    def parse_ohlcvs(
        ohlcvs: Any, market: Any = None, timeframe: str = "1m", since: Any = None, limit: Any = None, tail: bool = False
    ) -> Any:
        layout = layout_for(exchange_id, market) if _BULK.get() and isinstance(ohlcvs, list) else None
        if layout is None:
            return reference(ohlcvs, market, timeframe, since, limit, tail)
        if not ohlcvs:
            return np.empty((0, 6), dtype=np.float64)
        try:
            rows = layout.matrix(ohlcvs)
        except (TypeError, ValueError, IndexError, KeyError):
            return reference(ohlcvs, market, timeframe, since, limit, tail)  # junk: ccxt says what it makes of it
        return _since_limit(rows, since, limit, tail)

    exchange.parse_ohlcvs = parse_ohlcvs


def _since_limit(rows: np.ndarray, since: int | None, limit: int | None, tail: bool) -> np.ndarray:
    """ccxt's ``sort_by(.., 0)`` then ``filter_by_since_limit``: rows from ``since`` (a zero time
    dropped), then the first ``limit`` of them when ``since`` is given, else the last."""
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    if since is not None:
        ts = rows[:, 0]
        rows = rows[(ts != 0) & (ts >= since)]
    if limit is not None and len(rows) > limit:
        rows = rows[-limit:] if tail or since is None else rows[:limit]
    return rows

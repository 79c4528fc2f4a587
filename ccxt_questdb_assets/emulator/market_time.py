"""The bar grid of the emulator's timeframes (Binance's intervals; weeks from Monday, months by
calendar) and the decimal text of integer units."""

from __future__ import annotations

import numpy as np

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
_WEEK_OFFSET_MS = 4 * DAY_MS  # 1970-01-01 was a Thursday; Binance weeks start on Monday 00:00 UTC

#: Binance kline intervals -> fixed duration in ms (``1M`` is a calendar month: None).
TIMEFRAMES: dict[str, int | None] = {
    "1s": SECOND_MS,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": WEEK_MS,
    "1M": None,
}


def format_decimal(units: int, decimals: int, width: int = 8) -> str:
    """Integer ``units`` of 10**-decimals as a Binance-style decimal string with ``width`` places."""
    units = int(units)
    sign = "-" if units < 0 else ""
    q, r = divmod(abs(units), 10**decimals)
    frac = f"{r:0{decimals}d}" if decimals else ""
    frac = (frac + "0" * width)[: max(width, decimals)]
    return f"{sign}{q}.{frac}" if frac else f"{sign}{q}"


def timeframe_ms(timeframe: str) -> int | None:
    if timeframe not in TIMEFRAMES:
        raise KeyError(timeframe)
    return TIMEFRAMES[timeframe]


def _month_floor(ts: np.ndarray) -> np.ndarray:
    return ts.astype("datetime64[ms]").astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)


def bar_open(ts: np.ndarray | int, timeframe: str) -> np.ndarray | int:
    """Open time of the bar containing ``ts`` (UTC; weeks start Monday; ``1M`` = calendar month)."""
    scalar = np.isscalar(ts)
    t = np.asarray(ts, dtype=np.int64)
    dur = TIMEFRAMES[timeframe]
    if dur is None:
        out = _month_floor(t)
    elif timeframe == "1w":
        out = t - (t - _WEEK_OFFSET_MS) % WEEK_MS
    else:
        out = t - t % dur
    return int(out) if scalar else out


def shift_bars(open_ms: int, k: int, timeframe: str) -> int:
    """Open time ``k`` bars after (negative: before) the bar opening at ``open_ms``."""
    dur = TIMEFRAMES[timeframe]
    if dur is not None:
        return open_ms + k * dur
    month = np.datetime64(int(open_ms), "ms").astype("datetime64[M]") + np.timedelta64(k, "M")
    return int(month.astype("datetime64[ms]").astype(np.int64))


def next_bar_open(open_ms: int, timeframe: str) -> int:
    return shift_bars(int(bar_open(open_ms, timeframe)), 1, timeframe)


def first_open_at_or_after(ts: int, timeframe: str) -> int:
    o = int(bar_open(ts, timeframe))
    return o if o >= ts else shift_bars(o, 1, timeframe)

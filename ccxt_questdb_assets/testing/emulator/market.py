"""Deterministic synthetic market: the emulator's data and the tests' ground truth.

Everything is a pure function of (symbol, time): no state, no random walk, no prefix sums over
history. Cost is proportional to the page asked for (vectorised numpy).

Model, per symbol (see docs/emulator.md for the numbers):

* Prices and quantities are integers in the symbol's tick / lot units, so every aggregate is exact
  and formatted decimals parse to the same floats ccxt produces.
* A reference price ``R(t) = base * exp(sum of sinusoids)`` (closed form of time).
* Each minute after listing and outside outages has ``n >= 1`` aggregate trades; each hour has
  exactly ``trades_per_hour`` of them (a per-hour permutation of a fixed pattern), so aggregate
  trade ids are ``(hour - listing_hour) * trades_per_hour + index within hour``: increasing with
  time, contiguous except across outages.
* The 1m candle (open, high, low, close, volume, count) is drawn first in closed form; the minute's
  trades are then built to aggregate to exactly that candle (first trade = open, last = close, one
  trade at the high, one at the low, quantities summing to the volume). Higher timeframes
  aggregate 1m candles (hours and days are memoised once complete). Some minutes are bursts where
  several trades share one millisecond.
* Nothing exists after "now": the bar containing now aggregates only trades with ``ts <= now``.
* Kline fields 7-10 (quote volume, taker buy volumes) are synthetic: consistent across timeframes
  but not sums over trades.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

__all__ = [
    "DAY_MS",
    "DEFAULT_SYMBOLS",
    "HOUR_MS",
    "MINUTE_MS",
    "TIMEFRAMES",
    "Bars",
    "SymbolSpec",
    "SyntheticMarket",
    "Trade",
    "TradesArr",
    "bar_open",
    "format_decimal",
    "listing_spec",
    "next_bar_open",
    "timeframe_ms",
]

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


def _utc_ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(np.datetime64(f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}", "ms").astype(np.int64))


@dataclass(frozen=True)
class SymbolSpec:
    """One synthetic spot market. Prices are in ticks of 10**-price_decimals, sizes in lots."""

    symbol: str
    base: str
    quote: str
    listing_ms: int  # hour-aligned; nothing before it
    outages: tuple[tuple[int, int], ...]  # [start, end) minute-aligned, no trades, no candles
    price_decimals: int
    qty_decimals: int
    base_price: float
    trades_per_hour: int  # multiple of 60
    mean_qty_lots: int
    seed: int
    phases: tuple[float, ...] = field(default=(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.5))

    @property
    def avg_per_minute(self) -> int:
        return self.trades_per_hour // 60

    @property
    def ccxt_symbol(self) -> str:
        return f"{self.base}/{self.quote}"


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec(
        symbol="BTCUSDT",
        base="BTC",
        quote="USDT",
        listing_ms=_utc_ms(2017, 8, 17, 4),
        outages=((_utc_ms(2020, 2, 19, 12, 0), _utc_ms(2020, 2, 19, 15, 30)),),
        price_decimals=2,
        qty_decimals=5,
        base_price=30_000.0,
        trades_per_hour=360,
        mean_qty_lots=2_000,
        seed=0x5EED_B7C,
        phases=(0.3, 1.1, 2.9, 0.7, 4.2, 5.5, 1.9),
    ),
    SymbolSpec(
        symbol="ETHUSDT",
        base="ETH",
        quote="USDT",
        listing_ms=_utc_ms(2017, 8, 17, 4),
        outages=((_utc_ms(2021, 4, 25, 5, 0), _utc_ms(2021, 4, 25, 9, 0)),),
        price_decimals=2,
        qty_decimals=4,
        base_price=2_000.0,
        trades_per_hour=240,
        mean_qty_lots=5_000,
        seed=0x5EED_E74,
        phases=(2.2, 0.4, 1.7, 3.3, 0.9, 2.6, 4.4),
    ),
    SymbolSpec(
        symbol="SOLUSDT",
        base="SOL",
        quote="USDT",
        listing_ms=_utc_ms(2020, 8, 11, 6),
        outages=((_utc_ms(2023, 3, 24, 12, 40), _utc_ms(2023, 3, 24, 14, 20)),),
        price_decimals=2,
        qty_decimals=3,
        base_price=60.0,
        trades_per_hour=180,
        mean_qty_lots=20_000,
        seed=0x5EED_501,
        phases=(4.0, 3.1, 0.2, 1.5, 2.8, 0.6, 3.7),
    ),
)


def listing_spec(base: str, quote: str, listing_ms: int, *, base_price: float = 10.0) -> SymbolSpec:
    """A plain synthetic market listed at ``listing_ms`` (floored to the hour), seeded by its name."""
    if not (base.isalnum() and quote.isalnum() and base.isupper() and quote.isupper()):
        raise ValueError(
            f"base {base!r} and quote {quote!r} must be upper-case alphanumeric assets such as 'NEW', 'USDT'"
        )
    if not base_price > 0:
        raise ValueError(f"base_price {base_price!r} must be positive")
    seed = zlib.crc32(f"{base}/{quote}".encode())
    return SymbolSpec(
        symbol=f"{base}{quote}",
        base=base,
        quote=quote,
        listing_ms=int(listing_ms) - int(listing_ms) % HOUR_MS,
        outages=(),
        price_decimals=2,
        qty_decimals=3,
        base_price=float(base_price),
        trades_per_hour=120,
        mean_qty_lots=1_000,
        seed=seed,
        phases=tuple(((seed >> (4 * i)) % 63) / 10 for i in range(7)),
    )


# (period ms, relative amplitude in log-price); phases come from the symbol
_WAVES: tuple[tuple[int, float], ...] = (
    (31_557_600_000, 0.55),  # ~1 year
    (97 * DAY_MS, 0.20),
    (29 * DAY_MS, 0.10),
    (DAY_MS, 0.025),
    (6 * HOUR_MS, 0.010),
    (HOUR_MS, 0.006),
    (13 * MINUTE_MS, 0.002),
)
_OPEN_CLOSE_NOISE = 0.0004  # relative
_EXTREME_SPREAD = 0.0012  # relative, max extra distance of high/low beyond open/close
_BURST_MINUTE_P = 0.12  # share of minutes that are same-millisecond bursts
_COPRIMES_60 = np.array([1, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 49, 53, 59], dtype=np.int64)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_K = np.uint64(0xD1B54A32D192ED03)
_LO32 = np.uint64(0xFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _h(seed: int, key: np.ndarray, salt: int) -> np.ndarray:
    """Hash of (seed, key, salt) for an int64 key array: one splitmix64 round."""
    k = np.asarray(key, dtype=np.int64).astype(np.uint64)
    off = np.uint64((seed * 0x2545F4914F6CDD1D + salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    return _mix(k * _K + off)


def _u(h: np.ndarray) -> np.ndarray:
    """uint64 hash -> float in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _u_lo(h: np.ndarray) -> np.ndarray:
    """Low 32 bits of a hash -> float in [0, 1) (a second, independent draw from one hash)."""
    return (h & _LO32).astype(np.float64) * (1.0 / 4294967296.0)


def _u_hi(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(32)).astype(np.float64) * (1.0 / 4294967296.0)


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


class Bars(NamedTuple):
    """Column arrays (int64, tick/lot units): open time, OHLC, volume, trade count, extras."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741
    c: np.ndarray
    v: np.ndarray
    n: np.ndarray
    qv: np.ndarray  # synthetic quote volume, units lot*tick
    tb: np.ndarray  # synthetic taker-buy base volume, lots

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.t.shape[0])

    def take(self, idx: np.ndarray | slice) -> Bars:
        return Bars(*(a[idx] for a in self))


def _empty_bars() -> Bars:
    z = np.zeros(0, dtype=np.int64)
    return Bars(z, z, z, z, z, z, z, z, z)


def _concat_bars(parts: Sequence[Bars]) -> Bars:
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty_bars()
    if len(parts) == 1:
        return parts[0]
    return Bars(*(np.concatenate(cols) for cols in zip(*parts, strict=True)))


def _aggregate(bars: Bars, keys: np.ndarray) -> Bars:
    """Merge consecutive rows with equal ``keys`` (sorted) into one bar opening at the key."""
    if len(bars) == 0:
        return bars
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)] - 1
    return Bars(
        keys[starts],
        bars.o[starts],
        np.maximum.reduceat(bars.h, starts),
        np.minimum.reduceat(bars.l, starts),
        bars.c[ends],
        np.add.reduceat(bars.v, starts),
        np.add.reduceat(bars.n, starts),
        np.add.reduceat(bars.qv, starts),
        np.add.reduceat(bars.tb, starts),
    )


class TradesArr(NamedTuple):
    """Aggregate trades as column arrays: id, timestamp ms, price ticks, qty lots, buyer-is-maker."""

    id: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    buyer_maker: np.ndarray

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.id.shape[0])

    def take(self, idx: np.ndarray | slice) -> TradesArr:
        return TradesArr(*(a[idx] for a in self))


def _empty_trades() -> TradesArr:
    z = np.zeros(0, dtype=np.int64)
    return TradesArr(z, z, z, z, np.zeros(0, dtype=bool))


def _concat_trades(parts: Sequence[TradesArr]) -> TradesArr:
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty_trades()
    if len(parts) == 1:
        return parts[0]
    return TradesArr(*(np.concatenate(cols) for cols in zip(*parts, strict=True)))


class Trade(NamedTuple):
    """One aggregate trade as ccxt parses it (``side`` is the taker side)."""

    id: int
    timestamp: int
    price: float
    amount: float
    side: str


class _MinuteParams(NamedTuple):
    m: np.ndarray
    n: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741
    c: np.ndarray
    v: np.ndarray
    ext_up: np.ndarray
    ih: np.ndarray
    il: np.ndarray
    tb_frac: np.ndarray


class _Sym:
    """Precomputed per-symbol constants."""

    def __init__(self, spec: SymbolSpec) -> None:
        if spec.trades_per_hour % 60 or spec.trades_per_hour < 60:
            raise ValueError(f"{spec.symbol}: trades_per_hour must be a positive multiple of 60")
        if spec.listing_ms % HOUR_MS:
            raise ValueError(f"{spec.symbol}: listing_ms must be hour-aligned")
        self.spec = spec
        avg = spec.avg_per_minute
        base = np.full(60, avg, dtype=np.int64)
        d = np.arange(30, dtype=np.int64) % avg
        base[0::2] -= d
        base[1::2] += d
        self.base_counts = base
        self.listing_min = spec.listing_ms // MINUTE_MS
        self.listing_hour = spec.listing_ms // HOUR_MS
        self.outage_min = [(s // MINUTE_MS, e // MINUTE_MS) for s, e in spec.outages]
        self.base_ticks = spec.base_price * 10**spec.price_decimals
        self.tick_div = float(10**spec.price_decimals)
        self.lot_div = float(10**spec.qty_decimals)

    # ---- structure
    def valid_minutes(self, m0: int, m1: int) -> np.ndarray:
        m0 = max(m0, self.listing_min)
        if m1 <= m0:
            return np.zeros(0, dtype=np.int64)
        m = np.arange(m0, m1, dtype=np.int64)
        for s, e in self.outage_min:
            if s < m1 and e > m0:
                m = m[(m < s) | (m >= e)]
        return m

    def skip_invalid_forward(self, m: int) -> int:
        m = max(m, self.listing_min)
        for s, e in self.outage_min:
            if s <= m < e:
                m = e
        return m

    def counts(self, m: np.ndarray) -> np.ndarray:
        """Trades in each minute (``m`` sorted): a per-hour permutation of ``base_counts``."""
        hours = m // 60
        if hours.size == 0:
            return np.zeros(0, dtype=np.int64)
        first = np.r_[True, hours[1:] != hours[:-1]]
        hh = _h(self.spec.seed, hours[first], 1)[np.cumsum(first) - 1]
        s = _COPRIMES_60[(hh % np.uint64(16)).astype(np.int64)]
        r = ((hh >> np.uint64(8)) % np.uint64(60)).astype(np.int64)
        return self.base_counts[(s * (m % 60) + r) % 60]

    def hour_counts(self, hours: np.ndarray) -> np.ndarray:
        mins = hours[:, None] * 60 + np.arange(60, dtype=np.int64)[None, :]
        return self.counts(mins.ravel()).reshape(mins.shape)

    def ref_ticks(self, t: np.ndarray) -> np.ndarray:
        x = np.zeros(t.shape, dtype=np.float64)
        for (period, amp), phase in zip(_WAVES, self.spec.phases, strict=True):
            x += amp * np.sin((2.0 * math.pi / period) * (t % period) + phase)
        return self.base_ticks * np.exp(x)

    # ---- closed-form minute candles
    def minute_params(self, m: np.ndarray) -> _MinuteParams:
        seed = self.spec.seed
        n = self.counts(m)
        r0 = self.ref_ticks(m * MINUTE_MS)
        ha, hb, hc, hd = (_h(seed, m, salt) for salt in (11, 12, 13, 14))
        o = np.maximum(1, np.rint(r0 * (1.0 + _OPEN_CLOSE_NOISE * (2.0 * _u_lo(ha) - 1.0)))).astype(np.int64)
        c = np.maximum(1, np.rint(r0 * (1.0 + _OPEN_CLOSE_NOISE * (2.0 * _u_hi(ha) - 1.0)))).astype(np.int64)
        c = np.where(n == 1, o, c)
        up = np.floor(_u_lo(hb) * r0 * _EXTREME_SPREAD).astype(np.int64)
        dn = np.floor(_u_hi(hb) * r0 * _EXTREME_SPREAD).astype(np.int64)
        ext_up = (hc & np.uint64(1)).astype(bool)
        up = np.where((n <= 2) | ((n == 3) & ~ext_up), 0, up)
        dn = np.where((n <= 2) | ((n == 3) & ext_up), 0, dn)
        hi = np.maximum(o, c) + up
        lo = np.maximum(1, np.minimum(o, c) - dn)
        mean = float(self.spec.mean_qty_lots)
        v = n + np.floor(n * mean * -np.log1p(-_u_lo(hd))).astype(np.int64)
        span2 = np.maximum(n - 2, 1).astype(np.uint64)
        span3 = np.maximum(n - 3, 1).astype(np.uint64)
        ih = 1 + ((hc >> np.uint64(8)) % span2).astype(np.int64)
        il = 1 + ((ih - 1) + 1 + ((hc >> np.uint64(24)) % span3).astype(np.int64)) % np.maximum(n - 2, 1)
        tb_frac = 0.3 + 0.4 * _u_hi(hd)
        return _MinuteParams(m, n, o, hi, lo, c, v, ext_up, ih, il, tb_frac)

    def bars_from_params(self, p: _MinuteParams) -> Bars:
        qv = p.v * ((p.o + p.h + p.l + p.c) // 4)
        tb = np.floor(p.v * p.tb_frac).astype(np.int64)
        return Bars(p.m * MINUTE_MS, p.o, p.h, p.l, p.c, p.v, p.n, qv, tb)

    # ---- trades of whole minutes
    def trades_for_minutes(self, m: np.ndarray) -> TradesArr:
        if m.size == 0:
            return _empty_trades()
        seed = self.spec.seed
        p = self.minute_params(m)
        n = p.n
        total = int(n.sum())
        starts = np.cumsum(n) - n
        ends = starts + n - 1
        j = np.arange(total, dtype=np.int64) - np.repeat(starts, n)
        hours = m // 60
        uh, inv = np.unique(hours, return_inverse=True)
        full = self.hour_counts(uh)
        pref = np.cumsum(full, axis=1) - full
        first_id = (hours - self.listing_hour) * self.spec.trades_per_hour + pref[inv, m % 60]
        first_rep = np.repeat(first_id, n)
        ids = first_rep + j
        ht = _h(seed, ids, 21)
        burst = _u(_h(seed, m, 22)) < _BURST_MINUTE_P
        p_join = np.repeat(np.where(burst, 0.8, 0.15), n)
        new = (j == 0) | (_u(ht) >= p_join)
        cs = np.cumsum(new)
        k = cs - np.repeat(cs[starts], n)
        events = np.add.reduceat(new.astype(np.int64), starts)
        u_ev = _u(_h(seed, first_rep + k, 23))
        offset = np.floor((k + u_ev) * MINUTE_MS / np.repeat(events, n)).astype(np.int64)
        ts = np.repeat(m * MINUTE_MS, n) + offset

        nr = np.repeat(n, n)
        o_r, h_r, l_r, c_r = (np.repeat(a, n) for a in (p.o, p.h, p.l, p.c))
        ih_r, il_r, ext_r = np.repeat(p.ih, n), np.repeat(p.il, n), np.repeat(p.ext_up, n)
        price = l_r + np.floor(_u(_h(seed, ids, 24)) * (h_r - l_r + 1)).astype(np.int64)
        price = np.minimum(price, h_r)
        price = np.where((nr >= 4) & (j == il_r), l_r, price)
        price = np.where((nr >= 4) & (j == ih_r), h_r, price)
        price = np.where((nr == 3) & (j == 1), np.where(ext_r, h_r, l_r), price)
        price = np.where(j == 0, o_r, price)
        price = np.where(j == nr - 1, c_r, price)

        w = 1 + (_h(seed, ids, 25) % np.uint64(1000)).astype(np.int64)
        wsum = np.add.reduceat(w, starts)
        extra = p.v - n
        qty = 1 + (np.repeat(extra, n) * w) // np.repeat(wsum, n)
        rem = p.v - np.add.reduceat(qty, starts)
        qty[ends] += rem
        buyer_maker = ((ht >> np.uint64(40)) & np.uint64(1)).astype(bool)
        return TradesArr(ids, ts, price, qty, buyer_maker)

    def id_to_minute(self, trade_id: int) -> int:
        if trade_id < 0:
            return self.listing_min
        per_hour = self.spec.trades_per_hour
        hour = self.listing_hour + trade_id // per_hour
        within = trade_id % per_hour
        cum = np.cumsum(self.hour_counts(np.array([hour], dtype=np.int64))[0])
        mi = int(np.searchsorted(cum, within, side="right"))
        return hour * 60 + mi


def _trades_to_bar(tr: TradesArr, minute: int, tb_frac: float) -> Bars:
    o, c = tr.price[:1], tr.price[-1:]
    hi, lo = tr.price.max(keepdims=True), tr.price.min(keepdims=True)
    v = tr.qty.sum(keepdims=True)
    qv = v * ((o + hi + lo + c) // 4)
    tb = np.floor(v * tb_frac).astype(np.int64)
    return Bars(
        np.array([minute * MINUTE_MS], dtype=np.int64), o, hi, lo, c, v, np.array([len(tr)], dtype=np.int64), qv, tb
    )


class SyntheticMarket:
    """Ground truth for the emulator. All ``now_ms=None`` arguments mean "no cut at now".

    Time ranges of the public methods are half-open ``[start_ms, end_ms)``.
    """

    _DAY_BATCH = 32

    def __init__(self, specs: Iterable[SymbolSpec] = DEFAULT_SYMBOLS, *, cache_days: int = 12_000) -> None:
        self._syms = {s.symbol: _Sym(s) for s in specs}
        self._by_ccxt = {s.ccxt_symbol: s.symbol for s in specs}
        self._cache: OrderedDict[tuple[str, int], tuple[Bars, Bars]] = OrderedDict()
        self._cache_days = cache_days
        self._lock = threading.Lock()

    # ---- metadata
    @property
    def symbols(self) -> list[str]:
        """Exchange ids, e.g. ``BTCUSDT``."""
        return list(self._syms)

    def spec(self, symbol: str) -> SymbolSpec:
        return self._sym(symbol).spec

    def _sym(self, symbol: str) -> _Sym:
        sid = self._by_ccxt.get(symbol, symbol)
        try:
            return self._syms[sid]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}; known: {', '.join(self._syms)}") from None

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._syms

    def add_symbol(self, spec: SymbolSpec) -> None:
        """List a new market (the emulator's ``POST /_emulator/market``); ValueError if already listed."""
        sym = _Sym(spec)  # validates
        with self._lock:
            if spec.symbol in self._syms or spec.ccxt_symbol in self._by_ccxt:
                raise ValueError(f"symbol {spec.symbol} ({spec.ccxt_symbol}) is already listed")
            self._syms = {**self._syms, spec.symbol: sym}
            self._by_ccxt = {**self._by_ccxt, spec.ccxt_symbol: spec.symbol}

    def remove_symbol(self, symbol: str) -> SymbolSpec:
        """Delist ``symbol`` (exchange id or ccxt symbol) and drop its cached days."""
        sym = self._sym(symbol)
        with self._lock:
            self._syms = {k: v for k, v in self._syms.items() if k != sym.spec.symbol}
            self._by_ccxt = {k: v for k, v in self._by_ccxt.items() if v != sym.spec.symbol}
            for key in [k for k in self._cache if k[0] == sym.spec.symbol]:
                del self._cache[key]
        return sym.spec

    def listing_ms(self, symbol: str) -> int:
        return self._sym(symbol).spec.listing_ms

    def outages(self, symbol: str) -> list[tuple[int, int]]:
        return list(self._sym(symbol).spec.outages)

    # ---- bars
    def _minute_bars(self, sym: _Sym, m0: int, m1: int, now_ms: int | None) -> Bars:
        """1m bars for minutes [m0, m1), the minute containing now partial."""
        now_min = None if now_ms is None else now_ms // MINUTE_MS
        m1c = m1 if now_min is None else min(m1, now_min)
        mins = sym.valid_minutes(m0, m1c)
        full = sym.bars_from_params(sym.minute_params(mins)) if mins.size else _empty_bars()
        if now_min is None or not (m0 <= now_min < m1):
            return full
        cur = sym.valid_minutes(now_min, now_min + 1)
        if cur.size == 0:
            return full
        tr = sym.trades_for_minutes(cur)
        tr = tr.take(tr.ts <= now_ms)
        if len(tr) == 0:
            return full
        tb_frac = float(sym.minute_params(cur).tb_frac[0])
        return _concat_bars([full, _trades_to_bar(tr, now_min, tb_frac)])

    def _day_complete(self, day: int, now_ms: int | None) -> bool:
        return now_ms is None or (day + 1) * DAY_MS - 1 <= now_ms

    def _day_entries(self, sym: _Sym, d0: int, d1: int, now_ms: int | None) -> list[tuple[Bars, Bars]]:
        """(hour bars, day bar) for days [d0, d1); complete days memoised."""
        listing_day = sym.spec.listing_ms // DAY_MS
        now_day = None if now_ms is None else now_ms // DAY_MS
        lo = max(d0, listing_day)
        hi = d1 if now_day is None else min(d1, now_day + 1)
        out: list[tuple[Bars, Bars]] = []
        missing: list[int] = []
        key = sym.spec.symbol
        with self._lock:
            for d in range(lo, hi):
                if self._day_complete(d, now_ms) and (key, d) not in self._cache:
                    missing.append(d)
        i = 0
        while i < len(missing):  # batch consecutive missing days
            j = i
            while j + 1 < len(missing) and missing[j + 1] == missing[j] + 1 and j - i + 1 < self._DAY_BATCH:
                j += 1
            a, b = missing[i], missing[j] + 1
            mb = self._minute_bars(sym, a * 1440, b * 1440, None)
            hours = _aggregate(mb, mb.t - mb.t % HOUR_MS)
            dkey = hours.t // DAY_MS
            with self._lock:
                for d in range(a, b):
                    sel = np.flatnonzero(dkey == d)
                    hb = hours.take(slice(sel[0], sel[-1] + 1)) if sel.size else _empty_bars()
                    db = _aggregate(hb, hb.t - hb.t % DAY_MS)
                    self._cache[(key, d)] = (hb, db)
                while len(self._cache) > self._cache_days:
                    self._cache.popitem(last=False)
            i = j + 1
        for d in range(lo, hi):
            complete = self._day_complete(d, now_ms)
            entry = None
            if complete:
                with self._lock:
                    entry = self._cache.get((key, d))
            if entry is None:  # the day containing now, or evicted meanwhile
                mb = self._minute_bars(sym, d * 1440, (d + 1) * 1440, None if complete else now_ms)
                hb = _aggregate(mb, mb.t - mb.t % HOUR_MS)
                entry = (hb, _aggregate(hb, hb.t - hb.t % DAY_MS))
            out.append(entry)
        return out

    def _base_bars(self, sym: _Sym, level: str, a: int, b: int, now_ms: int | None) -> Bars:
        """Bars of ``level`` ('1s', '1m', '1h' or '1d') with open time in [a, b) (aligned)."""
        if level == "1s":
            tr = self._trades(sym, a, b, now_ms)
            if len(tr) == 0:
                return _empty_bars()
            one = Bars(
                tr.ts,
                tr.price,
                tr.price,
                tr.price,
                tr.price,
                tr.qty,
                np.ones(len(tr), dtype=np.int64),
                tr.qty * tr.price,
                np.where(tr.buyer_maker, 0, tr.qty),
            )
            return _aggregate(one, tr.ts - tr.ts % SECOND_MS)
        if level == "1m":
            return self._minute_bars(sym, a // MINUTE_MS, -(-b // MINUTE_MS), now_ms)
        entries = self._day_entries(sym, a // DAY_MS, -(-b // DAY_MS), now_ms)
        idx = 0 if level == "1h" else 1
        bars = _concat_bars([e[idx] for e in entries])
        if len(bars) and (bars.t[0] < a or bars.t[-1] >= b):
            bars = bars.take((bars.t >= a) & (bars.t < b))
        return bars

    def bars(self, symbol: str, timeframe: str, start_ms: int, end_ms: int, now_ms: int | None = None) -> Bars:
        """Bars whose open time is in ``[start_ms, end_ms)``; empty bars are omitted."""
        sym = self._sym(symbol)
        if timeframe not in TIMEFRAMES:
            raise KeyError(f"unknown timeframe {timeframe!r}; valid: {', '.join(TIMEFRAMES)}")
        lo = max(first_open_at_or_after(start_ms, timeframe), int(bar_open(sym.spec.listing_ms, timeframe)))
        upper = end_ms if now_ms is None else min(end_ms, now_ms + 1)
        if upper <= lo:
            return _empty_bars()
        hi = first_open_at_or_after(upper, timeframe)
        dur = TIMEFRAMES[timeframe]
        if timeframe == "1s":
            level = "1s"
        elif dur is not None and dur < HOUR_MS:
            level = "1m"
        elif dur is not None and dur < DAY_MS:
            level = "1h"
        else:
            level = "1d"
        base = self._base_bars(sym, level, lo, hi, now_ms)
        if timeframe == level:
            return base
        return _aggregate(base, bar_open(base.t, timeframe))

    def candles(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int, now_ms: int | None = None
    ) -> list[list[float]]:
        """``[[open_ms, open, high, low, close, volume], ...]`` exactly as ccxt's fetch_ohlcv parses them."""
        return self.bars_to_ohlcv(symbol, self.bars(symbol, timeframe, start_ms, end_ms, now_ms))

    def bars_to_ohlcv(self, symbol: str, bars: Bars) -> list[list[float]]:
        sym = self._sym(symbol)
        cols = [bars.t.tolist()] + [(a / sym.tick_div).tolist() for a in (bars.o, bars.h, bars.l, bars.c)]
        cols.append((bars.v / sym.lot_div).tolist())
        return [list(r) for r in zip(*cols, strict=True)]

    # ---- trades
    def _trades(self, sym: _Sym, start_ms: int, end_ms: int, now_ms: int | None) -> TradesArr:
        if now_ms is not None:
            end_ms = min(end_ms, now_ms + 1)
        if end_ms <= start_ms:
            return _empty_trades()
        mins = sym.valid_minutes(start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS))
        tr = sym.trades_for_minutes(mins)
        if len(tr) and (tr.ts[0] < start_ms or tr.ts[-1] >= end_ms):
            tr = tr.take((tr.ts >= start_ms) & (tr.ts < end_ms))
        return tr

    def trades_array(self, symbol: str, start_ms: int, end_ms: int, now_ms: int | None = None) -> TradesArr:
        """Aggregate trades with timestamp in ``[start_ms, end_ms)`` (and ``<= now_ms``)."""
        return self._trades(self._sym(symbol), start_ms, end_ms, now_ms)

    def trades(self, symbol: str, start_ms: int, end_ms: int, now_ms: int | None = None) -> list[Trade]:
        """Like :meth:`trades_array` but as :class:`Trade` tuples with ccxt-parsed floats."""
        return self.to_trades(symbol, self.trades_array(symbol, start_ms, end_ms, now_ms))

    def to_trades(self, symbol: str, tr: TradesArr) -> list[Trade]:
        sym = self._sym(symbol)
        prices = (tr.price / sym.tick_div).tolist()
        amounts = (tr.qty / sym.lot_div).tolist()
        sides = np.where(tr.buyer_maker, "sell", "buy").tolist()
        return [Trade(*r) for r in zip(tr.id.tolist(), tr.ts.tolist(), prices, amounts, sides, strict=True)]

    def _scan_forward(
        self,
        sym: _Sym,
        m: int,
        limit: int,
        now_ms: int | None,
        *,
        min_id: int | None = None,
        t_lo: int | None = None,
        t_hi: int | None = None,
    ) -> TradesArr:
        stop = math.inf
        if now_ms is not None:
            stop = now_ms // MINUTE_MS + 1
        if t_hi is not None:
            stop = min(stop, t_hi // MINUTE_MS + 1)
        parts: list[TradesArr] = []
        got = 0
        while got < limit:
            m = sym.skip_invalid_forward(m)
            if m >= stop:
                break
            chunk = -(-(limit - got) // sym.spec.avg_per_minute) + 2
            m1 = int(min(stop, m + chunk))
            tr = sym.trades_for_minutes(sym.valid_minutes(m, m1))
            mask = np.ones(len(tr), dtype=bool)
            if min_id is not None:
                mask &= tr.id >= min_id
            if t_lo is not None:
                mask &= tr.ts >= t_lo
            if t_hi is not None:
                mask &= tr.ts <= t_hi
            if now_ms is not None:
                mask &= tr.ts <= now_ms
            tr = tr.take(mask)
            parts.append(tr)
            got += len(tr)
            m = m1
        return _concat_trades(parts).take(slice(0, limit))

    def _scan_backward(self, sym: _Sym, t_hi: int, limit: int) -> TradesArr:
        """The last ``limit`` trades with ``ts <= t_hi``."""
        m1 = t_hi // MINUTE_MS + 1
        parts: list[TradesArr] = []
        got = 0
        while got < limit and m1 > sym.listing_min:
            chunk = -(-(limit - got) // sym.spec.avg_per_minute) + 2
            m0 = max(sym.listing_min, m1 - chunk)
            for s, e in sym.outage_min:  # jump over an outage in one step
                if s < m1 <= e:
                    m0 = max(sym.listing_min, min(m0, s - chunk))
            tr = sym.trades_for_minutes(sym.valid_minutes(m0, m1))
            tr = tr.take(tr.ts <= t_hi)
            parts.insert(0, tr)
            got += len(tr)
            m1 = m0
        out = _concat_trades(parts)
        return out.take(slice(max(0, len(out) - limit), None))

    def select_agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int | None,
    ) -> TradesArr:
        """Binance ``aggTrades`` selection (params already validated; endTime inclusive)."""
        sym = self._sym(symbol)
        if from_id is not None:
            return self._scan_forward(sym, sym.id_to_minute(from_id), limit, now_ms, min_id=from_id)
        if start_ms is not None:
            if end_ms is not None and end_ms < start_ms:
                return _empty_trades()
            return self._scan_forward(sym, start_ms // MINUTE_MS, limit, now_ms, t_lo=start_ms, t_hi=end_ms)
        hi = end_ms if end_ms is not None else (now_ms if now_ms is not None else None)
        if now_ms is not None and hi is not None:
            hi = min(hi, now_ms)
        if hi is None:
            raise ValueError("select_agg_trades needs now_ms or a time bound")
        return self._scan_backward(sym, hi, limit)

    def trades_from_id(self, symbol: str, from_id: int, limit: int, now_ms: int | None = None) -> list[Trade]:
        """Up to ``limit`` trades with id >= ``from_id``, as ccxt parses them."""
        return self.to_trades(
            symbol,
            self.select_agg_trades(symbol, from_id=from_id, start_ms=None, end_ms=None, limit=limit, now_ms=now_ms),
        )

    def select_bars(
        self, symbol: str, timeframe: str, *, start_ms: int | None, end_ms: int | None, limit: int, now_ms: int | None
    ) -> Bars:
        """Binance ``klines`` selection: open time >= startTime, <= endTime (inclusive), ascending."""
        sym = self._sym(symbol)
        upper = end_ms
        if now_ms is not None:
            upper = now_ms if upper is None else min(upper, now_ms)
        if upper is None:
            raise ValueError("select_bars needs now_ms or endTime")
        listing_open = int(bar_open(sym.spec.listing_ms, timeframe))
        parts: list[Bars] = []
        got = 0
        sparse = 20 if timeframe == "1s" else 1  # most seconds have no trade, so no 1s bar
        if start_ms is not None:
            lo = max(first_open_at_or_after(start_ms, timeframe), listing_open)
            while got < limit and lo <= upper:
                hi = shift_bars(lo, (limit - got) * sparse, timeframe)
                b = self.bars(symbol, timeframe, lo, min(hi, upper + 1), now_ms)
                parts.append(b)
                got += len(b)
                lo = hi
                lo = max(lo, self._skip_outage_bar(sym, lo, timeframe))
            return _concat_bars(parts).take(slice(0, limit))
        hi = shift_bars(int(bar_open(upper, timeframe)), 1, timeframe)
        while got < limit and hi > listing_open:
            lo = shift_bars(hi, -(limit - got) * sparse, timeframe)
            b = self.bars(symbol, timeframe, lo, min(hi, upper + 1), now_ms)
            parts.insert(0, b)
            got += len(b)
            hi = lo
        out = _concat_bars(parts)
        return out.take(slice(max(0, len(out) - limit), None))

    @staticmethod
    def _skip_outage_bar(sym: _Sym, lo: int, timeframe: str) -> int:
        for s, e in sym.spec.outages:
            if s <= lo < e:
                return first_open_at_or_after(e, timeframe)
        return lo

    # ---- formatting (Binance wire format)
    def price_str(self, symbol: str, ticks: int) -> str:
        return format_decimal(ticks, self._sym(symbol).spec.price_decimals)

    def qty_str(self, symbol: str, lots: int) -> str:
        return format_decimal(lots, self._sym(symbol).spec.qty_decimals)

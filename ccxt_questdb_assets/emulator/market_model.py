"""The closed-form model of the synthetic market (the emulator's data, the tests' ground truth).

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
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ccxt_questdb_assets.emulator.market_rows import Bars, TradesArr, empty_trades
from ccxt_questdb_assets.emulator.market_time import DAY_MS, HOUR_MS, MINUTE_MS


def _utc_ms(iso: str) -> int:
    return int(np.datetime64(iso, "ms").astype(np.int64))


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


#: The default markets (quoted in USDT, prices with 2 decimals): when each lists and its one
#: outage [start, end), in UTC.
_DEFAULT_LISTINGS: dict[str, tuple[str, tuple[str, str]]] = {
    "BTC": ("2017-08-17T04:00", ("2020-02-19T12:00", "2020-02-19T15:30")),
    "ETH": ("2017-08-17T04:00", ("2021-04-25T05:00", "2021-04-25T09:00")),
    "SOL": ("2020-08-11T06:00", ("2023-03-24T12:40", "2023-03-24T14:20")),
}
#: Their model: qty decimals, base price, trades per hour, mean qty in lots, seed, wave phases.
_DEFAULT_MODELS: dict[str, tuple[int, float, int, int, int, tuple[float, ...]]] = {
    "BTC": (5, 30_000.0, 360, 2_000, 0x5EED_B7C, (0.3, 1.1, 2.9, 0.7, 4.2, 5.5, 1.9)),
    "ETH": (4, 2_000.0, 240, 5_000, 0x5EED_E74, (2.2, 0.4, 1.7, 3.3, 0.9, 2.6, 4.4)),
    "SOL": (3, 60.0, 180, 20_000, 0x5EED_501, (4.0, 3.1, 0.2, 1.5, 2.8, 0.6, 3.7)),
}


def _default_spec(base: str) -> SymbolSpec:
    listed, (outage_start, outage_end) = _DEFAULT_LISTINGS[base]
    qty_decimals, base_price, trades_per_hour, mean_qty_lots, seed, phases = _DEFAULT_MODELS[base]
    return SymbolSpec(
        symbol=f"{base}USDT",
        base=base,
        quote="USDT",
        listing_ms=_utc_ms(listed),
        outages=((_utc_ms(outage_start), _utc_ms(outage_end)),),
        price_decimals=2,
        qty_decimals=qty_decimals,
        base_price=base_price,
        trades_per_hour=trades_per_hour,
        mean_qty_lots=mean_qty_lots,
        seed=seed,
        phases=phases,
    )


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = tuple(_default_spec(base) for base in _DEFAULT_LISTINGS)


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


class Sym:
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
            return empty_trades()
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


def trades_to_bar(tr: TradesArr, minute: int, tb_frac: float) -> Bars:
    o, c = tr.price[:1], tr.price[-1:]
    hi, lo = tr.price.max(keepdims=True), tr.price.min(keepdims=True)
    v = tr.qty.sum(keepdims=True)
    qv = v * ((o + hi + lo + c) // 4)
    tb = np.floor(v * tb_frac).astype(np.int64)
    return Bars(
        np.array([minute * MINUTE_MS], dtype=np.int64), o, hi, lo, c, v, np.array([len(tr)], dtype=np.int64), qv, tb
    )

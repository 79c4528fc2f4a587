"""Minute bars of the synthetic market, and its hour and day bars of whole days, memoised once a
day is complete (a complete day never changes; the day containing now is computed each time)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ccxt_questdb_assets.emulator.market_model import Sym, trades_to_bar
from ccxt_questdb_assets.emulator.market_rows import Bars, aggregate, concat_bars, empty_bars
from ccxt_questdb_assets.emulator.market_time import DAY_MS, HOUR_MS, MINUTE_MS

__all__ = ["DayBars", "minute_bars"]

#: Consecutive missing days computed in one go.
_DAY_BATCH = 32


def minute_bars(sym: Sym, m0: int, m1: int, now_ms: int | None) -> Bars:
    """1m bars for minutes [m0, m1), the minute containing now partial."""
    now_min = None if now_ms is None else now_ms // MINUTE_MS
    m1c = m1 if now_min is None else min(m1, now_min)
    mins = sym.valid_minutes(m0, m1c)
    full = sym.bars_from_params(sym.minute_params(mins)) if mins.size else empty_bars()
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
    return concat_bars([full, trades_to_bar(tr, now_min, tb_frac)])


def _hours_and_day(minutes: Bars) -> tuple[Bars, Bars]:
    hours = aggregate(minutes, minutes.t - minutes.t % HOUR_MS)
    return hours, aggregate(hours, hours.t - hours.t % DAY_MS)


def _day_complete(day: int, now_ms: int | None) -> bool:
    return now_ms is None or (day + 1) * DAY_MS - 1 <= now_ms


class DayBars:
    """(hour bars, day bar) of each day of a symbol, complete days kept for up to ``capacity``
    (symbol, day) entries, the least recently stored dropped first. Safe across threads."""

    def __init__(self, capacity: int) -> None:
        self._cache: OrderedDict[tuple[str, int], tuple[Bars, Bars]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def entries(self, sym: Sym, d0: int, d1: int, now_ms: int | None) -> list[tuple[Bars, Bars]]:
        """(hour bars, day bar) for days [d0, d1) from the listing day up to the day containing now."""
        listing_day = sym.spec.listing_ms // DAY_MS
        now_day = None if now_ms is None else now_ms // DAY_MS
        lo = max(d0, listing_day)
        hi = d1 if now_day is None else min(d1, now_day + 1)
        key = sym.spec.symbol
        with self._lock:
            missing = [d for d in range(lo, hi) if _day_complete(d, now_ms) and (key, d) not in self._cache]
        self._store(sym, missing)
        out: list[tuple[Bars, Bars]] = []
        for d in range(lo, hi):
            complete = _day_complete(d, now_ms)
            entry = None
            if complete:
                with self._lock:
                    entry = self._cache.get((key, d))
            if entry is None:  # the day containing now, or evicted meanwhile
                entry = _hours_and_day(minute_bars(sym, d * 1440, (d + 1) * 1440, None if complete else now_ms))
            out.append(entry)
        return out

    def forget(self, symbol: str) -> None:
        """Drop the stored days of ``symbol`` (exchange id), e.g. when it is delisted."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == symbol]:
                del self._cache[key]

    def _store(self, sym: Sym, missing: list[int]) -> None:
        """Compute and store the complete days ``missing`` (ascending), consecutive ones in batches."""
        key = sym.spec.symbol
        i = 0
        while i < len(missing):
            j = i
            while j + 1 < len(missing) and missing[j + 1] == missing[j] + 1 and j - i + 1 < _DAY_BATCH:
                j += 1
            a, b = missing[i], missing[j] + 1
            mb = minute_bars(sym, a * 1440, b * 1440, None)
            hours = aggregate(mb, mb.t - mb.t % HOUR_MS)
            dkey = hours.t // DAY_MS
            with self._lock:
                for d in range(a, b):
                    sel = np.flatnonzero(dkey == d)
                    hb = hours.take(slice(sel[0], sel[-1] + 1)) if sel.size else empty_bars()
                    self._cache[(key, d)] = (hb, aggregate(hb, hb.t - hb.t % DAY_MS))
                while len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
            i = j + 1

"""Aggregate trades of the synthetic market: by time range, and scans of ``limit`` trades forward
(from an id or a time) or backward (up to a time), at a cost proportional to the page asked for."""

from __future__ import annotations

import math

import numpy as np

from ccxt_questdb_assets.emulator.market_model import Sym
from ccxt_questdb_assets.emulator.market_rows import TradesArr, concat_trades, empty_trades
from ccxt_questdb_assets.emulator.market_time import MINUTE_MS

__all__ = ["scan_backward", "scan_forward", "trades_between"]


def trades_between(sym: Sym, start_ms: int, end_ms: int, now_ms: int | None) -> TradesArr:
    """Trades with timestamp in ``[start_ms, end_ms)`` (and ``<= now_ms``)."""
    if now_ms is not None:
        end_ms = min(end_ms, now_ms + 1)
    if end_ms <= start_ms:
        return empty_trades()
    mins = sym.valid_minutes(start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS))
    tr = sym.trades_for_minutes(mins)
    if len(tr) and (tr.ts[0] < start_ms or tr.ts[-1] >= end_ms):
        tr = tr.take((tr.ts >= start_ms) & (tr.ts < end_ms))
    return tr


def _minutes_for(sym: Sym, limit: int, got: int) -> int:
    """Minutes likely to hold the ``limit - got`` trades still wanted, with a margin."""
    return -(-(limit - got) // sym.spec.avg_per_minute) + 2


def scan_forward(
    sym: Sym,
    m: int,
    limit: int,
    now_ms: int | None,
    *,
    min_id: int | None = None,
    t_lo: int | None = None,
    t_hi: int | None = None,
) -> TradesArr:
    """The first ``limit`` trades from minute ``m`` on with ``id >= min_id``, ``t_lo <= ts <= t_hi``
    and ``ts <= now_ms`` (each bound where given)."""
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
        m1 = int(min(stop, m + _minutes_for(sym, limit, got)))
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
    return concat_trades(parts).take(slice(0, limit))


def scan_backward(sym: Sym, t_hi: int, limit: int) -> TradesArr:
    """The last ``limit`` trades with ``ts <= t_hi``."""
    m1 = t_hi // MINUTE_MS + 1
    parts: list[TradesArr] = []
    got = 0
    while got < limit and m1 > sym.listing_min:
        chunk = _minutes_for(sym, limit, got)
        m0 = max(sym.listing_min, m1 - chunk)
        for s, e in sym.outage_min:  # jump over an outage in one step
            if s < m1 <= e:
                m0 = max(sym.listing_min, min(m0, s - chunk))
        tr = sym.trades_for_minutes(sym.valid_minutes(m0, m1))
        tr = tr.take(tr.ts <= t_hi)
        parts.insert(0, tr)
        got += len(tr)
        m1 = m0
    out = concat_trades(parts)
    return out.take(slice(max(0, len(out) - limit), None))

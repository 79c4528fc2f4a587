"""Columns of bars and of aggregate trades (numpy arrays of integer units), and how they join and
aggregate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import numpy as np


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


def empty_bars() -> Bars:
    z = np.zeros(0, dtype=np.int64)
    return Bars(z, z, z, z, z, z, z, z, z)


def concat_bars(parts: Sequence[Bars]) -> Bars:
    return _concat(parts, empty_bars)


def aggregate(bars: Bars, keys: np.ndarray) -> Bars:
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


def empty_trades() -> TradesArr:
    z = np.zeros(0, dtype=np.int64)
    return TradesArr(z, z, z, z, np.zeros(0, dtype=bool))


def concat_trades(parts: Sequence[TradesArr]) -> TradesArr:
    return _concat(parts, empty_trades)


Columns = TypeVar("Columns", Bars, TradesArr)


def _concat(parts: Sequence[Columns], empty: Callable[[], Columns]) -> Columns:
    """``parts`` end to end, column by column (the empty ones left out)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    return type(parts[0])(*(np.concatenate(cols) for cols in zip(*parts, strict=True)))


class Trade(NamedTuple):
    """One aggregate trade as ccxt parses it (``side`` is the taker side)."""

    id: int
    timestamp: int
    price: float
    amount: float
    side: str

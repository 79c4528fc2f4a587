"""Kline rows already written as JSON, answered again without writing them anew.

The bars of a closed span are the same whenever they are asked (the market is a function of its
symbol's spec), so the emulator keeps their JSON rows, by bucket of 1,440 bars (a UTC day of 1m),
and builds any page inside closed buckets from them, whatever its start and length. On a 2-core
machine the ~1.5 ms of formatting a 1,000-bar page would otherwise be CPU that the client under
test competes with, which a real exchange spends on its own machines. Rows of a bucket whose last
bar is still open are never kept.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from ccxt_questdb_assets.emulator.bounded_cache import BoundedCache
from ccxt_questdb_assets.emulator.market import TIMEFRAMES, Bars, SymbolSpec

__all__ = ["BUCKET_BARS", "PAGE_CACHE_BYTES", "RenderedRows"]

#: Bars per kept bucket: at most two buckets make a page of up to 1,000 bars.
BUCKET_BARS = 1440
#: What the kept rows may weigh (a year of 1m klines is about 130 MiB).
PAGE_CACHE_BYTES = 256 * 2**20
_STR_OVERHEAD = 57  # a short str object's header, plus its list slot


@dataclass(frozen=True, slots=True)
class _Bucket:
    ts: np.ndarray  # the bars' open times, ascending
    rows: list[str]  # each bar's JSON row
    size: int


class RenderedRows:
    """The JSON rows of closed buckets of bars, least recently used out past ``max_bytes``."""

    def __init__(self, max_bytes: int = PAGE_CACHE_BYTES) -> None:
        self._buckets: BoundedCache[_Bucket] = BoundedCache(max_bytes, size_of=lambda b: b.size)

    def __len__(self) -> int:
        """Buckets kept."""
        return len(self._buckets)

    def page(
        self,
        spec: SymbolSpec,
        timeframe: str,
        bars: Bars,
        now_ms: int | None,
        form: Hashable,
        render: Callable[[Bars], list[str]],
        bars_between: Callable[[int, int], Bars],
    ) -> list[str]:
        """The rows of ``bars`` (a page of ``timeframe`` bars of ``spec``'s market, as ``render``
        writes them in ``form``): from kept buckets where every bar of theirs had closed by
        ``now_ms``, else written for this page alone. ``bars_between(lo, hi)`` gives a bucket's bars."""
        duration = TIMEFRAMES.get(timeframe)
        if now_ms is None or duration is None or len(bars) == 0:
            return render(bars)
        span = duration * BUCKET_BARS
        first, last = int(bars.t[0]), int(bars.t[-1])
        if (last // span + 1) * span + duration > now_ms:
            return render(bars)  # the last bucket's last bar may still be open (bars need not be aligned to buckets)
        rows: list[str] = []
        for bucket_no in range(first // span, last // span + 1):
            key = (spec, timeframe, form, bucket_no)
            bucket = self._buckets.get(key)
            if bucket is None:
                whole = bars_between(bucket_no * span, (bucket_no + 1) * span)
                written = render(whole)
                bucket = _Bucket(whole.t, written, sum(map(len, written)) + _STR_OVERHEAD * len(written))
                self._buckets.put(key, bucket)
            lo = int(np.searchsorted(bucket.ts, first, side="left"))
            hi = int(np.searchsorted(bucket.ts, last, side="right"))
            rows.extend(bucket.rows[lo:hi])
        return rows if len(rows) == len(bars) else render(bars)

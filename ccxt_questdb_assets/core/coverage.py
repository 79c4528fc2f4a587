"""Coverage: which parts of a series we know the exchange's complete answer for.

A span is covered when every row the exchange has for it is stored and visible, including
the case where the exchange has none (an outage, before listing, a quiet second of trades):
such a span is *empty* and is remembered so it is not fetched again. Spans are half-open
``[start_ms, end_ms)``; spans that overlap or touch merge.

An empty span that was recent when checked may have been answered before the exchange
published its data, so it counts as covered only until ``EmptyRecheckPolicy.recheck_after_ms``
has passed; then it is a gap again and is fetched once more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ccxt_questdb_assets.core.windows import TimeWindow

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class CoverageSpan:
    """One recorded claim: ``[start_ms, end_ms)`` is complete as of ``checked_at_ms``."""

    start_ms: int
    end_ms: int
    empty: bool = False
    checked_at_ms: int = 0

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(self.start_ms, self.end_ms)


@dataclass(frozen=True, slots=True)
class EmptyRecheckPolicy:
    """When a remembered empty span is trusted.

    An empty span ending within ``recent_ms`` of its check time is provisional and is fetched
    again once ``recheck_after_ms`` has passed since the check; older empty spans are final.
    """

    recent_ms: int = 6 * 3_600_000
    recheck_after_ms: int = 15 * 60_000

    def trusted(self, span: CoverageSpan, now_ms: int) -> bool:
        if not span.empty or span.end_ms <= span.checked_at_ms - self.recent_ms:
            return True
        return now_ms < span.checked_at_ms + self.recheck_after_ms


def merge(windows: Iterable[TimeWindow]) -> list[TimeWindow]:
    """Sort and merge overlapping or touching windows; empty windows vanish."""
    merged: list[TimeWindow] = []
    for window in sorted(w for w in windows if not w.empty):
        if merged and window.start_ms <= merged[-1].end_ms:
            last = merged[-1]
            if window.end_ms > last.end_ms:
                merged[-1] = TimeWindow(last.start_ms, window.end_ms)
        else:
            merged.append(window)
    return merged


def gaps(request: TimeWindow, covered: Sequence[TimeWindow]) -> list[TimeWindow]:
    """The parts of ``request`` not in ``covered`` (which must be merged and sorted)."""
    result: list[TimeWindow] = []
    cursor = request.start_ms
    for window in covered:
        if window.end_ms <= cursor:
            continue
        if window.start_ms >= request.end_ms:
            break
        if window.start_ms > cursor:
            result.append(TimeWindow(cursor, window.start_ms))
        cursor = max(cursor, window.end_ms)
        if cursor >= request.end_ms:
            break
    if cursor < request.end_ms:
        result.append(TimeWindow(cursor, request.end_ms))
    return result


@dataclass(frozen=True, slots=True)
class Coverage:
    """The recorded spans of one series, and the questions the engine asks of them."""

    spans: tuple[CoverageSpan, ...] = ()

    def covered(self, now_ms: int, policy: EmptyRecheckPolicy | None = None) -> list[TimeWindow]:
        policy = policy or EmptyRecheckPolicy()
        return merge(s.window for s in self.spans if policy.trusted(s, now_ms))

    def gaps(self, request: TimeWindow, now_ms: int, policy: EmptyRecheckPolicy | None = None) -> list[TimeWindow]:
        return gaps(request, self.covered(now_ms, policy))

    def empty_windows(self) -> list[TimeWindow]:
        """Windows known to hold no data (for checks that must not call them gaps)."""
        return merge(s.window for s in self.spans if s.empty)

    def covered_ms(self, request: TimeWindow, now_ms: int) -> int:
        return sum(w.clip(request).duration_ms for w in self.covered(now_ms))


def to_inclusive_bars(windows: Iterable[TimeWindow], interval_ms: int) -> list[tuple[int, int]]:
    """The spec's coverage form: ``(first_bar_open_s, last_bar_open_s)``, inclusive, in seconds."""
    out: list[tuple[int, int]] = []
    for window in windows:
        if window.duration_ms >= interval_ms:
            out.append((window.start_ms // 1000, (window.end_ms - interval_ms) // 1000))
    return out


def holes(bar_opens_ms: Sequence[int] | np.ndarray, window: TimeWindow, step_ms: int) -> list[TimeWindow]:
    """Sub-windows of ``window`` with no bar, given the sorted bar open times inside it.

    Vectorised (a page is a thousand bars): the bars reach, after bar ``i``, to
    ``max(window.start, open_i + step)`` (sorted opens: the latest bar reaches furthest), and a
    hole lies before each bar that opens past the reach of those before it."""
    import numpy as np  # here, not at the top: definitions load without numpy (docs/architecture.md)

    opens = np.asarray(bar_opens_ms, dtype=np.int64)
    if len(opens) == 0:
        return [window] if window.start_ms < window.end_ms else []
    reach = np.maximum(opens + step_ms, window.start_ms)
    before = np.concatenate(([window.start_ms], reach[:-1]))
    at = np.flatnonzero(opens > before)
    result = [TimeWindow(int(before[i]), int(opens[i])) for i in at]
    if int(reach[-1]) < window.end_ms:
        result.append(TimeWindow(int(reach[-1]), window.end_ms))
    return result

"""The project's one clock: epoch milliseconds now, and the type of a clock one can pass in."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "wall_clock_ms"]

#: A source of "now" in epoch milliseconds (tests pass a frozen one).
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    """The wall clock, in epoch milliseconds."""
    return time.time_ns() // 1_000_000

"""Half-open time windows in epoch milliseconds, and the conversions at the API edge.

Everything inside the project is ``int`` milliseconds since the epoch, UTC. The public API also
accepts epoch seconds (the original API's unit) and timezone-aware datetimes; naive datetimes
are rejected because their zone would be a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ccxt_questdb_assets.core.errors import ConfigError

TimeLike = int | float | datetime  # a pandas Timestamp is a datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_ms(value: TimeLike, *, what: str = "time") -> int:
    """Convert epoch seconds or an aware datetime to epoch milliseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} must be epoch seconds or a timezone-aware datetime")
    if isinstance(value, datetime):  # pd.Timestamp is a datetime too
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ConfigError(
                f"{what} {value!r} is a naive datetime: give it a timezone, e.g. datetime(..., tzinfo=timezone.utc)"
            )
        return math.floor(value.timestamp() * 1000)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigError(f"{what} {value!r} must be a finite number of epoch seconds")
        return math.floor(value * 1000)
    raise ConfigError(f"{what} {value!r} must be epoch seconds or a timezone-aware datetime")


def format_ms(ms: int) -> str:
    """ISO-8601 UTC for messages and metadata (as pandas writes it); a value past the calendar's
    range (an exchange's garbage, quoted in an error) as plain milliseconds."""
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).isoformat()
    except OverflowError:
        return f"{ms} ms since the epoch"


@dataclass(frozen=True, slots=True, order=True)
class TimeWindow:
    """``[start_ms, end_ms)``: the start is included, the end is not."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise ConfigError(
                f"time window end {format_ms(self.end_ms)} is before its start {format_ms(self.start_ms)}: swap them"
            )

    @classmethod
    def of(cls, start: TimeLike, end: TimeLike) -> TimeWindow:
        return cls(to_epoch_ms(start, what="start"), to_epoch_ms(end, what="end"))

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def empty(self) -> bool:
        return self.end_ms <= self.start_ms

    def clip(self, other: TimeWindow) -> TimeWindow:
        """The part of this window inside ``other`` (possibly empty, anchored at a bound)."""
        start = max(self.start_ms, other.start_ms)
        end = min(self.end_ms, other.end_ms)
        return TimeWindow(start, max(start, end))

    def __str__(self) -> str:
        return f"[{format_ms(self.start_ms)}, {format_ms(self.end_ms)})"

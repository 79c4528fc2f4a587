"""Timeframes and their bar grid.

A bar of timeframe ``tf`` opens at a grid point and closes one period later. The grid is
anchored at the Unix epoch for units up to a day and at a Monday for weeks (as exchanges
anchor weekly candles). Calendar months have no fixed length and are rejected: the coverage
engine relies on fixed-width bars.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ccxt_questdb_assets.core.errors import ConfigError

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# 1970-01-01 was a Thursday; weekly bars open on Mondays (1970-01-05).
_WEEK_ANCHOR_MS = 4 * 86_400_000
_TIMEFRAME_RE = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*$")


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A fixed-width bar period such as ``1m`` or ``4h``."""

    name: str
    ms: int

    @classmethod
    def parse(cls, value: str | Timeframe) -> Timeframe:
        if isinstance(value, Timeframe):
            return value
        if not isinstance(value, str):
            raise ConfigError(f"timeframe {value!r} must be a string such as '1m', '5m', '1h' or '1d'")
        match = _TIMEFRAME_RE.match(value.strip())
        if not match:
            hint = " (calendar months are not supported: use '4w' or '30d')" if value.strip().endswith("M") else ""
            raise ConfigError(
                f"timeframe {value!r} is not valid{hint}: use a count and a unit s, m, h, d or w, "
                "for example '1m', '15m', '1h', '1d', '1w'"
            )
        count, unit = int(match.group(1)), match.group(2)
        return cls(name=f"{count}{unit}", ms=count * _UNIT_MS[unit])

    @property
    def anchor_ms(self) -> int:
        """A grid point: bars open at ``anchor_ms + k * ms``."""
        return _WEEK_ANCHOR_MS if self.ms % _UNIT_MS["w"] == 0 else 0

    def floor(self, ts_ms: int) -> int:
        """Open time of the bar that contains ``ts_ms``."""
        anchor = self.anchor_ms
        return (ts_ms - anchor) // self.ms * self.ms + anchor

    def ceil(self, ts_ms: int) -> int:
        """The first grid point at or after ``ts_ms``."""
        floor = self.floor(ts_ms)
        return floor if floor == ts_ms else floor + self.ms

    def on_grid(self, ts_ms: int) -> bool:
        return self.floor(ts_ms) == ts_ms

    def bars_between(self, start_ms: int, end_ms: int) -> int:
        """Number of bars opening in ``[start_ms, end_ms)``, both on the grid."""
        return max(0, (end_ms - start_ms) // self.ms)

    def __str__(self) -> str:
        return self.name


#: The spec's ``interval``: seconds (``60``) or a duration string (``"1m"``); None: the series' own.
Interval = int | float | str | None


def parse_duration_ms(value: int | float | str, *, what: str = "interval") -> int:
    """Parse a duration given in seconds (``60``) or as a string (``"60s"``, ``"1m"``, ``"1h"``).

    A bare number is seconds, as in the original API's ``interval``.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} must be seconds or a duration such as '60s' or '1m'")
    if isinstance(value, (int, float)):
        number, unit = float(value), "s"
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        number, unit = float(match.group(1)), match.group(2) or "s"
    else:
        raise ConfigError(f"{what} {value!r} must be seconds or a duration such as '60s' or '1m'")
    ms = number * _UNIT_MS[unit]
    if ms <= 0 or ms != int(ms):
        raise ConfigError(f"{what} {value!r} must be a positive whole number of milliseconds")
    return int(ms)

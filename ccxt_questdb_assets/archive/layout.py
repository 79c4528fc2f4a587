"""Binance's public archive (data.binance.vision): which file holds which span, and when it exists.

The archive publishes, per market and symbol, one zip file a UTC day (the day after) and one a
calendar month (in the first days of the next), for klines per interval and for aggregated trades,
each beside a ``.CHECKSUM`` file (``<sha256>  <name>``)::

    data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03.zip
    data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-04-02.zip
    data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-04-02.zip

``plan`` splits a window into the files that should hold it (whole months first, then days) and
the rest, which only the REST API can serve: the days too recent for the archive and any part of a
day the window cuts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.windows import TimeWindow

DAY_MS = 86_400_000

#: A day's file is assumed published this long after the day ends, a month's after the month ends
#: (the archive's own lag is hours for days and a few days for months; a missing file falls back).
DAILY_LAG_MS = DAY_MS
MONTHLY_LAG_MS = 7 * DAY_MS


class ArchiveMarket(enum.Enum):
    """The archive's folder of a ccxt exchange id."""

    SPOT = "spot"
    USDM = "futures/um"

    @classmethod
    def of(cls, exchange_id: str) -> ArchiveMarket:
        markets = {"binance": cls.SPOT, "binanceusdm": cls.USDM}
        if exchange_id not in markets:
            raise ConfigError(
                f"archive: exchange {exchange_id!r} has no public archive this project reads; it serves "
                f"{', '.join(markets)}: remove 'archive' for {exchange_id}"
            )
        return markets[exchange_id]


class ArchiveKind(enum.Enum):
    KLINES = "klines"
    AGG_TRADES = "aggTrades"


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    """One zip file of the archive and the span of time it holds."""

    path: str
    span: TimeWindow
    monthly: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def checksum_path(self) -> str:
        return self.path + ".CHECKSUM"


@dataclass(frozen=True, slots=True)
class ArchiveSeries:
    """One series of the archive: a market, a symbol's exchange id (``BTCUSDT``), klines of one
    interval or aggregated trades."""

    market: ArchiveMarket
    symbol_id: str
    kind: ArchiveKind
    interval: str | None = None

    def _folder(self, period: str) -> str:
        base = f"data/{self.market.value}/{period}/{self.kind.value}/{self.symbol_id}"
        return f"{base}/{self.interval}" if self.kind is ArchiveKind.KLINES else base

    def _stem(self) -> str:
        return f"{self.symbol_id}-{self.interval if self.kind is ArchiveKind.KLINES else self.kind.value}"

    def day_file(self, day: date) -> ArchiveFile:
        start = _ms(day)
        return ArchiveFile(
            f"{self._folder('daily')}/{self._stem()}-{day.isoformat()}.zip", TimeWindow(start, start + DAY_MS), False
        )

    def month_file(self, first: date) -> ArchiveFile:
        end = _next_month(first)
        return ArchiveFile(
            f"{self._folder('monthly')}/{self._stem()}-{first:%Y-%m}.zip", TimeWindow(_ms(first), _ms(end)), True
        )

    def days_of(self, month: ArchiveFile) -> list[ArchiveFile]:
        """The daily files of a month's span (what to read when the month's file is missing)."""
        first = _day(month.span.start_ms)
        return [
            self.day_file(first + timedelta(days=i)) for i in range((month.span.end_ms - month.span.start_ms) // DAY_MS)
        ]


@dataclass(frozen=True, slots=True)
class ArchivePlan:
    """The files that should hold a window, oldest first, and the spans only REST can serve."""

    files: tuple[ArchiveFile, ...]
    rest: tuple[TimeWindow, ...]


def plan(
    series: ArchiveSeries,
    window: TimeWindow,
    now_ms: int,
    *,
    daily_lag_ms: int = DAILY_LAG_MS,
    monthly_lag_ms: int = MONTHLY_LAG_MS,
) -> ArchivePlan:
    """Whole months published by ``now_ms`` as monthly files, other whole days published by then as
    daily files; the parts of days the window cuts and the days not yet published go to REST."""
    first_day = -(-window.start_ms // DAY_MS) * DAY_MS  # the first midnight at or after the start
    last_day = (window.end_ms // DAY_MS) * DAY_MS  # the last midnight at or before the end
    published_until = ((now_ms - daily_lag_ms) // DAY_MS) * DAY_MS  # days ending by now - lag
    files: list[ArchiveFile] = []
    rest: list[TimeWindow] = []
    archived_end = min(last_day, published_until)
    if archived_end <= first_day:
        return ArchivePlan((), (window,) if window.end_ms > window.start_ms else ())
    if window.start_ms < first_day:
        rest.append(TimeWindow(window.start_ms, first_day))
    cursor = first_day
    while cursor < archived_end:
        day = _day(cursor)
        month_end = _ms(_next_month(day.replace(day=1)))
        if day.day == 1 and month_end <= archived_end and month_end + monthly_lag_ms <= now_ms:
            files.append(series.month_file(day))
            cursor = month_end
        else:
            files.append(series.day_file(day))
            cursor += DAY_MS
    if archived_end < window.end_ms:
        rest.append(TimeWindow(archived_end, window.end_ms))
    return ArchivePlan(tuple(files), tuple(rest))


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)

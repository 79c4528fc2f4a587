"""Partitions: UTC periods (days or months, the grain) by symbol, per exchange and data type.

Exchange and timeframe live in the asset key (Dagster allows two partition dimensions); the
``symbol`` dimension is dynamic, so adding a symbol is a config edit (or a new listing seen by
the sensor), never a code change. Keys are ccxt symbols as they are (``2024-01-02|BTC/USDT``):
no encoding to invert, and Dagster only forbids ``| , [ ]``, which ccxt symbols never contain.

The ``date`` dimension has a grain, chosen per data type in the project file (``partitions:``):

* ``day``: Dagster's ``DailyPartitionsDefinition``, a key per UTC day (``2024-03-02``);
* ``month``: Dagster's ``MonthlyPartitionsDefinition``, a key per UTC month, named by its first
  day (``2024-03-01`` is March 2024). The first partition is the month holding ``start_date``.

Either way today's still-open period is a partition (``end_offset=1``), so it can be refreshed.
A key's text does not say its grain (``2024-03-01`` is a day or a month), so whatever maps keys
to time windows is given the grain, or reads it from the asset's partitions definition
(:meth:`Grain.of`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from dagster import (
    BackfillPolicy,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MonthlyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    PartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.windows import TimeWindow

DATE_DIM = "date"
SYMBOL_DIM = "symbol"
DAY_MS = 86_400_000
#: Dagster's recommended most partitions per asset: the project file's default budget.
DAGSTER_PARTITIONS_PER_ASSET = 100_000


class Grain(StrEnum):
    """The time grain of the ``date`` dimension."""

    DAY = "day"
    MONTH = "month"

    @property
    def plural(self) -> str:
        return f"{self.value}s"

    @property
    def max_partitions_per_run(self) -> int:
        """A backfill's run holds at most this many partitions.

        Dagster cuts a backfill into ranges along whichever dimension has fewer keys in it: a
        symbol's periods (a year of one symbol), or one period's symbols (a month of 300 symbols),
        then runs of at most this many. Days: 92 (a quarter; a year of one symbol is 4 runs).
        Months: 12 (a year of one symbol is one run: 525,600 1m bars, about 530 requests; a month
        of 300 symbols is 25 runs). One number per grain, whatever the data type: a job holds the
        candles and trades of a grain, and Dagster warns about a job whose assets' policies differ."""
        return 92 if self is Grain.DAY else 12

    @property
    def backfill_policy(self) -> BackfillPolicy:
        return BackfillPolicy.multi_run(max_partitions_per_run=self.max_partitions_per_run)

    @property
    def recent(self) -> timedelta:
        """How far back (from the end of the open period) the two latest periods reach: the open
        one and the one before (two months are at most 62 days)."""
        return timedelta(days=2) if self is Grain.DAY else timedelta(days=62)

    @property
    def sql_unit(self) -> str:
        """QuestDB's ``timestamp_floor`` unit of one period."""
        return "d" if self is Grain.DAY else "M"

    def period_start(self, day: date) -> date:
        """The first day of the period holding ``day``."""
        return day if self is Grain.DAY else day.replace(day=1)

    def shift(self, start: date, periods: int) -> date:
        """The first day of the period ``periods`` after (or before, if negative) the one starting at ``start``."""
        if self is Grain.DAY:
            return start + timedelta(days=periods)
        months = start.year * 12 + start.month - 1 + periods
        return date(months // 12, months % 12 + 1, 1)

    def next_start(self, start: date) -> date:
        """The first day of the period after the one starting at ``start``."""
        return self.shift(start, 1)

    def previous_start(self, start: date) -> date:
        """The first day of the period before the one starting at ``start``."""
        return self.shift(start, -1)

    def periods(self, start_date: str | date, today: date) -> int:
        """How many partitions the ``date`` dimension has on ``today``: from the period holding
        ``start_date`` through the open one, both included."""
        first = self.period_start(date.fromisoformat(start_date) if isinstance(start_date, str) else start_date)
        if today < first:
            return 0
        if self is Grain.DAY:
            return (today - first).days + 1
        return (today.year - first.year) * 12 + today.month - first.month + 1

    def time_partitions(self, start_date: str) -> TimeWindowPartitionsDefinition:
        """Dagster's partitions of this grain from the period holding ``start_date``, today's
        open period included."""
        first = self.period_start(date.fromisoformat(start_date)).isoformat()
        if self is Grain.DAY:
            return DailyPartitionsDefinition(start_date=first, timezone="UTC", end_offset=1)
        return MonthlyPartitionsDefinition(start_date=first, timezone="UTC", end_offset=1)

    def key_date(self, key: str) -> date:
        """The first day of the partition ``key`` (its ``date`` part), checked against the grain."""
        try:
            start = date.fromisoformat(key)
        except ValueError:
            raise ConfigError(f"partition date {key!r} is not a date like 2024-01-02") from None
        if start != self.period_start(start):
            raise ConfigError(
                f"partition date {key!r} is not a month partition: a month is named by its first day "
                f"({self.period_start(start).isoformat()})"
            )
        return start

    def window(self, key: str) -> TimeWindow:
        """The UTC time window of the partition ``key`` (its ``date`` part)."""
        start = self.key_date(key)
        return TimeWindow(_ms(start), _ms(self.next_start(start)))

    @classmethod
    def of(cls, partitions_def: PartitionsDefinition | None) -> Grain:
        """The grain of a partitions definition with a ``date`` dimension of days or months."""
        time_def: Any = partitions_def
        if isinstance(partitions_def, MultiPartitionsDefinition):
            names = [d.name for d in partitions_def.partitions_defs]
            if DATE_DIM not in names:
                raise ConfigError(f"partitions {names} have no {DATE_DIM!r} dimension of days or months")
            time_def = partitions_def.get_partitions_def_for_dimension(DATE_DIM)
        if isinstance(time_def, TimeWindowPartitionsDefinition) and time_def.timezone == "UTC":
            grain = _BY_CRON.get(time_def.cron_schedule)
            if grain is not None:
                return grain
        raise ConfigError(
            f"partitions {partitions_def!r} are not UTC days or months by symbol: build them with market_partitions()"
        )


_BY_CRON = {"0 0 * * *": Grain.DAY, "0 0 1 * *": Grain.MONTH}


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def day_window(day: str) -> TimeWindow:
    """The UTC window of the day partition ``day`` (``2024-01-02``)."""
    return Grain.DAY.window(day)


def symbols_partitions(exchange_id: str) -> DynamicPartitionsDefinition:
    return DynamicPartitionsDefinition(name=f"{exchange_id}_symbols")


def market_partitions(exchange_id: str, start_date: str, grain: Grain = Grain.DAY) -> MultiPartitionsDefinition:
    """``date`` (UTC days or months, the open one included) x ``symbol`` (dynamic)."""
    return MultiPartitionsDefinition(
        {DATE_DIM: grain.time_partitions(start_date), SYMBOL_DIM: symbols_partitions(exchange_id)}
    )


def partition_key(period: date | str, symbol: str) -> MultiPartitionKey:
    """The key of ``symbol``'s partition of ``period`` (a day, or a month's first day)."""
    return MultiPartitionKey({DATE_DIM: str(period), SYMBOL_DIM: symbol})


@dataclass(frozen=True, slots=True)
class MarketPartition:
    """One date x symbol partition: its key as Dagster writes it, its symbol, its UTC time window
    (a day or a month) and the grain."""

    key: str
    symbol: str
    window: TimeWindow
    grain: Grain = Grain.DAY

    def __str__(self) -> str:
        return f"{self.symbol} {self.window}"


@dataclass(frozen=True, slots=True)
class SymbolSlice:
    """One symbol's part of a run: its partitions (in time order), and their windows merged into
    one window per contiguous run of periods (one fetch each)."""

    symbol: str
    windows: tuple[TimeWindow, ...]
    partitions: tuple[MarketPartition, ...] = ()

    @property
    def span(self) -> TimeWindow:
        """From the first window's start to the last one's end (the gaps between them included)."""
        return TimeWindow(min(w.start_ms for w in self.windows), max(w.end_ms for w in self.windows))


def split_key(key: str | MultiPartitionKey) -> tuple[str, str]:
    """``(date, symbol)`` of a partition key, with a clear error for anything else."""
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        parts = str(key).split("|")
        if len(parts) != 2:
            raise ConfigError(f"partition key {key!r} is not 'YYYY-MM-DD|SYMBOL' (e.g. 2024-01-02|BTC/USDT)")
        dims = {DATE_DIM: parts[0], SYMBOL_DIM: parts[1]}
    return dims[DATE_DIM], dims[SYMBOL_DIM]


def market_partition(key: str | MultiPartitionKey, grain: Grain = Grain.DAY) -> MarketPartition:
    period, symbol = split_key(key)
    return MarketPartition(str(key), symbol, grain.window(period), grain)


def slices_of(keys: Iterable[str | MultiPartitionKey], grain: Grain = Grain.DAY) -> list[SymbolSlice]:
    """Group partition keys of ``grain`` by symbol, in time order; adjacent periods merge into one
    window (one fetch)."""
    by_symbol: dict[str, dict[TimeWindow, MarketPartition]] = defaultdict(dict)
    for key in keys:
        part = market_partition(key, grain)
        by_symbol[part.symbol][part.window] = part
    out = []
    for symbol in sorted(by_symbol):
        parts = tuple(by_symbol[symbol][w] for w in sorted(by_symbol[symbol]))
        merged: list[TimeWindow] = []
        for p in parts:
            if merged and merged[-1].end_ms == p.window.start_ms:
                merged[-1] = TimeWindow(merged[-1].start_ms, p.window.end_ms)
            else:
                merged.append(p.window)
        out.append(SymbolSlice(symbol, tuple(merged), parts))
    return out


def keys_for(periods: Sequence[str], symbols: Sequence[str]) -> list[str]:
    """The keys of every period (a day, or a month's first day) of every symbol."""
    return [str(partition_key(d, s)) for s in symbols for d in periods]


FORBIDDEN_KEY_CHARS = "|,[]"
"""Characters Dagster reserves in (multi-)partition keys; a symbol holding one cannot be a key."""


def is_partition_safe(symbol: str) -> bool:
    return bool(symbol.strip()) and not any(c in symbol for c in FORBIDDEN_KEY_CHARS)


def check_symbol_key(symbol: str, where: str) -> None:
    if not is_partition_safe(symbol):
        raise ConfigError(
            f"{where}: symbol {symbol!r} cannot be a partition key (no {' '.join(FORBIDDEN_KEY_CHARS)}, "
            "not empty); use the ccxt symbol, e.g. 'BTC/USDT'"
        )

"""Partitions: UTC days by symbol, per exchange.

Exchange and timeframe live in the asset key (Dagster allows two partition dimensions); the
``symbol`` dimension is dynamic, so adding a symbol is a config edit (or a new listing seen by
the sensor), never a code change. Keys are ccxt symbols as they are (``2024-01-02|BTC/USDT``):
no encoding to invert, and Dagster only forbids ``| , [ ]``, which ccxt symbols never contain.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from dagster import (
    BackfillPolicy,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
)

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.windows import TimeWindow

DATE_DIM = "date"
SYMBOL_DIM = "symbol"
DAY_MS = 86_400_000
#: A backfill becomes runs of at most this many partitions: a year of one symbol is 4 runs.
MAX_PARTITIONS_PER_RUN = 92
BACKFILL_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN)


def symbols_partitions(exchange_id: str) -> DynamicPartitionsDefinition:
    return DynamicPartitionsDefinition(name=f"{exchange_id}_symbols")


def market_partitions(exchange_id: str, start_date: str) -> MultiPartitionsDefinition:
    """``date`` (UTC days, today included while it is still open) x ``symbol`` (dynamic)."""
    return MultiPartitionsDefinition(
        {
            DATE_DIM: DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=1),
            SYMBOL_DIM: symbols_partitions(exchange_id),
        }
    )


def partition_key(day: date | str, symbol: str) -> MultiPartitionKey:
    return MultiPartitionKey({DATE_DIM: str(day), SYMBOL_DIM: symbol})


@dataclass(frozen=True, slots=True)
class MarketPartition:
    """One date x symbol partition: its key as Dagster writes it, its symbol and its UTC day."""

    key: str
    symbol: str
    day: TimeWindow


@dataclass(frozen=True, slots=True)
class SymbolSlice:
    """One symbol's part of a run: its partitions (by day), and their days merged into one window
    per contiguous run of days (one fetch each)."""

    symbol: str
    windows: tuple[TimeWindow, ...]
    partitions: tuple[MarketPartition, ...] = ()


def day_window(day: str) -> TimeWindow:
    try:
        d = date.fromisoformat(day)
    except ValueError:
        raise ConfigError(f"partition date {day!r} is not a date like 2024-01-02") from None
    start = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
    return TimeWindow(start, start + DAY_MS)


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


def market_partition(key: str | MultiPartitionKey) -> MarketPartition:
    day, symbol = split_key(key)
    return MarketPartition(str(key), symbol, day_window(day))


def slices_of(keys: Iterable[str | MultiPartitionKey]) -> list[SymbolSlice]:
    """Group partition keys by symbol, days in order; adjacent days merge into one window (one fetch)."""
    by_symbol: dict[str, dict[TimeWindow, MarketPartition]] = defaultdict(dict)
    for key in keys:
        part = market_partition(key)
        by_symbol[part.symbol][part.day] = part
    out = []
    for symbol in sorted(by_symbol):
        parts = tuple(by_symbol[symbol][d] for d in sorted(by_symbol[symbol]))
        merged: list[TimeWindow] = []
        for p in parts:
            if merged and merged[-1].end_ms == p.day.start_ms:
                merged[-1] = TimeWindow(merged[-1].start_ms, p.day.end_ms)
            else:
                merged.append(p.day)
        out.append(SymbolSlice(symbol, tuple(merged), parts))
    return out


def keys_for(days: Sequence[str], symbols: Sequence[str]) -> list[str]:
    return [str(partition_key(d, s)) for s in symbols for d in days]


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

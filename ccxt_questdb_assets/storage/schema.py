"""The tables the project creates: designated timestamp, partitioning sized to the data, WAL,
and DEDUP UPSERT KEYS so every write is idempotent (QuestDB has no row DELETE; a replayed or
corrected row replaces its twin)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ccxt_questdb_assets.storage.identifiers import quote_ident, validate_table_name


@dataclass(frozen=True, slots=True)
class TableSchema:
    """Column layout of one kind of table; the name is chosen per deployment."""

    kind: str
    columns: tuple[tuple[str, str], ...]
    dedup_keys: tuple[str, ...]
    partition_by: str
    timestamp: str = "ts"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def symbol_columns(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.columns if kind == "SYMBOL")

    def create_sql(self, table: str) -> str:
        cols = ", ".join(f"{name} {kind}" for name, kind in self.columns)
        return (
            f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ({cols}) "
            f"TIMESTAMP({self.timestamp}) PARTITION BY {self.partition_by} WAL "
            f"DEDUP UPSERT KEYS({', '.join(self.dedup_keys)})"
        )


# 1m candles are 1,440 rows a day per symbol: a month partition holds ~43k rows a symbol.
CANDLES = TableSchema(
    kind="ohlcv",
    columns=(
        ("ts", "TIMESTAMP"),
        ("exchange", "SYMBOL"),
        ("symbol", "SYMBOL"),
        ("timeframe", "SYMBOL"),
        ("open", "DOUBLE"),
        ("high", "DOUBLE"),
        ("low", "DOUBLE"),
        ("close", "DOUBLE"),
        ("volume", "DOUBLE"),
        ("closed", "BOOLEAN"),
    ),
    dedup_keys=("ts", "exchange", "symbol", "timeframe"),
    partition_by="MONTH",
)

# Liquid markets print millions of trades a day: day partitions.
TRADES = TableSchema(
    kind="trades",
    columns=(
        ("ts", "TIMESTAMP"),
        ("exchange", "SYMBOL"),
        ("symbol", "SYMBOL"),
        ("trade_id", "VARCHAR"),
        ("price", "DOUBLE"),
        ("amount", "DOUBLE"),
        ("side", "SYMBOL"),
    ),
    dedup_keys=("ts", "exchange", "symbol", "trade_id"),
    partition_by="DAY",
)

# One row per recorded span, keyed by (span start, node id, empty): a fill extends its own row in
# place, and an empty window starting where a data run starts keeps a row of its own.
COVERAGE = TableSchema(
    kind="coverage",
    columns=(
        ("ts", "TIMESTAMP"),
        ("node_id", "SYMBOL"),
        ("end_ts", "TIMESTAMP"),
        ("empty", "BOOLEAN"),
        ("checked_at", "TIMESTAMP"),
    ),
    dedup_keys=("ts", "node_id", "empty"),
    partition_by="YEAR",
)


@dataclass(frozen=True, slots=True)
class TableNames:
    """Where one series kind lives: its data table and the coverage table beside it, and the name
    tables computed from it are formed from (``base``: the prefix, or the data table given)."""

    data: str
    coverage: str
    base: str

    @classmethod
    def for_data_table(cls, table: str) -> TableNames:
        validate_table_name(table)
        return cls(data=table, coverage=validate_table_name(f"{table}_coverage"), base=table)

    @classmethod
    def from_prefix(cls, prefix: str, mode: str) -> TableNames:
        validate_table_name(prefix, what="table_prefix")
        return replace(cls.for_data_table(f"{prefix}_{mode}"), base=prefix)

    def related(self, suffix: str) -> str:
        """The table of a series computed from this one: ``{base}_{suffix}`` (``crypto_trade_bars``
        beside ``crypto_trades``; ``my_table_trade_bars`` beside an explicit ``my_table``)."""
        return validate_table_name(f"{self.base}_{suffix}")

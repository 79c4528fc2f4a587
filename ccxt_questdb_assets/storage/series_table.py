"""One series in QuestDB: which table, which kind of rows, whose series. The vocabulary the engine,
the IO manager, the checks and the computed assets share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import MODES, OHLCV, TRADES, Mode, NodeId
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.storage.schema import TableNames
from ccxt_questdb_assets.storage.series_kind import CANDLE_KIND, TRADE_KIND, SeriesKind

if TYPE_CHECKING:
    from ccxt_questdb_assets.storage.client import QuestDBClient
    from ccxt_questdb_assets.storage.series import SeriesStore

__all__ = ["SeriesTable"]


@dataclass(frozen=True, slots=True)
class SeriesTable:
    """The series of one exchange (and, for candles, one timeframe) in ``table``."""

    table: str
    kind: Mode
    exchange: str
    timeframe: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODES:
            raise ConfigError(f"series kind {self.kind!r} must be 'ohlcv' or 'trades'")
        if (self.kind == OHLCV) != (self.timeframe is not None):
            raise ConfigError(f"a timeframe is required for candles and not allowed for trades (table {self.table!r})")

    @classmethod
    def candles(cls, tables: TableNames, exchange: str, timeframe: str, *, related: str | None = None) -> SeriesTable:
        """Candles in ``tables.data``, or (``related``) in the table computed beside it."""
        table = tables.related(related) if related else tables.data
        return cls(table, OHLCV, exchange, Timeframe.parse(timeframe).name)

    @classmethod
    def trades(cls, tables: TableNames, exchange: str) -> SeriesTable:
        return cls(tables.data, TRADES, exchange)

    @property
    def series_kind(self) -> SeriesKind:
        return CANDLE_KIND if self.kind == OHLCV else TRADE_KIND

    def node(self, symbol: str) -> NodeId:
        tf = Timeframe.parse(self.timeframe) if self.timeframe else None
        return NodeId(self.kind, self.exchange, symbol, tf)

    def store(self, client: QuestDBClient) -> SeriesStore:
        from ccxt_questdb_assets.storage.series import SeriesStore  # the engine loads when a run reads

        return SeriesStore(client, self.table, self.series_kind)

    @property
    def coverage_table(self) -> str:
        """Where the series' coverage lives: beside its data table, as the ingestion engine keeps it."""
        return TableNames.for_data_table(self.table).coverage

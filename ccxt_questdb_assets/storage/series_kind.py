"""What distinguishes candles from trades at the storage boundary: their schema, the columns that
name a series inside a shared table, and the columns a read returns. Plain values, so that
definitions can name series without loading the storage engine."""

from __future__ import annotations

from dataclasses import dataclass

from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.storage.schema import CANDLES, TRADES, TableSchema

CANDLE_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
TRADE_COLUMNS = ("ts", "trade_id", "price", "amount", "side")


@dataclass(frozen=True, slots=True)
class SeriesKind:
    """What distinguishes candles from trades at the storage boundary."""

    schema: TableSchema
    key_columns: tuple[str, ...]  # identify the node inside a shared table
    value_columns: tuple[str, ...]  # what a read returns besides ts
    extra_columns: tuple[str, ...] = ()  # stored, not returned by default

    def key_values(self, node: NodeId) -> tuple[str, ...]:
        values = {"exchange": node.exchange, "symbol": node.symbol}
        if node.timeframe is not None:
            values["timeframe"] = node.timeframe.name
        return tuple(values[c] for c in self.key_columns)


CANDLE_KIND = SeriesKind(
    schema=CANDLES,
    key_columns=("exchange", "symbol", "timeframe"),
    value_columns=CANDLE_COLUMNS[1:],
    extra_columns=("closed",),
)
TRADE_KIND = SeriesKind(
    schema=TRADES,
    key_columns=("exchange", "symbol"),
    value_columns=TRADE_COLUMNS[1:],
)

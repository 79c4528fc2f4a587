"""Series tables: candles and trades keyed by their node, written in bulk and read by window.

Frames at this boundary use ``ts`` as epoch milliseconds (int64) on the way in, and a UTC
``datetime64`` column on the way out. Every predicate is a bound parameter; only validated
table names are formatted into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.identifiers import quote_ident
from ccxt_questdb_assets.storage.schema import CANDLES, TRADES, TableSchema

CANDLE_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
TRADE_COLUMNS = ("ts", "trade_id", "price", "amount", "side")


def _micros(ms: int) -> int:
    return ms * 1000


@dataclass(frozen=True, slots=True)
class SeriesKind:
    """What distinguishes candles from trades at the storage boundary."""

    schema: TableSchema
    key_columns: tuple[str, ...]       # identify the node inside a shared table
    value_columns: tuple[str, ...]     # what a read returns besides ts
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


class SeriesStore:
    """Reads and writes one table of candles or trades."""

    def __init__(self, client: QuestDBClient, table: str, kind: SeriesKind) -> None:
        self.client = client
        self.table = table
        self.kind = kind

    def ensure(self) -> None:
        self.client.ensure_table(self.kind.schema, self.table)

    def write(self, node: NodeId, rows: pd.DataFrame) -> int:
        """Upsert ``rows`` (``ts`` in epoch ms) for ``node``; returns the number of rows sent."""
        if rows.empty:
            return 0
        self.ensure()
        frame = pd.DataFrame(
            {"ts": pd.to_datetime(rows["ts"].to_numpy(dtype="int64"), unit="ms", utc=True)}
        )
        for column, value in zip(self.kind.key_columns, self.kind.key_values(node), strict=True):
            frame[column] = pd.Categorical([value] * len(rows))
        for column in self.kind.value_columns + self.kind.extra_columns:
            values = rows[column]
            if column in self.kind.schema.symbol_columns:
                values = pd.Categorical(values.astype(str))
            elif column == "trade_id":
                values = values.astype(str)
            frame[column] = values.to_numpy() if not isinstance(values, pd.Categorical) else values
        self.client.write_frame(self.table, frame, symbols=self.kind.schema.symbol_columns)
        return len(frame)

    def wait_visible(self) -> None:
        self.client.wait_visible(self.table)

    def read(self, node: NodeId, window: TimeWindow, columns: tuple[str, ...] | None = None,
             limit: int | None = None) -> pd.DataFrame:
        """Rows of ``node`` with ``ts`` in ``[start, end)``, ordered by time, ``ts`` as UTC datetimes
        (the first ``limit`` rows only, if given)."""
        self.ensure()
        columns = columns or self.kind.value_columns
        wanted = ", ".join(columns)
        keys = " AND ".join(f"{c} = %s" for c in self.kind.key_columns)
        order = "ts, trade_id" if "trade_id" in self.kind.schema.column_names else "ts"
        sql = (
            f"SELECT cast(ts AS long) ts_us, {wanted} FROM {quote_ident(self.table)} "
            f"WHERE {keys} AND ts >= %s::timestamp AND ts < %s::timestamp ORDER BY {order}"
        )
        params = (*self.kind.key_values(node), _micros(window.start_ms), _micros(window.end_ms))
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        frame = self.client.query_frame(sql, params, ("ts_us", *columns))
        ts = pd.to_datetime(frame.pop("ts_us").to_numpy(dtype=np.int64), unit="us", utc=True)
        frame.insert(0, "ts", ts)
        return frame.reset_index(drop=True)

    def count(self, node: NodeId, window: TimeWindow) -> int:
        keys = " AND ".join(f"{c} = %s" for c in self.kind.key_columns)
        rows = self.client.query(
            f"SELECT count() FROM {quote_ident(self.table)} "
            f"WHERE {keys} AND ts >= %s::timestamp AND ts < %s::timestamp",
            (*self.kind.key_values(node), _micros(window.start_ms), _micros(window.end_ms)),
        )
        return int(rows[0][0]) if rows else 0

    def stats(self, node: NodeId, window: TimeWindow) -> tuple[int, int | None, int | None]:
        """``(rows, first ts ms, last ts ms)`` of ``node`` in ``[start, end)``."""
        self.ensure()
        keys = " AND ".join(f"{c} = %s" for c in self.kind.key_columns)
        rows = self.client.query(
            f"SELECT count(), cast(min(ts) AS long), cast(max(ts) AS long) FROM {quote_ident(self.table)} "
            f"WHERE {keys} AND ts >= %s::timestamp AND ts < %s::timestamp",
            (*self.kind.key_values(node), _micros(window.start_ms), _micros(window.end_ms)),
        )
        n, lo, hi = rows[0] if rows else (0, None, None)
        if not n:
            return 0, None, None
        return int(n), int(lo) // 1000, int(hi) // 1000

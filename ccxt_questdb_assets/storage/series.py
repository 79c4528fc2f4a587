"""Series tables: candles and trades keyed by their node, written in bulk and read by window.

Frames at this boundary use ``ts`` as epoch milliseconds (int64) on the way in, and a UTC
``datetime64`` column on the way out. Over PG wire every predicate is a bound parameter; only
validated table names are formatted into SQL. Large reads go through QuestDB's ``/exp`` as
parquet, which cannot bind parameters: there the key values are written into the SQL only if
they are of a closed alphabet (``_literal``), otherwise the read stays on PG wire.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.identifiers import quote_ident
from ccxt_questdb_assets.storage.series_kind import SeriesKind

if TYPE_CHECKING:
    import pandas as pd

#: Reads expected to return at least this many rows go through ``/exp`` as parquet: below it,
#: the export's fixed cost (a few ms) is more than PG wire's per-row cost (docs/benchmarks.md).
EXPORT_MIN_ROWS = 5_000
#: Trades have no row count to expect from a window: export windows of at least an hour.
EXPORT_MIN_TRADES_WINDOW_MS = 3_600_000
#: ``timestamp_floor`` units a period may be: a day or a month.
PERIOD_UNITS = ("d", "M")

# Characters a key value may have to be written into SQL as a literal (no quote, backslash,
# semicolon, whitespace or control character).
_LITERAL_RE = re.compile(r"^[A-Za-z0-9._/+@-]{1,200}$")


def period_floor(unit: str) -> str:
    """QuestDB's expression of a row's UTC period start: ``timestamp_floor`` of ``ts`` by ``unit``,
    ``d`` (a day) or ``M`` (a month); any other unit is refused."""
    if unit not in PERIOD_UNITS:
        raise ValueError(f"period unit {unit!r} must be one of {', '.join(PERIOD_UNITS)}")
    return f"timestamp_floor('{unit}', ts)"


def _micros(ms: int) -> int:
    return ms * 1000


def _literal(value: str) -> str | None:
    """``value`` as a SQL string literal, or None if it holds anything outside the closed alphabet."""
    return f"'{value}'" if _LITERAL_RE.match(value) else None


def _constant_symbol(value: str, n: int) -> pd.Categorical:
    """A SYMBOL column holding ``value`` n times: one category and n one-byte codes."""
    import pandas as pd

    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_EMPTY_DTYPES = {"DOUBLE": "float64", "BOOLEAN": "bool", "LONG": "int64", "SYMBOL": "str", "VARCHAR": "str"}


class SeriesStore:
    """Reads and writes one table of candles or trades."""

    def __init__(self, client: QuestDBClient, table: str, kind: SeriesKind) -> None:
        self.client = client
        self.table = table
        self.kind = kind

    def ensure(self) -> None:
        self.client.ensure_table(self.kind.schema, self.table)

    def write(self, node: NodeId, rows: pd.DataFrame) -> int:
        """Upsert ``rows`` (``ts`` in epoch ms) for ``node``; returns the number of rows sent.

        The frame handed to the ILP sender shares the value columns with ``rows``; only ``ts``
        (ms to a naive microsecond datetime, which the sender reads as UTC) is a new array.
        """
        import pandas as pd

        n = len(rows)
        if n == 0:
            return 0
        self.ensure()
        symbols = self.kind.schema.symbol_columns
        columns: dict[str, object] = {
            "ts": (rows["ts"].to_numpy(dtype=np.int64) * 1000).view("datetime64[us]"),
        }
        for column, value in zip(self.kind.key_columns, self.kind.key_values(node), strict=True):
            columns[column] = _constant_symbol(value, n)
        for column in self.kind.value_columns + self.kind.extra_columns:
            values = rows[column]
            if column in symbols:
                is_categorical = isinstance(values.dtype, pd.CategoricalDtype)
                columns[column] = values if is_categorical else pd.Categorical(values.astype(str))
            elif column == "trade_id" and not pd.api.types.is_string_dtype(values.dtype):
                columns[column] = values.astype(str).to_numpy()
            else:
                columns[column] = values.to_numpy()
        frame = pd.DataFrame(columns, copy=False)
        self.client.write_frame(self.table, frame, symbols=symbols)
        return n

    def wait_visible(self) -> None:
        self.client.wait_visible(self.table)

    def read(
        self, node: NodeId, window: TimeWindow, columns: tuple[str, ...] | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """Rows of ``node`` with ``ts`` in ``[start, end)``, ordered by time, ``ts`` as UTC datetimes
        (the first ``limit`` rows only, if given)."""
        import pandas as pd

        self.ensure()
        columns = columns or self.kind.value_columns
        wanted = ", ".join(columns)
        order = "ts, trade_id" if "trade_id" in self.kind.schema.column_names else "ts"
        tail = f" ORDER BY {order}" + (f" LIMIT {int(limit)}" if limit is not None else "")
        start_us, end_us = _micros(window.start_ms), _micros(window.end_ms)
        head = f"SELECT cast(ts AS long) ts_us, {wanted} FROM {quote_ident(self.table)} WHERE "
        keys = self.kind.key_values(node)
        sql = head + "".join(f"{c} = %s AND " for c in self.kind.key_columns)
        sql += "ts >= %s::timestamp AND ts < %s::timestamp" + tail
        export_sql = None
        literals = [_literal(v) for v in keys]
        if self._worth_exporting(node, window, limit) and None not in literals:
            export_sql = head + "".join(f"{c} = {v} AND " for c, v in zip(self.kind.key_columns, literals, strict=True))
            export_sql += f"ts >= {start_us}::timestamp AND ts < {end_us}::timestamp" + tail
        frame = self.client.query_frame(sql, (*keys, start_us, end_us), ("ts_us", *columns), export_sql=export_sql)
        ts = pd.to_datetime(frame.pop("ts_us").to_numpy(dtype=np.int64), unit="us", utc=True)
        frame.insert(0, "ts", ts)
        if frame.empty:  # PG wire gives untyped empty columns
            dtypes = dict(self.kind.schema.columns)
            frame = frame.astype({c: _EMPTY_DTYPES.get(dtypes.get(c, ""), object) for c in columns})
        return frame

    def period_heads(self, node: NodeId, window: TimeWindow, unit: str, rows: int) -> dict[int, list[tuple]]:
        """``{UTC period start ms: its first rows}``, at most ``rows`` a period, each ``(ts as a UTC
        datetime, *value columns)``: the periods of ``[start, end)`` holding rows, in one query (a
        row number per period). Rows, not a frame: a run that fetched nothing shows its partitions
        without pandas."""
        floor = period_floor(unit)
        self.ensure()
        columns = self.kind.value_columns
        wanted = ", ".join(columns)
        order = "ts, trade_id" if "trade_id" in self.kind.schema.column_names else "ts"
        where, params = self._in_window(node, window)
        numbered = (
            f"SELECT cast({floor} AS long) period, cast(ts AS long) ts_us, {wanted}, "
            f"row_number() OVER (PARTITION BY {floor} ORDER BY {order}) n "
            f"FROM {quote_ident(self.table)} {where}"
        )
        sql = f"SELECT period, ts_us, {wanted} FROM ({numbered}) WHERE n <= {int(rows)} ORDER BY period, n"
        heads: dict[int, list[tuple]] = {}
        for period, ts_us, *values in self.client.query(sql, params):
            heads.setdefault(int(period) // 1000, []).append((_EPOCH + timedelta(microseconds=int(ts_us)), *values))
        return heads

    def _worth_exporting(self, node: NodeId, window: TimeWindow, limit: int | None) -> bool:
        if node.timeframe is None:
            long_enough = window.end_ms - window.start_ms >= EXPORT_MIN_TRADES_WINDOW_MS
            return long_enough and (limit is None or limit >= EXPORT_MIN_ROWS)
        bars = -(-(window.end_ms - window.start_ms) // node.timeframe.ms)
        return min(bars, limit if limit is not None else bars) >= EXPORT_MIN_ROWS

    def _in_window(self, node: NodeId, window: TimeWindow) -> tuple[str, tuple]:
        """``WHERE`` clause (keys and ``[start, end)``) and its bound parameters."""
        keys = " AND ".join(f"{c} = %s" for c in self.kind.key_columns)
        return (
            f"WHERE {keys} AND ts >= %s::timestamp AND ts < %s::timestamp",
            (*self.kind.key_values(node), _micros(window.start_ms), _micros(window.end_ms)),
        )

    def count(self, node: NodeId, window: TimeWindow) -> int:
        self.ensure()  # like every read here: a table not created yet holds nothing
        where, params = self._in_window(node, window)
        rows = self.client.query(f"SELECT count() FROM {quote_ident(self.table)} {where}", params)
        return int(rows[0][0]) if rows else 0

    def period_stats(self, node: NodeId, window: TimeWindow, unit: str = "d") -> dict[int, tuple[int, int, int]]:
        """``{UTC period start ms: (rows, first ts ms, last ts ms)}`` of ``node`` in ``[start, end)``,
        for the periods holding rows: one query for any number of periods. ``unit`` is QuestDB's
        ``timestamp_floor`` unit of a period: ``d`` (days) or ``M`` (months)."""
        floor = period_floor(unit)
        self.ensure()
        where, params = self._in_window(node, window)
        rows = self.client.query(
            f"SELECT cast({floor} AS long), count(), cast(min(ts) AS long), "
            f"cast(max(ts) AS long) FROM {quote_ident(self.table)} {where} GROUP BY 1 ORDER BY 1",
            params,
        )
        return {int(day) // 1000: (int(n), int(lo) // 1000, int(hi) // 1000) for day, n, lo, hi in rows}

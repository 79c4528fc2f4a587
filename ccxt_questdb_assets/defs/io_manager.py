"""QuestDBIOManager: partitioned series in QuestDB, in the style of Dagster's database IO managers.

Each asset names its table and series in its definition metadata (:class:`SeriesTable`); a
partition (``date|symbol``, or a range of them) maps to one ``WHERE exchange = ? AND symbol = ?
AND ts >= ? AND ts < ?`` per symbol, always with bound parameters. The window of a key is read
with the grain of the asset's partitions definition (a day or a month: ``2024-03-01`` is either).

Outputs go through a type handler:

* ``pd.DataFrame``: validated, then upserted in bulk (the tables' DEDUP keys make a rewrite
  replace its rows, so no delete step is needed), for one or many symbols (``symbol`` column);
* :class:`StoredSlice`: the asset already stored its rows (the coverage engine writes page by
  page; SQL assets insert inside QuestDB), so only visibility and metadata remain.

Either way ``handle_output`` returns only once QuestDB has applied the WAL, so checks and
downstream assets of the same run read what was written. Then each partition's materialization
gets its own figures (``partition_figures``): rows stored, first and last timestamps, a preview,
plus what the handler or the asset counted for that partition. ``load_input`` returns the
upstream partitions' rows as one DataFrame (``symbol`` column included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
from dagster import (
    ConfigurableIOManager,
    DagsterInvariantViolationError,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)
from pydantic import Field

from ccxt_questdb_assets.core.clock import wall_clock_ms
from ccxt_questdb_assets.core.errors import ConfigError, ExchangeDataError, InvalidFrameError
from ccxt_questdb_assets.core.node_ids import MODES, OHLCV
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.core.validation import candles_frame, trades_frame, ts_column_ms
from ccxt_questdb_assets.core.windows import TimeWindow, format_ms
from ccxt_questdb_assets.defs.markdown_table import frame_markdown
from ccxt_questdb_assets.defs.partition_figures import previews_by_partition, stored_by_partition
from ccxt_questdb_assets.defs.partitions import Grain, SymbolSlice, slices_of
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.series_table import SeriesTable

IO_MANAGER_KEY = "questdb_io_manager"
META_TABLE = "questdb/table"
META_KIND = "questdb/kind"
META_EXCHANGE = "ccxt/exchange"
META_TIMEFRAME = "ccxt/timeframe"

_COLUMN_DOCS = {
    "ts": ("timestamp", "Bar open (candles) or trade time, UTC; the designated timestamp."),
    "exchange": ("symbol", "ccxt exchange id."),
    "symbol": ("symbol", "ccxt symbol, e.g. BTC/USDT."),
    "timeframe": ("symbol", "Bar length, e.g. 1m."),
    "open": ("double", "First price of the bar."),
    "high": ("double", "Highest price of the bar."),
    "low": ("double", "Lowest price of the bar."),
    "close": ("double", "Last price of the bar."),
    "volume": ("double", "Base-asset volume of the bar."),
    "closed": ("boolean", "False while the bar is still open (stored provisionally, replaced once closed)."),
    "trade_id": ("varchar", "The exchange's trade id (Binance: aggregate trade id)."),
    "price": ("double", "Trade price."),
    "amount": ("double", "Trade amount in the base asset."),
    "side": ("symbol", "Taker side: buy or sell."),
}


def series_metadata(table: SeriesTable) -> dict[str, Any]:
    """Asset definition metadata: what the IO manager needs (the series), and what the catalog shows."""
    schema = table.series_kind.schema
    columns = [
        TableColumn(name, _COLUMN_DOCS[name][0], description=_COLUMN_DOCS[name][1]) for name in schema.column_names
    ]
    md: dict[str, Any] = {
        META_TABLE: table.table,
        META_KIND: table.kind,
        META_EXCHANGE: table.exchange,
        "dagster/table_name": f"questdb.{table.table}",
        "questdb/coverage_table": table.coverage_table,
        "dagster/column_schema": TableSchema(columns=columns),
        "questdb/dedup_keys": ", ".join(schema.dedup_keys),
        "questdb/partition_by": schema.partition_by,
    }
    if table.timeframe:
        md[META_TIMEFRAME] = table.timeframe
    return md


def series_of(metadata: Any, asset: str) -> SeriesTable:
    """The series an asset's definition metadata names (``series_metadata``)."""

    def get(key: str) -> Any:
        value = metadata.get(key) if metadata else None
        return getattr(value, "value", value)

    if not get(META_TABLE):
        raise ConfigError(
            f"asset {asset} has no {META_TABLE!r} metadata: build it with series_metadata(SeriesTable(...)) "
            "so the QuestDB IO manager knows its table"
        )
    kind = get(META_KIND)
    if kind not in MODES:
        raise ConfigError(f"asset {asset}: {META_KIND} {kind!r} must be 'ohlcv' or 'trades'")
    return SeriesTable(get(META_TABLE), kind, get(META_EXCHANGE), get(META_TIMEFRAME))


PartitionFigures = Mapping[str, Mapping[str, Any]]
"""Metadata by partition key: what a run counted for each partition (rows written, requests, ...)."""


@dataclass(frozen=True)
class StoredSlice:
    """An asset output whose rows are already in QuestDB (written page by page, or by SQL), with
    what the asset counted for each partition."""

    figures: PartitionFigures = field(default_factory=dict)


class OutputHandler(Protocol):
    """Stores one Python type; returns what it counted per partition key."""

    def store(
        self, table: SeriesTable, client: QuestDBClient, slices: list[SymbolSlice], obj: Any, asset: str
    ) -> PartitionFigures: ...


class StoredSliceHandler:
    def store(self, table, client, slices, obj: StoredSlice, asset) -> PartitionFigures:
        return obj.figures


class DataFrameHandler:
    """Validates a frame of candles or trades and upserts it symbol by symbol."""

    def store(self, table, client, slices, obj: pd.DataFrame, asset) -> PartitionFigures:
        store = table.store(client)
        by_symbol = {s.symbol: s for s in slices}
        frame = obj
        if "symbol" not in frame.columns:
            if len(by_symbol) != 1:
                raise InvalidFrameError(
                    f"asset {asset}: the output spans symbols {sorted(by_symbol)}; add a "
                    "'symbol' column naming each row's symbol"
                )
            groups = [(next(iter(by_symbol)), frame)]
        else:
            groups = list(frame.groupby("symbol", sort=True, observed=True))
        cleaned = [(symbol, self._clean(table, part, by_symbol, symbol, asset)) for symbol, part in groups]
        figures: dict[str, dict[str, Any]] = {}
        for symbol, rows in cleaned:  # every group validated before anything is written
            store.write(table.node(symbol), rows)
            ts = rows["ts"].to_numpy()
            for p in by_symbol[symbol].partitions:
                figures[p.key] = {"rows_written": int(((ts >= p.window.start_ms) & (ts < p.window.end_ms)).sum())}
        return figures

    @staticmethod
    def _clean(
        table: SeriesTable, part: pd.DataFrame, by_symbol: dict[str, SymbolSlice], symbol: str, asset: str
    ) -> pd.DataFrame:
        what = f"asset {asset} output for {symbol}"
        if symbol not in by_symbol:
            raise InvalidFrameError(
                f"{what}: symbol {symbol!r} is not among this run's partitions {sorted(by_symbol)}; nothing was written"
            )
        columns = ["ts", *table.series_kind.value_columns]
        missing = [c for c in columns if c not in part.columns]
        if missing:
            raise InvalidFrameError(f"{what}: missing columns {missing}; expected {columns}")
        try:
            ts = ts_column_ms(part["ts"], what=what)
            if table.kind == OHLCV:
                values = part[columns].to_numpy(dtype="float64", copy=True)
                values[:, 0] = ts
                tf = Timeframe.parse(table.timeframe)
                # A bar is final only once it has closed, whatever the frame says.
                rows = candles_frame(values, tf, what=what, closed_until=wall_clock_ms())
                if "closed" in part:
                    given = pd.DataFrame({"ts": ts, "given": part["closed"].to_numpy(dtype=bool)})
                    given = given.drop_duplicates("ts", keep="last")
                    rows = rows.merge(given, on="ts", how="left")
                    rows["closed"] &= rows.pop("given").fillna(True).astype(bool)
            else:
                records = [
                    {"timestamp": t, "id": i, "price": p, "amount": a, "side": s}
                    for t, i, p, a, s in zip(
                        ts, part["trade_id"], part["price"], part["amount"], part["side"], strict=True
                    )
                ]
                rows = trades_frame(records, what=what)
        except ExchangeDataError as exc:
            raise InvalidFrameError(str(exc)) from None
        inside = pd.Series(False, index=rows.index)
        for w in by_symbol[symbol].windows:
            inside |= (rows["ts"] >= w.start_ms) & (rows["ts"] < w.end_ms)
        if not inside.all():
            first = int(rows.loc[~inside, "ts"].iloc[0])
            raise InvalidFrameError(
                f"{what}: row at {format_ms(first)} lies outside the run's partitions "
                f"({', '.join(_window_text(w) for w in by_symbol[symbol].windows)}); nothing was written"
            )
        return rows


HANDLERS: dict[type, OutputHandler] = {pd.DataFrame: DataFrameHandler(), StoredSlice: StoredSliceHandler()}


class QuestDBIOManager(ConfigurableIOManager):
    """Stores partitioned candles and trades in QuestDB and loads them back as DataFrames."""

    questdb: QuestDBResource
    preview_rows: int = Field(default=5, description="Rows shown in each materialization's preview.")

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        asset = context.asset_key.to_user_string()
        table = series_of(context.definition_metadata, asset)
        handler = next((h for t, h in HANDLERS.items() if isinstance(obj, t)), None)
        if handler is None:
            raise InvalidFrameError(
                f"asset {asset} returned a {type(obj).__name__}; the QuestDB IO manager stores "
                "a pandas DataFrame or a StoredSlice"
            )
        slices = _slices(context, asset)
        client = self.questdb.client()
        figures = handler.store(table, client, slices, obj, asset)
        client.wait_visible(table.table)
        _attach(context, self._describe(table, client, slices, figures))

    def load_input(self, context: InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        asset = upstream.asset_key.to_user_string() if upstream is not None and upstream.has_asset_key else "?"
        table = series_of(upstream.definition_metadata if upstream else None, asset)
        store = table.store(self.questdb.client())
        frames = []
        for sl in _slices(context, asset):
            for window in sl.windows:
                part = store.read(table.node(sl.symbol), window)
                part.insert(1, "symbol", sl.symbol)
                frames.append(part)
        if not frames:
            return pd.DataFrame({c: [] for c in ("ts", "symbol", *table.series_kind.value_columns)})
        return pd.concat(frames, ignore_index=True)

    # -- metadata ---------------------------------------------------------------------------
    def _describe(
        self, table: SeriesTable, client: QuestDBClient, slices: list[SymbolSlice], figures: PartitionFigures
    ) -> dict[str, dict[str, Any]]:
        """Metadata by partition key: rows stored, first and last timestamps, a preview, and the
        handler's figures for that partition."""
        store = table.store(client)
        out: dict[str, dict[str, Any]] = {}
        for sl in slices:
            node = table.node(sl.symbol)
            stored = stored_by_partition(store, node, sl.partitions)
            heads = previews_by_partition(store, node, sl.partitions, self.preview_rows)
            for p in sl.partitions:
                held = stored[p.key]
                md: dict[str, Any] = {"dagster/row_count": held.rows, **figures.get(p.key, {})}
                if held.rows:
                    md["first_ts"] = MetadataValue.timestamp(held.first_ms / 1000)
                    md["last_ts"] = MetadataValue.timestamp(held.last_ms / 1000)
                    if p.key in heads:
                        md["preview"] = MetadataValue.md(frame_markdown(heads[p.key]))
                out[p.key] = md
        return out


def _attach(context: OutputContext, by_partition: Mapping[str, Mapping[str, Any]]) -> None:
    """Each partition's figures on that partition's materialization (never the run's totals on
    every partition). Outside a run (a context built for a test) there are no per-partition events:
    the numbers go out as one ``partitions`` entry keyed by partition."""
    try:
        step = context.step_context
    except DagsterInvariantViolationError:
        numbers = {
            key: {k: v for k, v in md.items() if isinstance(v, (int, float))} for key, md in by_partition.items()
        }
        context.add_output_metadata({"partitions": MetadataValue.json(numbers)})
        return
    for key, metadata in by_partition.items():
        step.add_asset_metadata(metadata, asset_key=context.asset_key, partition_key=key)


def _slices(context: InputContext | OutputContext, asset: str) -> list[SymbolSlice]:
    """The partitions of the output (or, for an input, of the upstream asset), read with their grain."""
    if not context.has_asset_partitions:
        raise ConfigError(f"asset {asset} is not partitioned: the QuestDB IO manager stores date x symbol partitions")
    return slices_of(context.asset_partition_keys, Grain.of(context.asset_partitions_def))


def _window_text(w: TimeWindow) -> str:
    return f"[{format_ms(w.start_ms)}, {format_ms(w.end_ms)})"

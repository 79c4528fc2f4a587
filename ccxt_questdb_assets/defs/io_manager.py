"""QuestDBIOManager: partitioned series in QuestDB, in the style of Dagster's database IO managers.

Each asset names its table and series in its definition metadata (:class:`SeriesTable`); a
partition (``date|symbol``, or a range of them) maps to one ``WHERE exchange = ? AND symbol = ?
AND ts >= ? AND ts < ?`` per symbol, always with bound parameters. The window of a key is read
with the grain of the asset's partitions definition (a day or a month: ``2024-03-01`` is either).

Outputs go through a type handler:

* ``pd.DataFrame``: validated, then upserted in bulk (``frame_handler``, loaded with the first
  frame: definitions load without pandas);
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
from typing import TYPE_CHECKING, Any, Protocol

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

from ccxt_questdb_assets.core.errors import ConfigError, InvalidFrameError
from ccxt_questdb_assets.core.node_ids import MODES
from ccxt_questdb_assets.defs.partitions import Grain, SymbolSlice, slices_of
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.storage.series_table import SeriesTable

if TYPE_CHECKING:
    import pandas as pd

    from ccxt_questdb_assets.storage.client import QuestDBClient

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


def _handler_for(obj: Any, asset: str) -> OutputHandler:
    """The type handler of an output. The frame handler, and pandas with it, load with the first
    frame: a run of stored slices (every fetching asset) never needs them."""
    if isinstance(obj, StoredSlice):
        return StoredSliceHandler()
    from ccxt_questdb_assets.defs.frame_handler import DataFrameHandler

    if isinstance(obj, DataFrameHandler.TYPE):
        return DataFrameHandler()
    raise InvalidFrameError(
        f"asset {asset} returned a {type(obj).__name__}; the QuestDB IO manager stores "
        "a pandas DataFrame or a StoredSlice"
    )


class QuestDBIOManager(ConfigurableIOManager):
    """Stores partitioned candles and trades in QuestDB and loads them back as DataFrames."""

    questdb: QuestDBResource
    preview_rows: int = Field(default=5, description="Rows shown in each materialization's preview.")

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        asset = context.asset_key.to_user_string()
        table = series_of(context.definition_metadata, asset)
        handler = _handler_for(obj, asset)
        slices = _slices(context, asset)
        client = self.questdb.client()
        figures = handler.store(table, client, slices, obj, asset)
        client.wait_visible(table.table)
        from ccxt_questdb_assets.defs.partition_figures import describe_partitions  # the storage engine: at run time

        _attach(context, describe_partitions(table, client, slices, figures, self.preview_rows))

    def load_input(self, context: InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        asset = upstream.asset_key.to_user_string() if upstream is not None and upstream.has_asset_key else "?"
        table = series_of(upstream.definition_metadata if upstream else None, asset)
        from ccxt_questdb_assets.defs.frame_handler import DataFrameHandler

        return DataFrameHandler().load(table, self.questdb.client(), _slices(context, asset))


def _attach(context: OutputContext, by_partition: Mapping[str, Mapping[str, Any]]) -> None:
    """Each partition's figures on that partition's materialization (never the run's totals on
    every partition). Outside a run (a context built for a test) there are no per-partition events:
    the numbers go out as one ``partitions`` entry keyed by partition.

    Dagster's ``add_asset_metadata(partition_key=...)`` checks its key by listing the run's
    partition keys again, the symbols from the instance included, on every call: a run's cost
    grows with the square of its partitions (0.17 s for 92 day partitions, 1.2 s for 365). The
    keys here are checked once against the run's own, then go to the step's per-partition
    metadata, which that method fills and each partition's materialization reads. A Dagster
    without that store gets the method itself."""
    try:
        step = context.step_context
    except DagsterInvariantViolationError:
        numbers = {
            key: {k: v for k, v in md.items() if isinstance(v, (int, float))} for key, md in by_partition.items()
        }
        context.add_output_metadata({"partitions": MetadataValue.json(numbers)})
        return
    stray = sorted(set(by_partition) - set(context.asset_partition_keys))
    if stray:
        raise DagsterInvariantViolationError(f"metadata for partitions {stray} that this run does not target")
    accumulator = getattr(step, "_metadata_accumulator", None)
    if not hasattr(accumulator, "with_additional_asset_metadata"):
        for key, metadata in by_partition.items():
            step.add_asset_metadata(metadata, asset_key=context.asset_key, partition_key=key)
        return
    for key, metadata in by_partition.items():
        accumulator = accumulator.with_additional_asset_metadata(
            asset_key=context.asset_key, partition_key=key, metadata=metadata
        )
    step._metadata_accumulator = accumulator


def _slices(context: InputContext | OutputContext, asset: str) -> list[SymbolSlice]:
    """The partitions of the output (or, for an input, of the upstream asset), read with their grain."""
    if not context.has_asset_partitions:
        raise ConfigError(f"asset {asset} is not partitioned: the QuestDB IO manager stores date x symbol partitions")
    return slices_of(context.asset_partition_keys, Grain.of(context.asset_partitions_def))

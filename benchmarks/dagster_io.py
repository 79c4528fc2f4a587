"""The project's ``QuestDBIOManager`` driven the way a Dagster run drives it, for targets 1 and 2.

``handle_output`` and ``load_input`` get contexts for a range of daily partitions of one symbol
(what a multi-partition run of the backfill policy hands them), built with Dagster's own
``build_output_context``/``build_input_context`` on an ephemeral instance that knows the symbol.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from ccxt_questdb_assets.storage.connection import QuestDBConnection

EXCHANGE = "binance"
TIMEFRAME = "1m"


class IOManagerBench:
    """One IO manager on the benchmark's QuestDB and one Dagster instance for its contexts."""

    def __init__(self, connection: QuestDBConnection) -> None:
        from dagster import DagsterInstance

        from ccxt_questdb_assets.defs.io_manager import QuestDBIOManager
        from ccxt_questdb_assets.defs.partitions import market_partitions, symbols_partitions
        from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource

        self.instance = DagsterInstance.ephemeral()
        self.instance.add_dynamic_partitions(symbols_partitions(EXCHANGE).name, ["BTC/USDT"])
        self.partitions = market_partitions(EXCHANGE, "2017-01-01")
        self.manager = QuestDBIOManager(questdb=QuestDBResource.from_connection(connection))

    def _range(self, start_ms: int, end_ms: int, symbol: str) -> Any:
        from dagster import PartitionKeyRange

        from ccxt_questdb_assets.defs.partitions import partition_key

        first = datetime.fromtimestamp(start_ms / 1000, UTC).date()
        last = datetime.fromtimestamp((end_ms - 1) / 1000, UTC).date()
        return PartitionKeyRange(str(partition_key(first, symbol)), str(partition_key(last, symbol)))

    def _output_context(self, table: str, start_ms: int, end_ms: int, symbol: str) -> Any:
        from dagster import build_output_context

        from ccxt_questdb_assets.defs.io_manager import series_metadata
        from ccxt_questdb_assets.storage.series_table import SeriesTable

        return build_output_context(
            asset_key="bench_ohlcv",
            definition_metadata=series_metadata(SeriesTable(table, "ohlcv", EXCHANGE, TIMEFRAME)),
            asset_partitions_def=self.partitions,
            asset_partition_key_range=self._range(start_ms, end_ms, symbol),
            instance=self.instance,
        )

    def output_context(self, table: str, frame: pd.DataFrame, symbol: str = "BTC/USDT") -> Any:
        """The context a run hands the IO manager for the days ``frame`` (``ts`` in epoch ms) spans.

        Built by Dagster before the IO manager is called, so it is not part of what is timed."""
        start, end = int(frame["ts"].iloc[0]), int(frame["ts"].iloc[-1]) + 60_000
        return self._output_context(table, start, end, symbol)

    def handle_output(self, context: Any, frame: pd.DataFrame) -> dict[str, Any]:
        """Store ``frame`` through the IO manager; returns the output metadata."""
        self.manager.handle_output(context, frame)
        return {k: getattr(v, "value", v) for k, v in context.get_logged_metadata().items()}

    def load_input(self, table: str, start_ms: int, end_ms: int, symbol: str = "BTC/USDT") -> pd.DataFrame:
        """The rows of the whole days over ``[start_ms, end_ms)``, as a downstream asset gets them."""
        from dagster import build_input_context

        upstream = self._output_context(table, start_ms, end_ms, symbol)
        context = build_input_context(
            upstream_output=upstream,
            asset_key="bench_downstream",
            asset_partitions_def=self.partitions,
            instance=self.instance,
            asset_partition_key_range=self._range(start_ms, end_ms, symbol),
        )
        return self.manager.load_input(context)

    def close(self) -> None:
        self.instance.dispose()

"""Asset checks on every candle asset (ingested and derived), one evaluation per partition.

The checks are ``check_specs`` of their asset, evaluated in the asset's own step right after the
IO manager has stored the partitions and made them visible: no extra process per check, and the
asset and its checks run as one unit. A run of many partitions (a backfill range) records one
evaluation per date x symbol partition (a symbol's day, or month with the month grain), each
against that partition's own materialization, so the UI's partition view shows every partition
checked. When only checks are selected (the UI's
"Execute checks"), the asset is not materialized and each partition is checked against its latest
materialization.

Blocking (a failure fails the asset's step, which stops downstream assets of the same run, e.g.
the resampled candles):

* ``no_gaps``: every closed bar of the window that the series' coverage claims, and does not
  know to be empty (an outage, before listing), is stored as a closed row. Closed time that
  coverage does not claim is reported (``uncovered_closed_bars``, ``first_uncovered``) without
  failing: the partition is not fully materialized yet, which is a matter for the refresh.
* ``unique_increasing_timestamps``: as many distinct timestamps as rows per series and window
  (rows come back in timestamp order, so unique means strictly increasing), and every timestamp
  on the timeframe's bar grid.
* ``ohlc_sanity``: no row with high < max(open, close), low > min(open, close), high < low,
  volume < 0, or a NaN/NULL value. QuestDB compares doubles with a tolerance of about 1e-10.

Not blocking: ``agrees_with_exchange_candles`` on ``{exchange}/ohlcv/trade_bars_1m``: on the minutes
both hold, the bars built from trades equal the exchange's 1m candles (open, high, low, close
exactly, volume within 1e-9 relative).

Partitioned asset checks are a preview feature of Dagster 1.13 (docs/dagster.md says why the
project uses them). This module declares them; ``check_evaluations`` evaluates them, loaded by
the first evaluation so that definitions load without the storage engine (the SQL lives in
``storage.quality``, the evaluations choose series, windows and metadata).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Output,
    PartitionsDefinition,
)

from ccxt_questdb_assets.core.coverage import EmptyRecheckPolicy
from ccxt_questdb_assets.core.long_lived import import_long_lived
from ccxt_questdb_assets.defs.asset_options import chosen_features
from ccxt_questdb_assets.defs.check_names import (
    AGREES_WITH_EXCHANGE,
    NO_GAPS,
    OHLC_SANITY,
    UNIQUE_TIMESTAMPS,
    VOLUME_REL_TOL,
)
from ccxt_questdb_assets.defs.partitions import Grain
from ccxt_questdb_assets.storage.series_table import SeriesTable

if TYPE_CHECKING:
    from ccxt_questdb_assets.storage.client import QuestDBClient


@dataclass(frozen=True)
class CandleChecks:
    """The checks of one candle asset: their specs, and their evaluation per partition.

    ``exchange_candles`` (trade bars only): the exchange's own 1m candle asset and table, which
    the bars built from trades must agree with.
    """

    asset_key: AssetKey
    table: SeriesTable
    policy: EmptyRecheckPolicy
    partitions_def: PartitionsDefinition
    exchange_candles: tuple[AssetKey, SeriesTable] | None = None

    def specs(self) -> list[AssetCheckSpec]:
        out = [
            self._spec(
                NO_GAPS,
                True,
                "Every closed bar the series' coverage claims, and does not know to be empty, "
                "is stored (missing bars fail); closed time coverage does not claim is "
                "reported.",
            ),
            self._spec(
                UNIQUE_TIMESTAMPS,
                True,
                "One row per bar: as many distinct timestamps as rows "
                "per series and window, every timestamp on the bar "
                "grid.",
            ),
            self._spec(
                OHLC_SANITY,
                True,
                "No bar with high < max(open, close), low > min(open, close), high < low, volume < 0, or a NaN.",
            ),
        ]
        if self.exchange_candles is not None:
            key, _ = self.exchange_candles
            out.append(
                self._spec(
                    AGREES_WITH_EXCHANGE,
                    False,
                    f"On the minutes both hold, bars built from trades equal the exchange's 1m candles "
                    f"(`{key.to_user_string()}`): open, high, low, close exactly, volume within "
                    f"{VOLUME_REL_TOL:g} relative.",
                    additional_deps=[key],
                )
            )
        return out

    def _spec(self, name: str, blocking: bool, description: str, **kwargs) -> AssetCheckSpec:
        with chosen_features():  # partitioned checks: a deliberate preview feature (docs/dagster.md)
            return AssetCheckSpec(
                name,
                asset=self.asset_key,
                blocking=blocking,
                description=description,
                partitions_def=self.partitions_def,
                **kwargs,
            )

    @property
    def grain(self) -> Grain:
        return Grain.of(self.partitions_def)

    def evaluate(
        self, context: AssetExecutionContext, client: QuestDBClient
    ) -> Iterator[AssetCheckEvaluation | Output]:
        """One evaluation per selected check and partition of the run, then each check's output.

        Called after the asset's own materializations were recorded (or, checks alone, against
        each partition's latest materialization)."""
        evaluate = import_long_lived("ccxt_questdb_assets.defs.check_evaluations").evaluate
        candles = self.exchange_candles[1] if self.exchange_candles else None
        return evaluate(
            context, client, self.asset_key, self.specs(), self.grain, self.table, self.policy, exchange_candles=candles
        )

"""A computed series: what a derived asset declares, and its run computes."""

from __future__ import annotations

from dataclasses import dataclass

from ccxt_questdb_assets.core.coverage import EmptyRecheckPolicy
from ccxt_questdb_assets.storage.series_table import SeriesTable


@dataclass(frozen=True)
class Derivation:
    """A computed series: ``target`` written from ``source`` (candles resampled, or trades made
    into bars) wherever ``source``'s coverage (read with ``policy``) claims the bars."""

    source: SeriesTable
    target: SeriesTable
    policy: EmptyRecheckPolicy

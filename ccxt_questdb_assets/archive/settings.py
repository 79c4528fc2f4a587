"""Where an exchange's public archive is and how far behind it runs: a value the configuration
builds at load, kept apart from the source that reads the archive (and its HTTP client)."""

from __future__ import annotations

from dataclasses import dataclass

from ccxt_questdb_assets.archive.layout import DAILY_LAG_MS, MONTHLY_LAG_MS

__all__ = ["ArchiveSettings"]


@dataclass(frozen=True)
class ArchiveSettings:
    """Where the archive is and how far behind it runs."""

    base_url: str = "https://data.binance.vision"
    daily_lag_ms: int = DAILY_LAG_MS
    monthly_lag_ms: int = MONTHLY_LAG_MS
    prefetch: int = 4

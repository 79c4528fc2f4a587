"""``archive``: the from_config section that reads closed history from the exchange's public archive."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from ccxt_questdb_assets.archive.layout import MONTHLY_LAG_MS
from ccxt_questdb_assets.archive.settings import ArchiveSettings
from ccxt_questdb_assets.core.config_model import ConfigModel, Number, Whole

Hours = Annotated[Number, Field(ge=0)]


class ArchiveOptions(ConfigModel):
    """Read closed history older than the archive's lag from its zip files (``archive: true`` takes
    every default); the rest, and any file it lacks, through the REST API."""

    section_name = "archive"

    base_url: str = Field(
        default="https://data.binance.vision", description="The archive's root (the emulator's URL in tests)."
    )
    daily_lag_h: Hours = Field(default=24, description="A day's file is read once this many hours have passed.")
    monthly_lag_h: Hours = Field(
        default=MONTHLY_LAG_MS / 3_600_000, description="A month's file is read once this many hours have passed."
    )
    prefetch: Annotated[Whole, Field(ge=1, le=64)] = Field(default=4, description="Files read ahead of the writer.")

    @model_validator(mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        return {} if value is True else value

    def settings(self) -> ArchiveSettings:
        return ArchiveSettings(
            base_url=self.base_url.rstrip("/"),
            daily_lag_ms=int(self.daily_lag_h * 3_600_000),
            monthly_lag_ms=int(self.monthly_lag_h * 3_600_000),
            prefetch=self.prefetch,
        )


__all__ = ["ArchiveOptions"]

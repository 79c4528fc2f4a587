"""The project file's options as typed models: each key, its type, default and description, and
the message that names a wrong value and its fix (``ConfigModel``). ``project_config`` loads a file
into them; ``exchange_project`` derives each exchange's part from them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any

from dagster._utils.schedules import is_valid_cron_string
from pydantic import Field, StrictBool, field_validator, model_validator

from ccxt_questdb_assets.core.config_model import ConfigModel, Whole, invalid
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.defs.partitions import DAGSTER_PARTITIONS_PER_ASSET, Grain
from ccxt_questdb_assets.history.options import FetchOptions, ResourceOptions

DEFAULT_REFRESH_CRON = "*/5 * * * *"
_EXCHANGE_ID = re.compile(r"^[a-z][a-z0-9]*$")


_GRAIN_FIX = "must be 'day' or 'month' (month for candles at a desk's scale: docs/dagster.md)"


def _grain(value: Any) -> Any:
    if value is None or isinstance(value, Grain):
        return value
    if not isinstance(value, str) or value not in {g.value for g in Grain}:
        raise invalid(_GRAIN_FIX)
    return Grain(value)


class PartitionGrains(ConfigModel):
    """``exchanges.<id>.partitions``: an exchange's time grain per data type, over the top's.

    Derived assets take their upstream's grain: resampled candles the candles', trade bars the
    trades'. A bare grain (``partitions: month``) sets every data type."""

    ohlcv: Grain | None = Field(default=None, description="Grain of the candle assets and those resampled from them.")
    trades: Grain | None = Field(default=None, description="Grain of the trades asset and the bars built from it.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str):
            return {"ohlcv": value, "trades": value}
        return value

    @field_validator("ohlcv", "trades", mode="before")
    @classmethod
    def _grains(cls, value: Any) -> Any:
        return _grain(value)


class PartitionsOptions(PartitionGrains):
    """``partitions``: the time grain per data type, and the most partitions an asset may have."""

    ohlcv: Grain | None = Field(
        default=Grain.DAY, description="Grain of the candle assets and those resampled from them: day or month."
    )
    trades: Grain | None = Field(
        default=Grain.DAY, description="Grain of the trades asset and the bars built from it: day or month."
    )
    max_per_asset: Annotated[Whole, Field(ge=1)] = Field(
        default=DAGSTER_PARTITIONS_PER_ASSET,
        description="A project whose configured symbols x periods since start_date exceed this for some asset "
        "is refused at load (Dagster recommends at most 100,000 partitions per asset).",
    )


class ExchangeSection(FetchOptions):
    """``exchanges.<id>``: one exchange's symbols and assets; fetch keys here override the top's."""

    symbols: list[str] | None = Field(default=None, description="ccxt symbols, e.g. [BTC/USDT].")
    timeframe: str | None = Field(default=None, description="One candle timeframe (or timeframes).")
    trades: StrictBool = Field(default=False, description="A trades asset for this exchange.")
    resample_to: list[str] = Field(
        default_factory=list, description="Candles computed in QuestDB from the first timeframe, e.g. [1h]."
    )
    listing_pattern: str | None = Field(
        default=None, description="The new-listings sensor adds the markets matching this glob, e.g. '*/USDT'."
    )
    partitions: PartitionGrains = Field(
        default_factory=PartitionGrains, description="This exchange's time grain per data type, over the top's."
    )

    @field_validator("resample_to", mode="before")
    @classmethod
    def _resample_to(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise invalid("must be a list of timeframes such as [1h]")
        return [Timeframe.parse(tf).name for tf in value]

    @field_validator("listing_pattern", mode="before")
    @classmethod
    def _pattern(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise invalid("must be a glob such as '*/USDT'")
        return value


class AlertOptions(ConfigModel):
    """``alerts``: where failures are posted."""

    webhook_url_env: str | None = Field(
        default=None, description="Environment variable holding the webhook URL failures are posted to."
    )


class RefreshSettings(ConfigModel):
    """The refresh schedule: when it ticks (a UTC cron) and whether it starts running."""

    cron: str = Field(default=DEFAULT_REFRESH_CRON, description="When the refresh schedule ticks (UTC cron).")
    running: StrictBool = Field(default=False, description="Whether the schedule starts running.")

    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: Any) -> Any:
        if not isinstance(value, str) or not is_valid_cron_string(value):
            raise invalid("is not a cron expression; e.g. '*/5 * * * *' (every 5 minutes, UTC)")
        return value


class ProjectOptions(FetchOptions, ResourceOptions):
    """The project file: shared keys at the top, one section per exchange."""

    start_date: str = Field(
        default="2024-01-01", description="The first partition is the day (or month) holding this date (UTC)."
    )
    partitions: PartitionsOptions = Field(
        default_factory=PartitionsOptions,
        description="Time grain per data type (day or month) and the partitions budget per asset.",
        examples=[{"ohlcv": "month", "trades": "month"}],
    )
    exchanges: dict[str, ExchangeSection] = Field(
        description="One section per ccxt exchange id.", examples=[{"binance": {"symbols": ["BTC/USDT"]}}]
    )
    alerts: AlertOptions = Field(default_factory=AlertOptions, description="Where failures are posted.")
    refresh: RefreshSettings = Field(default_factory=RefreshSettings, description="The refresh schedule.")

    @field_validator("start_date", mode="before")
    @classmethod
    def _start_date(cls, value: Any) -> str:
        text = value.isoformat() if isinstance(value, date) else str(value)
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise invalid("must be a date like '2024-01-01'") from None

    @field_validator("exchanges", mode="before")
    @classmethod
    def _exchanges(cls, value: Any) -> Any:
        if not isinstance(value, Mapping) or not value:
            raise invalid("must name at least one exchange, e.g. exchanges: {binance: {symbols: [BTC/USDT]}}")
        for ex_id in value:
            if not isinstance(ex_id, str) or not _EXCHANGE_ID.match(ex_id):
                raise ConfigError(f"exchange id {ex_id!r} must be a lowercase ccxt id such as 'binance'")
        return {ex_id: {} if section is None else section for ex_id, section in value.items()}

    @field_validator("alerts", "refresh", mode="before")
    @classmethod
    def _absent(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("partitions", mode="before")
    @classmethod
    def _top_partitions(cls, value: Any) -> Any:
        return {} if value is None else value

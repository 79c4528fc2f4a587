"""The ``from_config`` mapping as typed models, every key documented and checked when parsed.

``FetchOptions`` are the keys that say how one exchange is paged (a project file may give them at
the top, for every exchange, or per exchange); ``ResourceOptions`` the shared QuestDB and rate
limiter; ``ProviderOptions`` the whole mapping ``CcxtQuestDBProvider.from_config`` takes. An unknown
or misspelt key is a ``ConfigError`` naming it, the closest valid key and all of them.
"""

from __future__ import annotations

import difflib
from functools import cached_property
from typing import Annotated, Any

from pydantic import Field, StrictBool, field_validator, model_validator

from ccxt_questdb_assets.archive.options import ArchiveOptions
from ccxt_questdb_assets.core.ccxt_modules import exchange_ids
from ccxt_questdb_assets.core.config_model import ConfigModel, Number, Whole, invalid
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import Mode, parse_mode
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.ratelimit import RateLimiterOptions

Seconds = Annotated[Number, Field(ge=0)]
Milliseconds = Annotated[Whole, Field(ge=0)]


def _names(value: Any, *, example: str) -> Any:
    """A non-empty list of non-empty strings, each once."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise invalid(f"must be a non-empty list such as {example}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise invalid(f"must list non-empty strings such as {example}; {item!r} is not one")
    if len(set(value)) != len(value):
        raise invalid("lists a value twice")
    return list(value)


class FetchOptions(ConfigModel):
    """How one exchange is paged: the keys a project gives at the top or per exchange."""

    timeframes: list[str] | None = Field(default=None, description="Candle timeframes, e.g. [1m, 1h].")
    max_retries: Annotated[Whole, Field(ge=0)] = Field(
        default=3, description="Retries of a failed request after the first attempt."
    )
    retry_backoff_s: Annotated[Number, Field(ge=0, le=3600)] = Field(
        default=0.5, description="First retry's backoff in seconds (doubled each retry, jittered)."
    )
    window_size: Annotated[Whole, Field(ge=1, le=100_000)] = Field(
        default=1000, description="Rows asked per request (capped by the exchange's own page limit)."
    )
    base_url: str | None = Field(default=None, description="The exchange's API root (an emulator, a proxy).")
    ccxt_options: dict[str, Any] = Field(default_factory=dict, description="ccxt exchange options.")
    timeout_ms: Annotated[Whole, Field(gt=0)] = Field(default=10_000, description="Request timeout.")
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key.")
    secret_env: str | None = Field(default=None, description="Environment variable holding the API secret.")
    final_lag_ms: Milliseconds = Field(default=2_000, description="A bar counts as final this long after it closed.")
    empty_recheck_after_s: Seconds = Field(default=15 * 60, description="Recheck a recent empty window after this.")
    empty_recent_s: Seconds = Field(default=6 * 3600, description="Empty windows this recent are rechecked.")
    archive: ArchiveOptions | None = Field(
        default=None,
        description="Closed history from the exchange's public archive (binance, binanceusdm): true or settings.",
    )
    allow_unproven_exchange: StrictBool = Field(
        default=False, description="Page an exchange whose dialect this project has not proven exact."
    )

    @field_validator("timeframes", mode="before")
    @classmethod
    def _timeframes(cls, value: Any) -> Any:
        names = _names(value, example="['1m', '1h']")
        return None if names is None else [Timeframe.parse(v).name for v in names]

    @field_validator("archive", mode="before")
    @classmethod
    def _archive(cls, value: Any) -> Any:
        return None if value is False else value

    @field_validator("base_url", "api_key_env", "secret_env", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise invalid("must be a string")
        return value

    def fetch_given(self) -> dict[str, Any]:
        """The fetch keys this section sets explicitly (a project's per-exchange override)."""
        return {name: getattr(self, name) for name in FetchOptions.model_fields if name in self.model_fields_set}


class ResourceOptions(ConfigModel):
    """The shared QuestDB and rate limiter (set once, at the top of a project file)."""

    questdb: dict[str, Any] = Field(
        default_factory=dict,
        description="Where QuestDB is (dsn, or host/port/http_port/...) and table or table_prefix; "
        "the password comes from CCXT_QUESTDB_PASSWORD.",
    )
    rate_limiter: RateLimiterOptions = Field(
        default_factory=RateLimiterOptions, description="How requests are paced (docs/rate-limiting.md)."
    )
    connectors: dict[str, Any] = Field(
        default_factory=dict, description="The spec's connectors; ccxt_rate_limiter_redis is the cluster DSN."
    )

    @field_validator("questdb", mode="before")
    @classmethod
    def _questdb(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise invalid("must be a mapping, e.g. {'dsn': 'postgresql://localhost:8812/qdb', 'table': 'crypto_ohlcv'}")
        return value

    @field_validator("rate_limiter", "connectors", mode="before")
    @classmethod
    def _absent(cls, value: Any) -> Any:
        return {} if value is None else value


class ProviderOptions(FetchOptions, ResourceOptions):
    """``CcxtQuestDBProvider.from_config``'s mapping: one exchange, its symbols, one mode."""

    section_name = "the provider config"

    mode: Mode = Field(default="ohlcv", description="ohlcv (candles) or trades.")
    exchange: str | None = Field(default=None, description="A ccxt exchange id, e.g. binance.", examples=["binance"])
    exchange_id: str | None = Field(default=None, description="Alias of exchange (the spec's name).")
    symbols: list[str] | None = Field(default=None, description="ccxt symbols, e.g. [BTC/USDT].")
    timeframe: str | None = Field(default=None, description="One candle timeframe (or timeframes).")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Mode:
        return parse_mode(value)

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value: Any) -> Any:
        return _names(value, example="['BTC/USDT']")

    @field_validator("exchange", "exchange_id", "timeframe", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise invalid("must be a non-empty string")
        return value

    @model_validator(mode="after")
    def _whole(self) -> ProviderOptions:
        self.exchange_name  # noqa: B018 - checks it
        if self.symbols is None:
            raise ConfigError("the config needs symbols, e.g. 'symbols': ['BTC/USDT']")
        self.timeframe_names  # noqa: B018 - checks them
        return self

    @cached_property
    def exchange_name(self) -> str:
        """``exchange`` (or its alias ``exchange_id``), a ccxt exchange id."""
        exchange, alias = self.exchange, self.exchange_id
        if exchange is not None and alias is not None and exchange != alias:
            raise ConfigError(f"exchange {exchange!r} and exchange_id {alias!r} disagree; set only one")
        value = exchange if exchange is not None else alias
        if value is None:
            raise ConfigError("the config needs an exchange, e.g. 'exchange': 'binance'")
        known = exchange_ids()
        if value not in known:
            close = difflib.get_close_matches(value.lower(), known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"exchange {value!r} is not a ccxt exchange id{hint}")
        return value

    @cached_property
    def timeframe_names(self) -> tuple[str, ...]:
        """The candle timeframes (``timeframes``, else ``timeframe``, else 1m); none for trades."""
        single, many = self.timeframe, self.timeframes
        if self.mode == "trades":
            if single is not None or many is not None:
                raise ConfigError("trades mode has no timeframe: remove 'timeframe'/'timeframes'")
            return ()
        if many is not None:
            if single is not None and Timeframe.parse(single).name not in many:
                raise ConfigError(f"timeframe {single!r} is not among timeframes {many!r}; set only one")
            return tuple(many)
        return (Timeframe.parse(single or "1m").name,)

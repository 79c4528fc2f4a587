"""The project config file: which exchanges, symbols and timeframes become assets.

One YAML file drives the Dagster project. Its keys are ``from_config``'s keys (shared ones at the
top, per-exchange ones under ``exchanges.<id>``) plus a few that only make sense for assets::

    start_date: "2024-01-01"          # the first partition is the day (or month) holding it (UTC)
    partitions: {ohlcv: day, trades: day}   # the time grain per data type: day (default) or month
    questdb: {table_prefix: crypto}   # from_config's questdb keys; password: $CCXT_QUESTDB_PASSWORD
    rate_limiter: {scope: cluster, min_interval_s: 1.2, burst: 1}
    alerts: {webhook_url_env: CCXT_QUESTDB_ALERT_WEBHOOK}
    refresh: {cron: "*/5 * * * *", running: true}   # the refresh schedule (UTC cron, default status)
    exchanges:
      binance:
        symbols: [BTC/USDT, ETH/USDT]
        timeframes: [1m]
        trades: true                  # a trades asset for this exchange
        resample_to: [1h]             # candles computed in QuestDB from the first timeframe
        listing_pattern: "*/USDT"     # the new-listings sensor adds matching markets
        partitions: {trades: month}   # this exchange's grains, over the top's

At a desk's scale the grain matters: Dagster handles up to about 100,000 partitions per asset
well, and an asset has symbols x periods since ``start_date`` of them. A project over that budget
is refused at load (``partition_budget``), naming the asset, its count and the fix.

String values may name environment variables as ``${NAME}`` or ``${NAME:-default}``; secrets are
never values here (credentials are read from the variables ``api_key_env``/``secret_env`` name).
The file is ``$CCXT_QUESTDB_PROJECT`` if set, else the embedded default (the local emulator).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import yaml
from dagster._utils.schedules import is_valid_cron_string
from pydantic import Field, StrictBool, field_validator, model_validator

from ccxt_questdb_assets.core.config_model import ConfigModel, Whole, invalid
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import OHLCV, TRADES, Mode
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.defs.partitions import DAGSTER_PARTITIONS_PER_ASSET, Grain, check_symbol_key
from ccxt_questdb_assets.exchange.dialects import CandlePaging, TradePaging
from ccxt_questdb_assets.history.config import ProviderConfig
from ccxt_questdb_assets.history.options import FetchOptions, ProviderOptions, ResourceOptions
from ccxt_questdb_assets.storage.connection import QuestDBConnection

ENV_PROJECT = "CCXT_QUESTDB_PROJECT"
DEFAULT_PROJECT_FILE = Path(__file__).with_name("default_project.yaml")
DEFAULT_REFRESH_CRON = "*/5 * * * *"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_EXCHANGE_ID = re.compile(r"^[a-z][a-z0-9]*$")


def expand_env(value: Any, environ: Mapping[str, str], where: str = "config") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of ``value``."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{where} refers to ${{{name}}}, which is not set: export {name} or give a default "
                f"as ${{{name}:-value}}"
            )

        return _ENV_REF.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: expand_env(v, environ, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ, where) for v in value]
    return value


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


@dataclass(frozen=True)
class ExchangeProject:
    """One exchange's part of the project: its provider configs and asset options."""

    exchange_id: str
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    trades: bool
    resample_to: tuple[str, ...]
    listing_pattern: str | None
    ohlcv: ProviderConfig
    trades_config: ProviderConfig | None
    ohlcv_grain: Grain = Grain.DAY
    trades_grain: Grain = Grain.DAY

    def grain(self, mode: Mode) -> Grain:
        """The time grain of ``mode``'s assets (and of those computed from them)."""
        return self.trades_grain if mode == TRADES else self.ohlcv_grain

    def provider_config(self, mode: Mode, *, timeframe: str | None = None) -> ProviderConfig:
        """The engine config of one asset (one mode, one timeframe), derived without parsing again."""
        if mode == TRADES:
            if self.trades_config is None:
                raise ConfigError(f"exchange {self.exchange_id!r} has no trades asset: set trades: true")
            return self.trades_config
        tf = timeframe or self.timeframes[0]
        return replace(self.ohlcv, timeframes=(tf,), backfill=replace(self.ohlcv.backfill, timeframe=tf))


@dataclass(frozen=True)
class ProjectConfig:
    """The parsed project file (``options``) and each exchange's part of it."""

    exchanges: tuple[ExchangeProject, ...]
    source: str
    options: ProjectOptions

    @property
    def start_date(self) -> str:
        return self.options.start_date

    @property
    def webhook_url_env(self) -> str | None:
        return self.options.alerts.webhook_url_env

    @property
    def refresh(self) -> RefreshSettings:
        return self.options.refresh

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        require_file: bool = False,
    ) -> ProjectConfig:
        """The project file ``path``, else ``$CCXT_QUESTDB_PROJECT``, else (unless ``require_file``,
        as a deployment asks) the embedded default."""
        environ = os.environ if environ is None else environ
        named = path if path is not None else environ.get(ENV_PROJECT)
        if not named and require_file:
            raise ConfigError(
                f"{ENV_PROJECT} is not set: a deployment loads its exchanges, symbols, QuestDB and rate "
                f"limiter from a project file. Set {ENV_PROJECT} to that YAML file (deploy/project.yaml "
                "is an example); the embedded default (a local exchange emulator) is for the demo and dev"
            )
        chosen = Path(named) if named else DEFAULT_PROJECT_FILE
        try:
            raw = yaml.safe_load(chosen.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"project config {str(chosen)!r} does not exist: set {ENV_PROJECT} to a YAML file"
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"project config {str(chosen)!r} is not valid YAML: {exc}") from None
        return cls.from_mapping(raw, environ=environ, source=str(chosen))

    @classmethod
    def from_mapping(
        cls, raw: Any, *, environ: Mapping[str, str] | None = None, source: str = "<mapping>"
    ) -> ProjectConfig:
        environ = os.environ if environ is None else environ
        where = f"project config {source}"
        if isinstance(raw, Mapping):
            raw = expand_env(raw, environ, where)
        options = ProjectOptions.parse(raw, where=where)
        exchanges = tuple(
            _exchange(ex_id, section, options, environ, where) for ex_id, section in options.exchanges.items()
        )
        project = cls(exchanges, source, options)
        from ccxt_questdb_assets.defs.partition_budget import check_budget  # it reads ExchangeProject

        check_budget(project)
        return project

    @property
    def max_partitions_per_asset(self) -> int:
        return self.options.partitions.max_per_asset

    @property
    def connection(self) -> QuestDBConnection:
        """The QuestDB every exchange writes to: ``questdb`` is set once, at the top of the file, so
        every exchange's configs carry the same connection."""
        return self.exchanges[0].ohlcv.connection

    @property
    def limiter_options(self) -> dict[str, Any]:
        """The shared rate limiter's options (``rate_limiter`` at the top), its Redis DSN from
        ``connectors.ccxt_rate_limiter_redis`` when the options give none."""
        options = self.options.rate_limiter.model_dump(exclude_unset=True)
        redis = self.options.connectors.get("ccxt_rate_limiter_redis")
        if "redis_dsn" not in options and redis:
            options["redis_dsn"] = redis
        return options

    def exchange(self, exchange_id: str) -> ExchangeProject:
        for ex in self.exchanges:
            if ex.exchange_id == exchange_id:
                return ex
        raise ConfigError(
            f"exchange {exchange_id!r} is not in the project config; configured: "
            f"{', '.join(e.exchange_id for e in self.exchanges)}"
        )


def _candle_timeframes(
    ex_id: str, section: ExchangeSection, ohlcv: ProviderConfig, trades: bool, where: str
) -> tuple[str, ...]:
    """The timeframes that become candle assets. An exchange serving only its latest candles (kraken:
    720 bars) cannot fill daily partitions of any age: it gets none, and its 1m bars come from its
    trades (``trade_bars_1m``), which it keeps in full."""
    dialect = ohlcv.backfill.dialect
    if dialect.candles is not CandlePaging.LATEST_ONLY:
        return ohlcv.timeframes
    if section.timeframes is not None or section.timeframe is not None:
        raise ConfigError(
            f"{where} exchanges.{ex_id}.timeframes: {dialect.limits}. Daily partitions reach "
            f"further back, so {ex_id} has no candle asset: remove timeframes (and set trades: true)"
        )
    if not trades:
        raise ConfigError(
            f"{where} exchanges.{ex_id}: {dialect.limits}. Set trades: true: {ex_id} then gets "
            f"its trades and {ex_id}/ohlcv/trade_bars_1m"
        )
    return ()


def _provider_options(
    ex_id: str, section: ExchangeSection, top: ProjectOptions, mode: Mode, where: str
) -> ProviderOptions:
    """One exchange's ``from_config`` options: the top's fetch keys, the section's over them."""
    fetch = {**top.fetch_given(), **section.fetch_given()}
    if mode == TRADES:
        fetch.pop("timeframes", None)
        timeframe = None
    else:
        timeframe = section.timeframe
        if timeframe is None and "timeframes" not in fetch:
            fetch["timeframes"] = ["1m"]
    given = {
        **fetch,
        "mode": mode,
        "exchange": ex_id,
        "symbols": section.symbols,
        "timeframe": timeframe,
        "questdb": top.questdb,
        "rate_limiter": top.rate_limiter,
        "connectors": top.connectors,
    }
    return ProviderOptions.parse(given, where=f"{where} exchanges.{ex_id}")


def _exchange(
    ex_id: str, section: ExchangeSection, top: ProjectOptions, environ: Mapping[str, str], where: str
) -> ExchangeProject:
    ohlcv = ProviderConfig.from_options(_provider_options(ex_id, section, top, OHLCV, where), environ=environ)
    trades = section.trades
    timeframes = _candle_timeframes(ex_id, section, ohlcv, trades, where)
    resample = tuple(section.resample_to)
    if resample and not timeframes:
        raise ConfigError(
            f"{where} exchanges.{ex_id}.resample_to needs candles to compute from, and {ex_id} has "
            "no candle asset: remove resample_to"
        )
    base = Timeframe.parse(ohlcv.timeframes[0])
    for tf in resample:
        if Timeframe.parse(tf).ms <= base.ms or Timeframe.parse(tf).ms % base.ms:
            raise ConfigError(
                f"{where} exchanges.{ex_id}.resample_to {tf!r} must be a multiple of {base.name}, "
                f"the first timeframe it is computed from"
            )
    trades_cfg = None
    if trades:
        options = _provider_options(ex_id, section, top, TRADES, where)
        trades_cfg = ProviderConfig.from_options(options, environ=environ)
        dialect = trades_cfg.backfill.dialect
        if dialect.trades is TradePaging.NONE:
            raise ConfigError(f"{where} exchanges.{ex_id}.trades: {dialect.limits}; set trades: false")
    symbols = tuple(ohlcv.backfill.symbols or ())
    for symbol in symbols:  # each becomes a dynamic partition key
        check_symbol_key(symbol, f"{where} exchanges.{ex_id}.symbols")
    shared, own = top.partitions, section.partitions
    return ExchangeProject(
        exchange_id=ex_id,
        symbols=symbols,
        timeframes=timeframes,
        trades=trades,
        resample_to=resample,
        listing_pattern=section.listing_pattern,
        ohlcv=ohlcv,
        trades_config=trades_cfg,
        ohlcv_grain=own.ohlcv or shared.ohlcv or Grain.DAY,
        trades_grain=own.trades or shared.trades or Grain.DAY,
    )

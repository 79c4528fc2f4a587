"""The project config file: which exchanges, symbols and timeframes become assets.

One YAML file drives the Dagster project. Its keys are ``from_config``'s keys (shared ones at the
top, per-exchange ones under ``exchanges.<id>``) plus a few that only make sense for assets::

    start_date: "2024-01-01"          # first daily partition (UTC)
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

String values may name environment variables as ``${NAME}`` or ``${NAME:-default}``; secrets are
never values here (credentials are read from the variables ``api_key_env``/``secret_env`` name).
The file is ``$CCXT_QUESTDB_PROJECT`` if set, else the embedded default (the local emulator).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from dagster._utils.schedules import is_valid_cron_string

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.defs.partitions import check_symbol_key
from ccxt_questdb_assets.exchange.dialects import CandlePaging, TradePaging
from ccxt_questdb_assets.history.config import TOP_LEVEL_KEYS, ProviderConfig, check_keys
from ccxt_questdb_assets.storage.connection import QuestDBConnection

ENV_PROJECT = "CCXT_QUESTDB_PROJECT"
DEFAULT_PROJECT_FILE = Path(__file__).with_name("default_project.yaml")

#: from_config keys that may be given once at the top and apply to every exchange.
SHARED_KEYS = tuple(k for k in TOP_LEVEL_KEYS if k not in ("mode", "exchange", "exchange_id", "symbols", "timeframe"))
PROJECT_KEYS = ("start_date", "exchanges", "alerts", "refresh", *SHARED_KEYS)
EXCHANGE_ONLY_KEYS = ("trades", "resample_to", "listing_pattern")
#: Set once at the top: they configure the shared QuestDB and rate limiter resources.
RESOURCE_KEYS = ("questdb", "rate_limiter", "connectors")
EXCHANGE_KEYS = (*EXCHANGE_ONLY_KEYS, "symbols", "timeframe", *(k for k in SHARED_KEYS if k not in RESOURCE_KEYS))
ALERT_KEYS = ("webhook_url_env",)
REFRESH_KEYS = ("cron", "running")
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
    mapping: Mapping[str, Any] = field(repr=False)

    def provider_mapping(self, mode: str, *, timeframe: str | None = None) -> dict[str, Any]:
        """The ``from_config`` mapping of one asset (one mode, one timeframe)."""
        out = dict(self.mapping)
        out["mode"] = mode
        out.pop("timeframes", None)
        if mode == "ohlcv":
            out["timeframe"] = timeframe or self.timeframes[0]
        return out


@dataclass(frozen=True)
class RefreshSettings:
    """The refresh schedule: when it ticks (a UTC cron) and whether it starts running."""

    cron: str = DEFAULT_REFRESH_CRON
    running: bool = False

    @classmethod
    def from_mapping(cls, raw: Any, where: str) -> RefreshSettings:
        check_keys(raw, REFRESH_KEYS, where)
        cron = raw.get("cron", DEFAULT_REFRESH_CRON)
        if not isinstance(cron, str) or not is_valid_cron_string(cron):
            raise ConfigError(
                f"{where}.cron {cron!r} is not a cron expression; e.g. '*/5 * * * *' (every 5 minutes, UTC)"
            )
        running = raw.get("running", False)
        if not isinstance(running, bool):
            raise ConfigError(f"{where}.running {running!r} must be true or false")
        return cls(cron, running)


@dataclass(frozen=True)
class ProjectConfig:
    start_date: str
    exchanges: tuple[ExchangeProject, ...]
    webhook_url_env: str | None
    source: str
    refresh: RefreshSettings = field(default_factory=RefreshSettings)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
    ) -> ProjectConfig:
        environ = os.environ if environ is None else environ
        chosen = Path(path) if path is not None else Path(environ.get(ENV_PROJECT) or DEFAULT_PROJECT_FILE)
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
        check_keys(raw, PROJECT_KEYS, where)
        raw = expand_env(raw, environ, where)
        start = _start_date(raw.get("start_date", "2024-01-01"))
        exchanges_raw = raw.get("exchanges")
        if not isinstance(exchanges_raw, Mapping) or not exchanges_raw:
            raise ConfigError(f"{where} needs exchanges, e.g. exchanges: {{binance: {{symbols: [BTC/USDT]}}}}")
        shared = {k: raw[k] for k in SHARED_KEYS if k in raw}
        exchanges = tuple(_exchange(ex_id, section, shared, environ, where) for ex_id, section in exchanges_raw.items())
        alerts = raw.get("alerts") or {}
        check_keys(alerts, ALERT_KEYS, f"{where} alerts")
        refresh = RefreshSettings.from_mapping(raw.get("refresh") or {}, f"{where} refresh")
        return cls(start, exchanges, alerts.get("webhook_url_env"), source, refresh)

    @property
    def connection(self) -> QuestDBConnection:
        """The QuestDB every exchange writes to: ``questdb`` is set once, at the top of the file, so
        every exchange's configs carry the same connection."""
        return self.exchanges[0].ohlcv.connection

    @property
    def limiter_options(self) -> dict[str, Any]:
        """The shared rate limiter's options (``rate_limiter`` at the top), its Redis DSN from
        ``connectors.ccxt_rate_limiter_redis`` when the options give none."""
        shared = self.exchanges[0].mapping  # the top-level keys, the same in every exchange's mapping
        options = dict(shared.get("rate_limiter") or {})
        redis = (shared.get("connectors") or {}).get("ccxt_rate_limiter_redis")
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


def _start_date(value: Any) -> str:
    text = value.isoformat() if isinstance(value, date) else str(value)
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(f"start_date {value!r} must be a date like '2024-01-01'") from None


def _candle_timeframes(
    ex_id: str, section: Mapping[str, Any], ohlcv: ProviderConfig, trades: bool, where: str
) -> tuple[str, ...]:
    """The timeframes that become candle assets. An exchange serving only its latest candles (kraken:
    720 bars) cannot fill daily partitions of any age: it gets none, and its 1m bars come from its
    trades (``trade_bars_1m``), which it keeps in full."""
    dialect = ohlcv.backfill.dialect
    if dialect.candles is not CandlePaging.LATEST_ONLY:
        return ohlcv.timeframes
    if "timeframes" in section or "timeframe" in section:
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


def _exchange(
    ex_id: Any, section: Any, shared: Mapping[str, Any], environ: Mapping[str, str], where: str
) -> ExchangeProject:
    if not isinstance(ex_id, str) or not _EXCHANGE_ID.match(ex_id):
        raise ConfigError(f"{where}: exchange id {ex_id!r} must be a lowercase ccxt id such as 'binance'")
    check_keys(section, EXCHANGE_KEYS, f"{where} exchanges.{ex_id}")
    trades = section.get("trades", False)
    if not isinstance(trades, bool):
        raise ConfigError(f"{where} exchanges.{ex_id}.trades {trades!r} must be true or false")
    mapping: dict[str, Any] = {**shared, **{k: v for k, v in section.items() if k not in EXCHANGE_ONLY_KEYS}}
    mapping["exchange"] = ex_id
    if "timeframes" not in mapping and "timeframe" not in mapping:
        mapping["timeframes"] = ["1m"]
    ohlcv = ProviderConfig.from_mapping({**mapping, "mode": "ohlcv"}, environ=environ)
    timeframes = _candle_timeframes(ex_id, section, ohlcv, trades, where)
    resample = tuple(Timeframe.parse(tf).name for tf in section.get("resample_to") or ())
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
        trade_map = {k: v for k, v in mapping.items() if k not in ("timeframes", "timeframe")}
        trades_cfg = ProviderConfig.from_mapping({**trade_map, "mode": "trades"}, environ=environ)
        dialect = trades_cfg.backfill.dialect
        if dialect.trades is TradePaging.NONE:
            raise ConfigError(f"{where} exchanges.{ex_id}.trades: {dialect.limits}; set trades: false")
    pattern = section.get("listing_pattern")
    if pattern is not None and (not isinstance(pattern, str) or not pattern.strip()):
        raise ConfigError(f"{where} exchanges.{ex_id}.listing_pattern {pattern!r} must be a glob such as '*/USDT'")
    symbols = tuple(ohlcv.backfill.symbols or ())
    for symbol in symbols:  # each becomes a dynamic partition key
        check_symbol_key(symbol, f"{where} exchanges.{ex_id}.symbols")
    return ExchangeProject(
        exchange_id=ex_id,
        symbols=symbols,
        timeframes=timeframes,
        trades=trades,
        resample_to=resample,
        listing_pattern=pattern,
        ohlcv=ohlcv,
        trades_config=trades_cfg,
        mapping=mapping,
    )

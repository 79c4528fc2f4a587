"""The ``from_config`` mapping: every key the spec documents, validated when built.

An unknown or misspelt key raises a ``ConfigError`` that names it, suggests the closest valid
key and lists them all. Secrets are never config values: API credentials come from the
environment variables the config names, the QuestDB password from ``CCXT_QUESTDB_PASSWORD``
(or the DSN).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccxt_questdb_assets.core.coverage import EmptyRecheckPolicy
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import Mode, parse_mode
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.exchange.ids import ccxt_exchange_ids
from ccxt_questdb_assets.ratelimit import RateLimiterConfig
from ccxt_questdb_assets.storage.connection import ENV_PASSWORD, QuestDBConnection
from ccxt_questdb_assets.storage.schema import TableNames

TOP_LEVEL_KEYS = (
    "mode",
    "exchange",
    "exchange_id",
    "symbols",
    "timeframe",
    "timeframes",
    "questdb",
    "rate_limiter",
    "max_retries",
    "retry_backoff_s",
    "window_size",
    "base_url",
    "ccxt_options",
    "timeout_ms",
    "api_key_env",
    "secret_env",
    "final_lag_ms",
    "empty_recheck_after_s",
    "empty_recent_s",
    "connectors",
    "allow_unproven_exchange",
)
QUESTDB_TABLE_KEYS = ("table", "table_prefix")
DEFAULT_DSN = "postgresql://localhost:8812/qdb"
DEFAULT_TABLE_PREFIX = "crypto"


def check_keys(mapping: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(mapping).__name__}")
    for key in mapping:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key {key!r} in {where}{hint}; valid keys: {', '.join(valid)}")


@dataclass(frozen=True)
class ProviderConfig:
    """Everything ``CcxtQuestDBProvider.from_config`` needs, parsed and checked."""

    mode: Mode
    backfill: CcxtBackfillConfig
    timeframes: tuple[str, ...]
    connection: QuestDBConnection
    tables: TableNames
    recheck: EmptyRecheckPolicy

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> ProviderConfig:
        environ = os.environ if environ is None else environ
        check_keys(cfg, TOP_LEVEL_KEYS, "the provider config")
        mode = parse_mode(cfg.get("mode", "ohlcv"))
        exchange = _exchange_id(cfg)
        symbols = _symbols(cfg.get("symbols"))
        timeframes = _timeframes(cfg, mode)

        connectors = cfg.get("connectors") or {}
        if not isinstance(connectors, Mapping):
            raise ConfigError("connectors must be a mapping, e.g. {'ccxt_rate_limiter_redis': 'redis://...'}")
        limiter = RateLimiterConfig.from_mapping(cfg.get("rate_limiter"), connectors=connectors, environ=environ)

        options = cfg.get("ccxt_options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError("ccxt_options must be a mapping of ccxt exchange options")
        backfill = CcxtBackfillConfig(
            exchange_id=exchange,
            symbols=symbols,
            timeframe=timeframes[0] if timeframes else "1m",
            window_size=cfg.get("window_size", 1000),
            max_retries=cfg.get("max_retries", 3),
            retry_backoff_s=cfg.get("retry_backoff_s", 0.5),
            rate_limiter=limiter,
            base_url=cfg.get("base_url"),
            ccxt_options=dict(options),
            timeout_ms=cfg.get("timeout_ms", 10_000),
            api_key_env=cfg.get("api_key_env"),
            secret_env=cfg.get("secret_env"),
            final_lag_ms=cfg.get("final_lag_ms", 2_000),
            allow_unproven_exchange=cfg.get("allow_unproven_exchange", False),
        )
        connection, tables = _questdb(cfg.get("questdb") or {}, mode, environ)
        recheck = EmptyRecheckPolicy(
            recent_ms=int(_seconds(cfg, "empty_recent_s", 6 * 3600) * 1000),
            recheck_after_ms=int(_seconds(cfg, "empty_recheck_after_s", 15 * 60) * 1000),
        )
        return cls(mode, backfill, timeframes, connection, tables, recheck)


def _exchange_id(cfg: Mapping[str, Any]) -> str:
    exchange, exchange_id = cfg.get("exchange"), cfg.get("exchange_id")
    if exchange is not None and exchange_id is not None and exchange != exchange_id:
        raise ConfigError(f"exchange {exchange!r} and exchange_id {exchange_id!r} disagree; set only one")
    value = exchange if exchange is not None else exchange_id
    if value is None:
        raise ConfigError("the config needs an exchange, e.g. 'exchange': 'binance'")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"exchange {value!r} must be a ccxt exchange id such as 'binance'")
    known = ccxt_exchange_ids()
    if value not in known:
        close = difflib.get_close_matches(value.lower(), known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"exchange {value!r} is not a ccxt exchange id{hint}")
    return value


def _symbols(raw: Any) -> list[str]:
    if raw is None:
        raise ConfigError("the config needs symbols, e.g. 'symbols': ['BTC/USDT']")
    if isinstance(raw, str) or not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(f"symbols {raw!r} must be a non-empty list such as ['BTC/USDT']")
    for s in raw:
        if not isinstance(s, str) or not s.strip():
            raise ConfigError(f"symbol {s!r} must be a ccxt symbol such as 'BTC/USDT'")
    if len(set(raw)) != len(raw):
        raise ConfigError(f"symbols {list(raw)!r} lists a symbol twice")
    return list(raw)


def _timeframes(cfg: Mapping[str, Any], mode: Mode) -> tuple[str, ...]:
    single, many = cfg.get("timeframe"), cfg.get("timeframes")
    if mode == "trades":
        if single is not None or many is not None:
            raise ConfigError("trades mode has no timeframe: remove 'timeframe'/'timeframes'")
        return ()
    if many is not None and (not isinstance(many, (list, tuple)) or not many):
        raise ConfigError(f"timeframes {many!r} must be a non-empty list such as ['1m', '1h']")
    values = list(many) if many is not None else [single or "1m"]
    if single is not None and many is not None and single not in many:
        raise ConfigError(f"timeframe {single!r} is not among timeframes {list(many)!r}; set only one")
    return tuple(Timeframe.parse(v).name for v in values)


def _seconds(cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{key} {value!r} must be a number of seconds >= 0")
    return float(value)


def _questdb(q: Mapping[str, Any], mode: Mode, environ: Mapping[str, str]) -> tuple[QuestDBConnection, TableNames]:
    if not isinstance(q, Mapping):
        raise ConfigError(
            "questdb must be a mapping, e.g. {'dsn': 'postgresql://localhost:8812/qdb', 'table': 'crypto_ohlcv'}"
        )
    if "password" in q:
        raise ConfigError(
            f"questdb.password is not accepted in config (secrets stay out of config): set {ENV_PASSWORD} "
            "in the environment instead"
        )
    table, prefix = q.get("table"), q.get("table_prefix")
    if table is not None and prefix is not None:
        raise ConfigError("questdb: give either table or table_prefix, not both")
    tables = (
        TableNames.for_data_table(table)
        if table is not None
        else TableNames.from_prefix(prefix or DEFAULT_TABLE_PREFIX, mode)
    )
    settings = {k: v for k, v in q.items() if k not in QUESTDB_TABLE_KEYS}
    if not any(k in settings for k in ("dsn", "host", "port", "database", "user")):
        settings["dsn"] = DEFAULT_DSN
    if environ.get(ENV_PASSWORD):
        settings["password"] = environ[ENV_PASSWORD]
    return QuestDBConnection.from_mapping(settings), tables

"""ProviderConfig: what ``CcxtQuestDBProvider.from_config`` builds from its parsed mapping.

The mapping is parsed once, by ``ProviderOptions`` (history/options.py: every key typed and
documented, an unknown key named with the closest valid one); this module turns the options into the
engine's value objects. Secrets are never config values: API credentials come from the environment
variables the config names, the QuestDB password from ``CCXT_QUESTDB_PASSWORD`` (or the DSN).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccxt_questdb_assets.core.coverage import EmptyRecheckPolicy
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.node_ids import Mode
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.history.options import ProviderOptions
from ccxt_questdb_assets.ratelimit import RateLimiterConfig
from ccxt_questdb_assets.storage.connection import ENV_PASSWORD, QuestDBConnection
from ccxt_questdb_assets.storage.schema import TableNames

#: Every key ``from_config`` accepts.
TOP_LEVEL_KEYS = tuple(ProviderOptions.model_fields)
QUESTDB_TABLE_KEYS = ("table", "table_prefix")
DEFAULT_DSN = "postgresql://localhost:8812/qdb"
DEFAULT_TABLE_PREFIX = "crypto"


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
        """Parse and check the spec's mapping."""
        return cls.from_options(ProviderOptions.parse(cfg), environ=environ)

    @classmethod
    def from_options(cls, options: ProviderOptions, *, environ: Mapping[str, str] | None = None) -> ProviderConfig:
        """The engine's config of parsed options (the Redis DSN and QuestDB password from ``environ``)."""
        environ = os.environ if environ is None else environ
        limiter = RateLimiterConfig.from_options(options.rate_limiter, connectors=options.connectors, environ=environ)
        timeframes = options.timeframe_names
        backfill = CcxtBackfillConfig(
            exchange_id=options.exchange_name,
            symbols=list(options.symbols or ()),
            timeframe=timeframes[0] if timeframes else "1m",
            window_size=options.window_size,
            max_retries=options.max_retries,
            retry_backoff_s=options.retry_backoff_s,
            rate_limiter=limiter,
            base_url=options.base_url,
            ccxt_options=dict(options.ccxt_options),
            timeout_ms=options.timeout_ms,
            api_key_env=options.api_key_env,
            secret_env=options.secret_env,
            final_lag_ms=options.final_lag_ms,
            allow_unproven_exchange=options.allow_unproven_exchange,
            archive=options.archive.settings() if options.archive is not None else None,
        )
        connection, tables = _questdb(options.questdb, options.mode, environ)
        recheck = EmptyRecheckPolicy(
            recent_ms=int(options.empty_recent_s * 1000),
            recheck_after_ms=int(options.empty_recheck_after_s * 1000),
        )
        return cls(options.mode, backfill, timeframes, connection, tables, recheck)


def _questdb(q: Mapping[str, Any], mode: Mode, environ: Mapping[str, str]) -> tuple[QuestDBConnection, TableNames]:
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

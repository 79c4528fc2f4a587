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

The keys are typed once in ``project_options``; each exchange's part is ``exchange_project``.

String values may name environment variables as ``${NAME}`` or ``${NAME:-default}``; secrets are
never values here (credentials are read from the variables ``api_key_env``/``secret_env`` name).
The file is ``$CCXT_QUESTDB_PROJECT`` if set, else the embedded default (the local emulator).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.defs.exchange_project import ExchangeProject, exchange_project
from ccxt_questdb_assets.defs.partition_budget import check_budget
from ccxt_questdb_assets.defs.project_options import ProjectOptions, RefreshSettings
from ccxt_questdb_assets.storage.connection import QuestDBConnection

ENV_PROJECT = "CCXT_QUESTDB_PROJECT"
DEFAULT_PROJECT_FILE = Path(__file__).with_name("default_project.yaml")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
            exchange_project(ex_id, section, options, environ, where) for ex_id, section in options.exchanges.items()
        )
        check_budget(exchanges, options, source)
        return cls(exchanges, source, options)

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

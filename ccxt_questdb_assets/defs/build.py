"""How the project's Dagster ``Definitions`` are built from a project config.

Loading touches no network: the exchange's markets are loaded when a run first fetches a gap,
QuestDB when a run writes. Runs execute in process: an asset and its checks are one step, and the
steps of a run (candles, trades, then what is computed from them) run one after the other in the
run's own process, so a run pays one Python start-up, not one per step. Parallelism comes from runs
(one per symbol).

``definitions`` (dev and demo) and ``deployment`` (a deployment) are the modules Dagster loads.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from dagster import Definitions, EnvVar, in_process_executor

import ccxt_questdb_assets.defs.dagster_warnings  # noqa: F401  (Dagster's warnings about its own code)
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.long_lived import freeze_long_lived
from ccxt_questdb_assets.core.redaction import redact_dsn
from ccxt_questdb_assets.defs.automation import build_automation
from ccxt_questdb_assets.defs.derived_assets import build_derived_assets
from ccxt_questdb_assets.defs.ingest_assets import build_ingest_assets
from ccxt_questdb_assets.defs.io_manager import IO_MANAGER_KEY, QuestDBIOManager
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.defs.questdb_resource import QuestDBResource
from ccxt_questdb_assets.defs.rate_limiter_resource import ENV_LIMITER_REDIS, RateLimiterResource
from ccxt_questdb_assets.storage.connection import ENV_PASSWORD


def build_resources(project: ProjectConfig) -> dict[str, object]:
    password = {"password": EnvVar(ENV_PASSWORD)} if os.environ.get(ENV_PASSWORD) else {}
    questdb = QuestDBResource.from_connection(project.connection, **password)
    options = project.limiter_options
    if "redis_dsn" not in options and os.environ.get(ENV_LIMITER_REDIS):
        options["redis_dsn"] = EnvVar(ENV_LIMITER_REDIS)  # the UI shows the variable, never the DSN
    _refuse_redis_password_in_config(options.get("redis_dsn"))
    return {
        "questdb": questdb,
        "rate_limiter": RateLimiterResource(**options),
        IO_MANAGER_KEY: QuestDBIOManager(questdb=questdb),
    }


def _refuse_redis_password_in_config(dsn: object) -> None:
    """A DSN given in the project file becomes resource config, which Dagster shows in its UI and
    stores with each run: one carrying a password must come from the environment instead."""
    if not isinstance(dsn, str):
        return
    try:
        has_password = bool(urlsplit(dsn).password)
    except ValueError:
        has_password = False
    if has_password:
        raise ConfigError(
            f"the project file gives the rate limiter a Redis DSN with a password ({redact_dsn(dsn)}): "
            f"Dagster would show it in the UI and store it with every run. Remove redis_dsn and "
            f"connectors.ccxt_rate_limiter_redis from the file and set {ENV_LIMITER_REDIS} instead "
            "(passed to Dagster as an EnvVar)"
        )


def build_definitions(project: ProjectConfig) -> Definitions:
    """Ingest and derived assets with their checks, each exchange's job, schedule and sensors. In
    the process that first builds them (a code server, a run worker), what is alive then lives on:
    the collector stops walking it (``long_lived``)."""
    assets = [*build_ingest_assets(project), *build_derived_assets(project)]
    definitions = Definitions(
        assets=assets,
        resources=build_resources(project),
        executor=in_process_executor,
        **build_automation(project, assets),
    )
    freeze_long_lived()
    return definitions

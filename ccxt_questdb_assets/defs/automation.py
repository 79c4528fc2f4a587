"""Automation: what keeps the assets fresh, per exchange and for the code location.

Per exchange (``build_automation``):

* job ``{exchange}_ingest``: the exchange's partitioned assets (its asset group, their checks
  included), for one symbol and one day or a range of days per run.
* schedule ``{exchange}_refresh`` (cron ``refresh.cron``, default ``*/5 * * * *`` UTC; default
  status ``refresh.running``, off unless the project says so): each tick launches one run of the
  job per symbol currently in ``{exchange}_symbols``, over today's partition, and in the first
  hour of a day over yesterday's too (its last bars have just closed). A run costs only the gaps
  (coverage): the bars closed since the last tick, and the derived bars they complete, in the same
  run. So a closed bar reaches its table, and the derived tables, within one cron interval plus a
  run (about 10 s) of its close. The run key ``{symbol}@{tick}`` makes a re-evaluated tick launch
  nothing twice. It contacts the exchange every tick for every symbol, so a project turns it on
  deliberately (``refresh: {running: true}``; the embedded default does), or in the UI.
* sensor ``{exchange}_symbols`` (:mod:`.listings`): the config's symbols and new listings become
  partitions.

For the code location: sensor ``follow_upstream`` (an automation condition sensor, every 30 s,
default RUNNING): requests the computed assets' partitions whose upstream partitions were updated
(``asset_options.follow_upstream``), whoever updated them; it only computes inside QuestDB, never
calls an exchange, so it is on by default. And sensor ``run_failure_webhook`` (:mod:`.alerts`).

``listings.sync_symbol_partitions(instance, project)`` adds the config's symbols at once (the CLI and the
demo), without waiting for a sensor tick.
"""

# No ``from __future__ import annotations``: Dagster resolves the sensors' and schedule's
# annotations at definition time, and these are defined in closures.

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SkipReason,
    define_asset_job,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.defs.alerts import failure_sensor
from ccxt_questdb_assets.defs.listings import (
    SYMBOLS_SENSOR_INTERVAL_S,
    compile_listing_pattern,
    symbols_sensor,
    symbols_sensor_name,
)
from ccxt_questdb_assets.defs.partitions import market_partitions, partition_key, symbols_partitions
from ccxt_questdb_assets.defs.project_config import ExchangeProject, ProjectConfig

log = logging.getLogger(__name__)

FOLLOW_UPSTREAM_SENSOR_NAME = "follow_upstream"
FOLLOW_UPSTREAM_INTERVAL_S = 30
TRIGGER_TAG = "ccxt_questdb/trigger"


def ingest_job_name(exchange_id: str) -> str:
    return f"{exchange_id}_ingest"


def refresh_schedule_name(exchange_id: str) -> str:
    return f"{exchange_id}_refresh"


# ----------------------------------------------------------------------------- builder


def build_automation(
    project: ProjectConfig, assets: Sequence[Any], *, symbols_interval_s: int = SYMBOLS_SENSOR_INTERVAL_S
) -> dict[str, list[Any]]:
    """``{"jobs": [...], "schedules": [...], "sensors": [...]}`` for ``Definitions(**...)``.

    ``assets`` are the project's assets definitions (ingest, derived, ...): each exchange's job
    selects those of its group that share the exchange's date x symbol partitions, with their checks.
    """
    jobs: list[UnresolvedAssetJobDefinition] = []
    schedules: list[ScheduleDefinition] = []
    sensors: list[SensorDefinition] = []
    for ex in project.exchanges:
        pattern = compile_listing_pattern(ex.listing_pattern, ex.exchange_id) if ex.listing_pattern else None
        job = _ingest_job(project, ex, assets)
        jobs.append(job)
        schedules.append(_refresh_schedule(project, ex, job))
        sensors.append(symbols_sensor(ex, pattern, symbols_interval_s))
    sensors.append(
        AutomationConditionSensorDefinition(
            FOLLOW_UPSTREAM_SENSOR_NAME,
            target=AssetSelection.all(),
            default_status=DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=FOLLOW_UPSTREAM_INTERVAL_S,
            description="Computes the derived assets' partitions whose upstream partitions were updated (in QuestDB "
            "only: it never calls an exchange).",
        )
    )
    sensors.append(failure_sensor(project))
    return {"jobs": jobs, "schedules": schedules, "sensors": sensors}


def _ingest_job(project: ProjectConfig, ex: ExchangeProject, assets: Sequence[Any]) -> UnresolvedAssetJobDefinition:
    partitions = market_partitions(ex.exchange_id, project.start_date)
    keys = []
    for a in assets:
        if not isinstance(a, AssetsDefinition) or a.partitions_def != partitions:
            continue
        keys.extend(spec.key for spec in a.specs if spec.group_name == ex.exchange_id)
    if not keys:
        raise ConfigError(
            f"no partitioned assets in group {ex.exchange_id!r} to build job "
            f"{ingest_job_name(ex.exchange_id)!r}: pass build_ingest_assets(project) to build_automation"
        )
    return define_asset_job(
        ingest_job_name(ex.exchange_id),
        selection=AssetSelection.assets(*keys),
        description=f"Every {ex.exchange_id} asset and its checks for one symbol's day or days (the refresh "
        "schedule's job).",
        tags={"ccxt_questdb/exchange": ex.exchange_id},
    )


# ----------------------------------------------------------------------------- refresh schedule


def refresh_days(tick: datetime, start_date: str) -> list[str]:
    """The UTC days a tick refreshes: today, and yesterday too during the first hour of a day."""
    tick = tick.astimezone(UTC) if tick.tzinfo else tick.replace(tzinfo=UTC)
    today = tick.date()
    days = [today - timedelta(days=1), today] if tick.hour == 0 else [today]
    first = date.fromisoformat(start_date)
    return [d.isoformat() for d in days if d >= first]


def refresh_request(days: Sequence[str], symbol: str, stamp: str) -> RunRequest:
    """One run of the exchange's job over ``days`` (consecutive) of ``symbol``."""
    tags = {TRIGGER_TAG: "refresh"}
    run_key = f"{symbol}@{stamp}"
    if len(days) == 1:
        return RunRequest(run_key=run_key, partition_key=str(partition_key(days[0], symbol)), tags=tags)
    tags[ASSET_PARTITION_RANGE_START_TAG] = str(partition_key(days[0], symbol))
    tags[ASSET_PARTITION_RANGE_END_TAG] = str(partition_key(days[-1], symbol))
    return RunRequest(run_key=run_key, tags=tags)


def _refresh_schedule(
    project: ProjectConfig, ex: ExchangeProject, job: UnresolvedAssetJobDefinition
) -> ScheduleDefinition:
    partitions_name = symbols_partitions(ex.exchange_id).name
    start_date = project.start_date
    status = DefaultScheduleStatus.RUNNING if project.refresh.running else DefaultScheduleStatus.STOPPED

    @schedule(
        name=refresh_schedule_name(ex.exchange_id),
        job=job,
        cron_schedule=project.refresh.cron,
        execution_timezone="UTC",
        default_status=status,
        description=(
            f"Keeps every {ex.exchange_id} asset fresh: one run per symbol over today's partition (and "
            "yesterday's in the first hour of a day); only the gaps are fetched, and the derived bars "
            "they complete are computed in the same run. It calls the exchange every tick."
        ),
    )
    def refresh(context: ScheduleEvaluationContext):
        tick = context.scheduled_execution_time or datetime.now(UTC)
        symbols = sorted(context.instance.get_dynamic_partitions(partitions_name))
        if not symbols:
            return SkipReason(
                f"no symbols in {partitions_name} yet: the {symbols_sensor_name(ex.exchange_id)} "
                "sensor adds the config's symbols"
            )
        days = refresh_days(tick, start_date)
        if not days:
            return SkipReason(f"{tick.date()} is before start_date {start_date}")
        stamp = tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
        return [refresh_request(days, symbol, stamp) for symbol in symbols]

    return refresh

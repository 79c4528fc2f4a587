"""Automation: what keeps the assets fresh, per exchange and for the code location.

Per exchange (``build_automation``), and per grain of its assets (:func:`ingest_groups`: a job
holds assets of one partitions definition, so when an exchange's trades have another grain than
its candles they get a job and a schedule of their own, ``{exchange}_trades_ingest`` and
``{exchange}_trades_refresh``):

* job ``{exchange}_ingest``: the exchange's partitioned assets (its asset group, their checks
  included), for one symbol and one period (a day or a month, the grain) or a range of them per run.
* schedule ``{exchange}_refresh`` (cron ``refresh.cron``, default ``*/5 * * * *`` UTC; default
  status ``refresh.running``, off unless the project says so): each tick launches one run of the
  job per symbol currently in ``{exchange}_symbols``, over the current partition (today's, or this
  month's), and in the first hour of a period over the previous one too (its last bars have just
  closed). A run costs only the gaps (coverage): the bars closed since the last tick, and the
  derived bars they complete, in the same run. So a closed bar reaches its table, and the derived
  tables, within one cron interval plus a run (about 10 s) of its close. The run key
  ``{symbol}@{tick}`` makes a re-evaluated tick launch nothing twice. It contacts the exchange
  every tick for every symbol, so a project turns it on deliberately (``refresh: {running:
  true}``; the embedded default does), or in the UI.
* sensor ``{exchange}_symbols`` (:mod:`.listings`): the config's symbols and new listings become
  partitions, new listings only within the partitions budget.

For the code location: sensor ``follow_upstream`` (an automation condition sensor, every 30 s,
default RUNNING): requests the computed assets' partitions whose upstream partitions were updated
(``asset_options.follow_upstream``), whoever updated them; it only computes inside QuestDB, never
calls an exchange, so it is on by default. A tick costs with what changed since the last one, not
with the number of partitions. And sensor ``run_failure_webhook`` (:mod:`.alerts`).

``listings.sync_symbol_partitions(instance, project)`` adds the config's symbols at once (the CLI and the
demo), without waiting for a sensor tick.
"""

# No ``from __future__ import annotations``: Dagster resolves the sensors' and schedule's
# annotations at definition time, and these are defined in closures.

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
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
from ccxt_questdb_assets.core.node_ids import OHLCV, TRADES, Mode
from ccxt_questdb_assets.defs.alerts import failure_sensor
from ccxt_questdb_assets.defs.exchange_project import ExchangeProject
from ccxt_questdb_assets.defs.listings import (
    SYMBOLS_SENSOR_INTERVAL_S,
    compile_listing_pattern,
    symbols_sensor,
    symbols_sensor_name,
)
from ccxt_questdb_assets.defs.partitions import Grain, market_partitions, partition_key, symbols_partitions
from ccxt_questdb_assets.defs.project_config import ProjectConfig

log = logging.getLogger(__name__)

FOLLOW_UPSTREAM_SENSOR_NAME = "follow_upstream"
FOLLOW_UPSTREAM_INTERVAL_S = 30
TRIGGER_TAG = "ccxt_questdb/trigger"


def ingest_job_name(exchange_id: str, part: str = "") -> str:
    """``{exchange}_ingest``, or ``{exchange}_trades_ingest`` for trades of a grain of their own."""
    return f"{exchange_id}_{part + '_' if part else ''}ingest"


def refresh_schedule_name(exchange_id: str, part: str = "") -> str:
    return f"{exchange_id}_{part + '_' if part else ''}refresh"


@dataclass(frozen=True)
class IngestGroup:
    """An exchange's assets of one grain: one job, one refresh schedule."""

    exchange_id: str
    grain: Grain
    modes: tuple[Mode, ...]
    part: str = ""  # "" for the exchange's main group, "trades" for trades of another grain

    @property
    def job_name(self) -> str:
        return ingest_job_name(self.exchange_id, self.part)

    @property
    def schedule_name(self) -> str:
        return refresh_schedule_name(self.exchange_id, self.part)


def ingest_groups(ex: ExchangeProject) -> list[IngestGroup]:
    """The exchange's assets by grain: one group when candles and trades share it (or the exchange
    has one of them), else the candles' group and a trades group."""
    modes = ([OHLCV] if ex.timeframes else []) + ([TRADES] if ex.trades else [])
    grains = {ex.grain(m) for m in modes}
    if len(grains) <= 1:
        return [IngestGroup(ex.exchange_id, ex.grain(modes[0]) if modes else Grain.DAY, tuple(modes))]
    return [
        IngestGroup(ex.exchange_id, ex.ohlcv_grain, (OHLCV,)),
        IngestGroup(ex.exchange_id, ex.trades_grain, (TRADES,), part="trades"),
    ]


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
        for group in ingest_groups(ex):
            job = _ingest_job(project, group, assets)
            jobs.append(job)
            schedules.append(_refresh_schedule(project, group, job))
        sensors.append(symbols_sensor(project, ex, pattern, symbols_interval_s))
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


def _ingest_job(project: ProjectConfig, group: IngestGroup, assets: Sequence[Any]) -> UnresolvedAssetJobDefinition:
    ex_id = group.exchange_id
    partitions = market_partitions(ex_id, project.start_date, group.grain)
    keys = []
    for a in assets:
        if not isinstance(a, AssetsDefinition) or a.partitions_def != partitions:
            continue
        keys.extend(spec.key for spec in a.specs if spec.group_name == ex_id)
    if not keys:
        raise ConfigError(
            f"no partitioned assets in group {ex_id!r} to build job "
            f"{group.job_name!r}: pass build_ingest_assets(project) to build_automation"
        )
    which = "trades asset" if group.part else "asset"
    return define_asset_job(
        group.job_name,
        selection=AssetSelection.assets(*keys),
        description=f"Every {ex_id} {which} of the {group.grain.value} grain and its checks for one symbol's "
        f"{group.grain.value} or {group.grain.plural} (the refresh schedule's job).",
        tags={"ccxt_questdb/exchange": ex_id},
    )


# ----------------------------------------------------------------------------- refresh schedule


def refresh_periods(tick: datetime, start_date: str, grain: Grain = Grain.DAY) -> list[str]:
    """The partitions (their ``date`` keys) a tick refreshes: the current period (today, or this
    month), and the previous one too during the first hour of a period (its last bars have just
    closed)."""
    tick = tick.astimezone(UTC) if tick.tzinfo else tick.replace(tzinfo=UTC)
    current = grain.period_start(tick.date())
    first_hour = tick.date() == current and tick.hour == 0
    periods = [grain.previous_start(current), current] if first_hour else [current]
    first = grain.period_start(date.fromisoformat(start_date))
    return [d.isoformat() for d in periods if d >= first]


def refresh_request(periods: Sequence[str], symbol: str, stamp: str) -> RunRequest:
    """One run of the exchange's job over ``periods`` (consecutive) of ``symbol``."""
    tags = {TRIGGER_TAG: "refresh"}
    run_key = f"{symbol}@{stamp}"
    if len(periods) == 1:
        return RunRequest(run_key=run_key, partition_key=str(partition_key(periods[0], symbol)), tags=tags)
    tags[ASSET_PARTITION_RANGE_START_TAG] = str(partition_key(periods[0], symbol))
    tags[ASSET_PARTITION_RANGE_END_TAG] = str(partition_key(periods[-1], symbol))
    return RunRequest(run_key=run_key, tags=tags)


def _refresh_schedule(
    project: ProjectConfig, group: IngestGroup, job: UnresolvedAssetJobDefinition
) -> ScheduleDefinition:
    ex_id, grain = group.exchange_id, group.grain
    partitions_name = symbols_partitions(ex_id).name
    start_date = project.start_date
    status = DefaultScheduleStatus.RUNNING if project.refresh.running else DefaultScheduleStatus.STOPPED
    current = "today's partition (and yesterday's in the first hour of a day)"
    if grain is Grain.MONTH:
        current = "this month's partition (and last month's in the first hour of a month)"

    @schedule(
        name=group.schedule_name,
        job=job,
        cron_schedule=project.refresh.cron,
        execution_timezone="UTC",
        default_status=status,
        description=(
            f"Keeps every {ex_id} {'trades asset' if group.part else 'asset'} of the {grain.value} grain fresh: "
            f"one run per symbol over {current}; only the gaps are fetched, and the derived bars they "
            "complete are computed in the same run. It calls the exchange every tick."
        ),
    )
    def refresh(context: ScheduleEvaluationContext):
        tick = context.scheduled_execution_time or datetime.now(UTC)
        symbols = sorted(context.instance.get_dynamic_partitions(partitions_name))
        if not symbols:
            return SkipReason(
                f"no symbols in {partitions_name} yet: the {symbols_sensor_name(ex_id)} "
                "sensor adds the config's symbols"
            )
        periods = refresh_periods(tick, start_date, grain)
        if not periods:
            return SkipReason(f"{tick.date()} is before start_date {start_date}")
        stamp = tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
        return [refresh_request(periods, symbol, stamp) for symbol in symbols]

    return refresh

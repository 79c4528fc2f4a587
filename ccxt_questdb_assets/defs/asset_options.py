"""What every asset of one exchange and data type shares: partitions, backfill policy, pool, group,
freshness, automation and code references.

* Partitions: ``date`` x ``symbol`` of the data type's grain (``partitions.py``); computed assets
  take their upstream's (resampled candles the candles', trade bars the trades'), so they map to it
  one to one. The backfill policy's runs hold at most 92 days or 12 months
  (``Grain.max_partitions_per_run``).

* Freshness: each asset carries a ``FreshnessPolicy.time_window`` sized from the refresh
  schedule's cron (warn after two intervals without a materialization, fail after four), so the
  UI shows an asset going stale when the refresh stops or fails.
* Automation: computed assets (resampled candles, trade bars) follow their upstream: a partition
  is requested when its upstream partition was updated (by any run: the UI, a backfill, the
  refresh), once the upstream's blocking checks passed, never while it is missing or in progress.
  What a tick evaluates is bounded by what changed, not by the partitions: see :func:`follow_upstream`.
* Beta and preview features used on purpose (docs/dagster.md says why): the multi-run backfill
  policy and source code references are beta in Dagster 1.13, partitioned asset checks preview;
  their warnings are silenced by :func:`chosen_features` around the definitions that choose
  them, and nowhere else.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetsDefinition,
    AssetSpec,
    AutomationCondition,
    BetaWarning,
    FreshnessPolicy,
    MultiPartitionsDefinition,
    PreviewWarning,
    multi_asset,
    with_source_code_references,
)
from dagster._utils.schedules import get_smallest_cron_interval

from ccxt_questdb_assets.core.node_ids import Mode
from ccxt_questdb_assets.defs.exchange_project import ExchangeProject
from ccxt_questdb_assets.defs.io_manager import IO_MANAGER_KEY
from ccxt_questdb_assets.defs.partitions import Grain, market_partitions
from ccxt_questdb_assets.defs.project_config import ProjectConfig

#: A materialization older than this many refresh intervals makes an asset WARN, then FAIL.
WARN_AFTER_INTERVALS, FAIL_AFTER_INTERVALS = 2, 4


@contextmanager
def chosen_features() -> Iterator[None]:
    """Silence Dagster's beta and preview warnings while defining with the features chosen on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        warnings.simplefilter("ignore", PreviewWarning)
        yield


def pool_name(exchange_id: str) -> str:
    """One concurrency pool per exchange (limits concurrent steps; the rate limiter paces requests)."""
    return f"ccxt_{exchange_id}"


def freshness_policy(refresh_cron: str) -> FreshnessPolicy:
    interval = get_smallest_cron_interval(refresh_cron)
    return FreshnessPolicy.time_window(
        fail_window=max(FAIL_AFTER_INTERVALS * interval, timedelta(minutes=2)),
        warn_window=max(WARN_AFTER_INTERVALS * interval, timedelta(minutes=1)),
    )


def follow_upstream(grain: Grain) -> AutomationCondition:
    """A derived partition follows its upstream partition: requested once the upstream partition
    was updated (any partition, however old: a backfill, the UI), or, in the two latest periods,
    once it became missing; then held until its upstream is there and not in progress, it is not
    in progress itself, and the upstream's blocking checks passed.

    Dagster's ``eager`` is the same condition except for the reach of "became missing": eager
    asks it of every partition on every tick, which enumerates every partition key (978,900 per
    asset at a desk's scale with days: 20 to 50 s a tick, over the sensor's 30 s interval).
    Here "updated" is read from the upstream's new materializations (as many as there are) and
    "became missing" only in ``in_latest_time_window(grain.recent)`` (the open period and the one
    before: 2 x the symbols), so a tick costs with what changed, not with the partitions. The
    reset is a request or an update of the partition (eager's ``since_last_handled`` also resets
    on the first evaluation, which marks every partition on that tick)."""
    c = AutomationCondition
    recent_missing = (c.in_latest_time_window(grain.recent) & c.missing()).newly_true()
    handled = c.newly_requested() | c.newly_updated()
    return (
        (c.any_deps_updated() | recent_missing).since(handled)
        & ~c.any_deps_missing()
        & ~c.any_deps_in_progress()
        & ~c.in_progress()
        & c.all_deps_blocking_checks_passed()
    ).with_label("follows its upstream")


@dataclass(frozen=True)
class AssetOptions:
    exchange_id: str
    grain: Grain
    partitions_def: MultiPartitionsDefinition
    freshness: FreshnessPolicy

    @classmethod
    def of(cls, project: ProjectConfig, ex: ExchangeProject, mode: Mode) -> AssetOptions:
        """The options of ``ex``'s assets of data type ``mode`` (and of those computed from them)."""
        grain = ex.grain(mode)
        return cls(
            ex.exchange_id,
            grain,
            market_partitions(ex.exchange_id, project.start_date, grain),
            freshness_policy(project.refresh.cron),
        )

    @property
    def pool(self) -> str:
        return pool_name(self.exchange_id)

    def define(
        self,
        compute: Callable[..., Any],
        spec: AssetSpec,
        check_specs: Sequence[AssetCheckSpec] | None,
        *,
        fetched: bool,
    ) -> AssetsDefinition:
        """The asset of ``spec`` (key, description, tags, kinds, deps, metadata), made by ``compute``
        with ``check_specs`` evaluated in the same step. It joins the exchange's group with its
        freshness; a fetched asset takes a slot of the exchange's pool, a computed one follows its
        upstream. Partitions, the multi-run backfill policy, the IO manager and a link to the
        source in the catalog come with it."""
        automation: dict[str, Any] = {} if fetched else {"automation_condition": follow_upstream(self.grain)}
        spec = spec.replace_attributes(group_name=self.exchange_id, freshness_policy=self.freshness, **automation)
        with chosen_features():
            decorated = multi_asset(
                name=spec.key.to_python_identifier(),
                specs=[spec.with_io_manager_key(IO_MANAGER_KEY)],
                check_specs=check_specs,
                can_subset=True,
                pool=self.pool if fetched else None,
                partitions_def=self.partitions_def,
                backfill_policy=self.grain.backfill_policy,
            )(compute)
            return with_source_code_references([decorated])[0]

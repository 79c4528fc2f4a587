"""The demo's runs: one per exchange and symbol over the last full UTC days, launched as the UI does.

A run is the exchange's job ``{exchange}_ingest`` (and ``{exchange}_trades_ingest`` when its
trades have a grain of their own) with Dagster's partition-range tags over the partitions holding
those days (days, or the months holding them with the month grain), launched
through the webserver's GraphQL (``launchRun``), so the code location's job (not a copy built in
this process) runs: the run carries the location's origin and job snapshot, and shows in the UI
(runs list, Overview timeline, re-execute) like one launched there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.dagster_dev_process import DagsterDev
from ccxt_questdb_assets.defs.automation import TRIGGER_TAG, ingest_groups
from ccxt_questdb_assets.defs.partitions import Grain, partition_key
from ccxt_questdb_assets.defs.project_config import ProjectConfig

__all__ = ["DemoRun", "launch", "plan_runs"]

DEMO_SYMBOLS_PER_EXCHANGE = 2


@dataclass(frozen=True)
class DemoRun:
    """One run to launch: ``job`` over the partitions ``first..last`` (inclusive; days, or months
    named by their first day) of one symbol."""

    exchange_id: str
    symbol: str
    first: date
    last: date
    job: str
    grain: Grain = Grain.DAY

    @property
    def label(self) -> str:
        periods = str(self.first) if self.first == self.last else f"{self.first}..{self.last}"
        unit = "" if self.grain is Grain.DAY else f" ({self.grain.plural})"
        return f"{self.job} {self.symbol} {periods}{unit}"

    def tags(self) -> dict[str, str]:
        return {
            ASSET_PARTITION_RANGE_START_TAG: str(partition_key(self.first, self.symbol)),
            ASSET_PARTITION_RANGE_END_TAG: str(partition_key(self.last, self.symbol)),
            TRIGGER_TAG: "demo",
        }


def plan_runs(project: ProjectConfig, days: int, today: date, symbols: Sequence[str] | None = None) -> list[DemoRun]:
    """The last ``days`` full UTC days before ``today``, per exchange for the ``symbols`` it lists
    (default: its first two); a symbol no exchange of the project lists is a ConfigError."""
    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    first, last = today - timedelta(days=days), today - timedelta(days=1)
    listed = {s for ex in project.exchanges for s in ex.symbols}
    unknown = [s for s in symbols or () if s not in listed]
    if unknown:
        where = "; ".join(f"exchanges.{ex.exchange_id}.symbols: {', '.join(ex.symbols)}" for ex in project.exchanges)
        raise ConfigError(
            f"symbol(s) {', '.join(unknown)} are in no exchange of the project ({where}): add them "
            "there, or pick among those"
        )
    runs = []
    for ex in project.exchanges:
        chosen = [s for s in symbols if s in ex.symbols] if symbols else list(ex.symbols[:DEMO_SYMBOLS_PER_EXCHANGE])
        for group in ingest_groups(ex):
            g = group.grain
            runs.extend(
                DemoRun(ex.exchange_id, s, g.period_start(first), g.period_start(last), group.job_name, g)
                for s in chosen
            )
    return runs


def launch(dev: DagsterDev, runs: Sequence[DemoRun]) -> Iterator[tuple[str, DemoRun]]:
    """Launch every run through the webserver, yielding each one's run id as it is launched."""
    for run in runs:
        run_id = dev.launch_run(run.job, run.tags())
        print(f"launched {run.label}: run {run_id}", flush=True)
        yield run_id, run

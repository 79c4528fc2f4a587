"""What ``ccxt-questdb demo`` prints about its runs, read from the Dagster instance.

Per run: its status and wall time; per asset it materialized: the partitions and each one's row
count (``dagster/row_count``, Dagster's table row-count metadata, which the catalog shows too);
the asset check evaluations, passed and failed. Nothing here names an asset, a check or a custom
metadata key: it prints whatever the run recorded. When every partition of an asset carries the
very same metadata, it describes the run's whole range (one output for several partitions), and
is printed once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import DagsterEventType, DagsterInstance

__all__ = ["ROW_COUNT_KEY", "AssetResult", "CheckResult", "RunResult", "format_run", "read_run"]

ROW_COUNT_KEY = "dagster/row_count"
_SHOWN = 5  # failed checks and errors printed per run
_EVENTS = {
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_CHECK_EVALUATION,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.RUN_FAILURE,
}


@dataclass(frozen=True)
class AssetResult:
    """An asset's materializations in a run: metadata by partition (None: unpartitioned)."""

    asset: str
    metadata: Mapping[str | None, Mapping[str, Any]]

    @property
    def partitions(self) -> list[str | None]:
        return sorted(self.metadata, key=lambda p: p or "")

    @property
    def one_figure_for_the_range(self) -> bool:
        values = list(self.metadata.values())
        return len(values) > 1 and all(v == values[0] for v in values[1:])

    def row_counts(self) -> dict[str | None, Any]:
        return {p: self.metadata[p].get(ROW_COUNT_KEY) for p in self.partitions}


@dataclass(frozen=True)
class CheckResult:
    asset: str
    check: str
    partition: str | None
    passed: bool
    description: str | None


@dataclass(frozen=True)
class RunResult:
    run_id: str
    label: str
    status: str
    wall_s: float | None
    assets: tuple[AssetResult, ...]
    checks: tuple[CheckResult, ...]
    errors: tuple[str, ...]  # the first line of each step or run failure

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCESS"


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def read_run(instance: DagsterInstance, run_id: str, label: str) -> RunResult:
    """The run's status, wall time (start to end), materializations and check evaluations."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        raise LookupError(f"run {run_id} ({label}) is not in the instance {instance.root_directory}")
    wall = record.end_time - record.start_time if record.start_time and record.end_time else None
    metadata: dict[str, dict[str | None, dict[str, Any]]] = defaultdict(dict)
    checks, errors = [], []
    for entry in instance.all_logs(run_id, of_type=_EVENTS):
        failure = getattr(entry.dagster_event.event_specific_data, "error", None)
        if failure is not None:
            errors.append(f"{entry.step_key or 'run'}: {failure.message.strip().splitlines()[0]}")
        materialization = entry.asset_materialization
        if materialization is not None:
            metadata[materialization.asset_key.to_user_string()][materialization.partition] = {
                k: _plain(v) for k, v in materialization.metadata.items()
            }
        evaluation = entry.asset_check_evaluation
        if evaluation is not None:
            checks.append(
                CheckResult(
                    evaluation.asset_key.to_user_string(),
                    evaluation.check_name,
                    evaluation.partition,
                    evaluation.passed,
                    evaluation.description,
                )
            )
    assets = tuple(AssetResult(asset, by_partition) for asset, by_partition in sorted(metadata.items()))
    return RunResult(run_id, label, record.dagster_run.status.value, wall, assets, tuple(checks), tuple(errors))


def _rows_text(asset: AssetResult) -> str:
    counts = asset.row_counts()
    values = list(counts.values())
    if all(c is None for c in values):
        return f"no {ROW_COUNT_KEY} metadata"
    if len(values) == 1:
        return f"{values[0]} rows"
    if asset.one_figure_for_the_range:
        return f"{values[0]} rows over the range (one figure for all its partitions)"
    if len(set(values)) == 1:
        return f"{values[0]} rows in each"
    return "rows " + ", ".join(
        f"{(p or '').split('|')[0] or '-'} {c if c is not None else '-'}" for p, c in counts.items()
    )


def format_run(result: RunResult) -> list[str]:
    """A few lines: the run, one per asset, the checks."""
    wall = f" in {result.wall_s:.1f} s" if result.wall_s is not None else ""
    lines = [f"{result.label}: {result.status}{wall} (run {result.run_id})"]
    width = max((len(a.asset) for a in result.assets), default=0)
    for asset in result.assets:
        parts = asset.partitions
        if len(parts) > 1:
            span = f"{len(parts)} partitions {parts[0]} .. {parts[-1]}"
        else:
            span = f"partition {parts[0]}" if parts[0] is not None else "unpartitioned"
        lines.append(f"  {asset.asset:<{width}}  {span}: {_rows_text(asset)}")
    failed = [c for c in result.checks if not c.passed]
    lines.append(f"  asset checks: {len(result.checks) - len(failed)} passed, {len(failed)} failed")
    for check in failed[:_SHOWN]:
        lines.append(
            f"    FAILED {check.asset} {check.check} {check.partition or ''}: {check.description or ''}".rstrip()
        )
    lines.extend(f"  error in {error}" for error in result.errors[:_SHOWN])
    if len(failed) > _SHOWN or len(result.errors) > _SHOWN:
        lines.append("    ... more in the run's page in the UI")
    return lines

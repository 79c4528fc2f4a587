"""``python -m benchmarks.scale_daemon``: the Dagster daemon's own iterations, one at a time, on command.

Target 8 (``benchmarks.scale_target``) starts one of these per deployment (``DAGSTER_HOME`` and
``CCXT_QUESTDB_PROJECT`` in its environment). It loads the workspace as ``dagster-daemon`` does
(``WorkspaceProcessContext`` on the project's module: a code server process of its own), then reads
one JSON command per line on stdin and answers each with one line on stdout, prefixed with
:data:`REPLY` (the code server shares stdout). Commands:

* ``{"op": "tick", "name": N}``: one tick of the schedule or sensor ``N`` through the daemon's own
  per-instigator functions: the scheduler's ``launch_scheduled_runs_for_schedule_iterator`` at the
  schedule's next cron time after its last tick (the first tick of a project-running schedule is
  today at :data:`FIRST_TICK_HOUR` UTC plus one interval), the sensor daemon's
  ``_process_tick_generator``, the asset daemon's ``_process_auto_materialize_tick`` for automation
  condition sensors. Each sensor is made due first (its last tick moved back by its minimum
  interval), as the daemon would find it once the interval has passed. The tick evaluates, stores
  its tick, cursor and evaluations, and submits its runs (queued: nothing dequeues them).
* ``{"op": "backfill"}``: one iteration of the backfill daemon (``execute_backfill_iteration``),
  which plans and submits the runs of every requested backfill.

While a command runs, progress lines are written every :data:`PROGRESS_S`: the runs created since it
started and, for a backfill, the runs its iteration planned (it stores them before it submits the
first; read once that run exists).

The answer carries the seconds the call took and what the tick or iteration did. Nothing here
executes a run.

``python -m benchmarks.scale_daemon --load`` instead imports the project's definitions in this
fresh process, as a code server does, and answers once with the wall-clock time the import ended,
the time it took to build the repository snapshot a code server serves, and each asset's
partitions definition and partition count (the instance's dynamic partitions included).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

REPLY = "@@scale "
FIRST_TICK_HOUR = 12  # a schedule's first tick: today at noon UTC, inside today's partition, not in hour 0
PROGRESS_S = 0.5
MODULE = "ccxt_questdb_assets.defs.definitions"


def say(payload: dict[str, Any]) -> None:
    sys.stdout.write(REPLY + json.dumps(payload) + "\n")
    sys.stdout.flush()


class Daemon:
    def __init__(self) -> None:
        from dagster import DagsterInstance
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import ModuleTarget

        self.logger = logging.getLogger("scale_daemon")
        self._since = datetime.now(UTC)
        self.instance = DagsterInstance.get()
        t0 = time.perf_counter()
        self.context = WorkspaceProcessContext(
            self.instance,
            ModuleTarget(module_name=MODULE, attribute="defs", working_directory=os.getcwd(), location_name=None),
        )
        self.schedules: dict[str, Any] = {}
        self.sensors: dict[str, tuple[Any, Any]] = {}
        request = self.context.create_request_context()
        for entry in request.get_code_location_entries().values():
            if entry.code_location is None:
                raise RuntimeError(f"code location {entry.origin.location_name} did not load: {entry.load_error}")
            for repo in entry.code_location.get_repositories().values():
                for schedule in repo.get_schedules():
                    self.schedules[schedule.name] = schedule
                for sensor in repo.get_sensors():
                    self.sensors[sensor.name] = (sensor, repo)
        self.load_s = time.perf_counter() - t0

    def describe(self) -> list[dict[str, Any]]:
        out = []
        states = {s.selector_id: s for s in self.instance.all_instigator_state()}
        for name, schedule in self.schedules.items():
            state = schedule.get_current_instigator_state(states.get(schedule.selector_id))
            out.append({"name": name, "kind": "schedule", "running": state.is_running, "cron": schedule.cron_schedule})
        for name, (sensor, _repo) in self.sensors.items():
            state = sensor.get_current_instigator_state(states.get(sensor.selector_id))
            kind = "automation" if sensor.sensor_type.is_handled_by_asset_daemon else "sensor"
            out.append(
                {
                    "name": name,
                    "kind": kind,
                    "type": sensor.sensor_type.value,
                    "running": state.is_running,
                    "min_interval_s": sensor.min_interval_seconds,
                }
            )
        return out

    # -- ticks ------------------------------------------------------------------------------

    def tick(self, name: str) -> dict[str, Any]:
        with self.watching(time.perf_counter()):
            if name in self.schedules:
                return self._schedule_tick(self.schedules[name])
            sensor, repo = self.sensors[name]
            return self._sensor_tick(sensor, repo)

    def _latest_tick(self, origin_id: str, selector_id: str) -> Any:
        ticks = self.instance.get_ticks(origin_id, selector_id, limit=1)
        return ticks[0] if ticks else None

    def _tick_summary(self, tick: Any, seconds: float, before: Any) -> dict[str, Any]:
        if tick is None or (before is not None and tick.tick_id == before.tick_id):
            return {"seconds": seconds, "status": "NO TICK", "runs": 0}
        return {
            "seconds": seconds,
            "status": tick.status.value,
            "runs": len(tick.run_ids),
            "requested": tick.requested_asset_materialization_count,
            "skip": tick.skip_reason,
            "error": tick.error.message[:2000] if tick.error else None,
        }

    def _schedule_tick(self, schedule: Any) -> dict[str, Any]:
        from dagster._core.scheduler.instigation import (
            InstigatorState,
            InstigatorStatus,
            InstigatorType,
            ScheduleInstigatorData,
        )
        from dagster._core.scheduler.scheduler import DEFAULT_MAX_CATCHUP_RUNS
        from dagster._scheduler.scheduler import launch_scheduled_runs_for_schedule_iterator

        origin_id, selector_id = schedule.get_remote_origin_id(), schedule.selector_id
        state = self.instance.get_instigator_state(origin_id, selector_id)
        if state is None:  # what the scheduler writes for a schedule running from its code
            noon = datetime.now(UTC).replace(hour=FIRST_TICK_HOUR, minute=0, second=0, microsecond=0)
            state = InstigatorState(
                schedule.get_remote_origin(),
                InstigatorType.SCHEDULE,
                InstigatorStatus.DECLARED_IN_CODE,
                ScheduleInstigatorData(schedule.cron_schedule, noon.timestamp()),
            )
            self.instance.add_instigator_state(state)
        before = self._latest_tick(origin_id, selector_id)
        data = state.instigator_data
        last = max(data.start_timestamp or 0, data.last_iteration_timestamp or 0, before.timestamp if before else 0)
        due = next(schedule.execution_time_iterator(last + 1)).astimezone(UTC)
        t0 = time.perf_counter()
        for _ in launch_scheduled_runs_for_schedule_iterator(
            self.context,
            self.logger,
            schedule,
            state,
            due + timedelta(seconds=1),
            DEFAULT_MAX_CATCHUP_RUNS,
            0,
            self.instance.get_tick_retention_settings(InstigatorType.SCHEDULE),
            None,
            submit_threadpool_executor=None,
            in_memory_last_iteration_timestamp=None,
        ):
            pass
        seconds = time.perf_counter() - t0
        out = self._tick_summary(self._latest_tick(origin_id, selector_id), seconds, before)
        out["at"] = due.isoformat()
        return out

    def _make_due(self, sensor: Any) -> None:
        """The sensor's state as the daemon finds it once the minimum interval has passed (created
        as the daemon creates it for a sensor running from its code)."""
        from dagster._core.scheduler.instigation import (
            InstigatorState,
            InstigatorStatus,
            InstigatorType,
            SensorInstigatorData,
        )

        state = self.instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        if state is None:
            self.instance.add_instigator_state(
                InstigatorState(
                    sensor.get_remote_origin(),
                    InstigatorType.SENSOR,
                    InstigatorStatus.DECLARED_IN_CODE,
                    SensorInstigatorData(
                        min_interval=sensor.min_interval_seconds,
                        last_sensor_start_timestamp=time.time(),
                        sensor_type=sensor.sensor_type,
                    ),
                )
            )
            return
        data = state.instigator_data
        back = time.time() - (sensor.min_interval_seconds or 0) - 1
        moved = data._replace(
            last_tick_timestamp=min(data.last_tick_timestamp or back, back),
            last_tick_start_timestamp=min(data.last_tick_start_timestamp or back, back),
        )
        self.instance.update_instigator_state(state.with_data(moved))

    def _sensor_tick(self, sensor: Any, repo: Any) -> dict[str, Any]:
        from dagster._core.scheduler.instigation import InstigatorType

        origin_id, selector_id = sensor.get_remote_origin_id(), sensor.selector_id
        self._make_due(sensor)
        before = self._latest_tick(origin_id, selector_id)
        t0 = time.perf_counter()
        if sensor.sensor_type.is_handled_by_asset_daemon:
            from dagster._daemon.asset_daemon import AssetDaemon

            daemon = AssetDaemon(settings=self.instance.get_auto_materialize_settings(), pre_sensor_interval_seconds=30)
            with self.context.create_request_context() as request:
                daemon._process_auto_materialize_tick(self.context, request, repo, sensor, {})
        else:
            from dagster._daemon.sensor import _process_tick_generator

            state = self.instance.get_instigator_state(origin_id, selector_id)
            for _ in _process_tick_generator(
                self.context,
                self.logger,
                sensor,
                state,
                None,
                self.instance.get_tick_retention_settings(InstigatorType.SENSOR),
                None,
            ):
                pass
        seconds = time.perf_counter() - t0
        return self._tick_summary(self._latest_tick(origin_id, selector_id), seconds, before)

    def close(self) -> None:
        self.context.__exit__(None, None, None)

    # -- backfills --------------------------------------------------------------------------

    def backfill(self) -> dict[str, Any]:
        from dagster._core.execution.backfill import BulkActionStatus
        from dagster._daemon.backfill import execute_backfill_iteration

        ids = [b.backfill_id for b in self.instance.get_backfills(status=BulkActionStatus.REQUESTED)]
        t0 = time.perf_counter()
        errors = []
        with self.watching(t0, ids):
            for out in execute_backfill_iteration(self.context, self.logger):
                if out is not None and getattr(out, "message", None):
                    errors.append(out.message[:2000])
        seconds = time.perf_counter() - t0
        after = [self.instance.get_backfill(i) for i in ids]
        return {
            "seconds": seconds,
            "backfills": len(ids),
            "runs": self._runs_since(self._since),
            "statuses": [b.status.value for b in after if b is not None],
            "errors": errors,
        }

    def _runs_since(self, since: datetime) -> int:
        from dagster._core.storage.dagster_run import RunsFilter

        return self.instance.get_runs_count(RunsFilter(created_after=since))

    @contextmanager
    def watching(self, t0: float, backfill_ids: Sequence[str] = ()) -> Iterator[None]:
        """Progress lines while a call runs: the runs created since it started and, for a backfill,
        how many its iteration planned (read once, after the first run: the iteration stores its
        planned runs before it submits any)."""
        self._since = datetime.now(UTC) - timedelta(seconds=1)
        done = threading.Event()

        def watch() -> None:
            planned = None
            while not done.wait(PROGRESS_S):
                line: dict[str, Any] = {"progress": time.perf_counter() - t0}
                try:
                    line["runs"] = self._runs_since(self._since)
                    if planned is None and backfill_ids and line["runs"]:
                        stored = [self.instance.get_backfill(i) for i in backfill_ids]
                        planned = sum(len(b.submitting_run_requests or ()) for b in stored if b is not None)
                    line["planned"] = planned
                except Exception as exc:  # noqa: BLE001 - a busy database delays a progress line, no more
                    line["error"] = str(exc)[:200]
                say(line)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()


def _describe_partitions(partitions_def: Any) -> str:
    from dagster import MultiPartitionsDefinition

    if isinstance(partitions_def, MultiPartitionsDefinition):
        return " x ".join(f"{d.name}: {str(d.partitions_def).rstrip('.')}" for d in partitions_def.partitions_defs)
    return str(partitions_def).rstrip(".")


def load_main() -> int:
    """The definitions imported in this fresh process: when the import ended, the snapshot, the counts."""
    started = time.perf_counter()
    import ccxt_questdb_assets.defs.definitions as module

    imported = time.time()
    import_s = time.perf_counter() - started
    from dagster import DagsterInstance
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.remote_representation.external_data import RepositorySnap

    t0 = time.perf_counter()
    repo = module.defs.get_repository_def()
    RepositorySnap.from_def(repo)
    snapshot_s = time.perf_counter() - t0
    assets = []
    instance = DagsterInstance.get()
    with partition_loading_context(dynamic_partitions_store=instance):
        for node in repo.asset_graph.asset_nodes:
            pdef = node.partitions_def
            assets.append(
                {
                    "key": node.key.to_user_string(),
                    "partitions": _describe_partitions(pdef) if pdef else None,
                    "count": pdef.get_num_partitions() if pdef else 0,
                }
            )
    instance.dispose()
    say({"imported_at": imported, "import_s": import_s, "snapshot_s": snapshot_s, "assets": assets})
    return 0


def main() -> int:
    if "--load" in sys.argv[1:]:
        return load_main()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        daemon = Daemon()
    except Exception:  # noqa: BLE001 - the parent reads the reason
        say({"ready": False, "error": traceback.format_exc()[-3000:]})
        return 1
    say({"ready": True, "load_s": daemon.load_s, "instigators": daemon.describe()})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            if cmd["op"] == "tick":
                say({"reply": daemon.tick(cmd["name"])})
            elif cmd["op"] == "backfill":
                say({"reply": daemon.backfill()})
            elif cmd["op"] == "describe":
                say({"reply": daemon.describe()})
            else:
                say({"error": f"unknown op {cmd['op']!r}"})
        except Exception:  # noqa: BLE001 - answer with the error, stay up for the next command
            say({"error": traceback.format_exc()[-3000:]})
    daemon.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

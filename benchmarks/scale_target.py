"""Target 8: the project at a desk's scale, 300 symbols since 2018, against the same at 3 symbols for a year.

Two deployments of the project side by side, each a real Dagster instance (a temporary
``DAGSTER_HOME`` with the repository's ``dagster.yaml``, SQLite storage) and a project file shaped
like the embedded default (binance: 1m candles, trades, 1h resampled, the refresh schedule running;
no listing pattern) with the partitions design :data:`PARTITIONS` (the grain a desk chooses:
months; ``CCXT_BENCH_SCALE_PARTITIONS``, a YAML mapping, measures another, e.g. the days of the
before figures: ``{ohlcv: day, trades: day, max_per_asset: 2000000}``, a budget the project
otherwise refuses), pointed at by ``CCXT_QUESTDB_PROJECT``:

* **desk**: 300 symbols (BTC/USDT, ETH/USDT, then AAA/USDT, AAB/USDT, ...) from 2018-01-01;
* **small** (the baseline): 3 of them from a year before today.

Their symbols are added to the dynamic partitions by the project's own ``sync_symbol_partitions``.
Neither has an exchange or a QuestDB: both addresses are a loopback port nobody listens on, and
nothing measured here makes a request (no run executes; a run that did would fail at once).

Everything about the partitions is read from the definitions the project builds, never assumed:
the assets and their partitions definitions (whatever the grain), the 1m candle ingest asset (as
target 7 finds it), the partition keys of a date window (the keys of each time dimension whose
windows overlap it, times every key of the other dimensions), the schedules and sensors.

Figures, each the median of N runs alternating desk and small (ABBA), with the absolute seconds:

1. **Definitions load**: a fresh process importing ``ccxt_questdb_assets.defs.definitions``, from
   spawn until the import ended (the repository snapshot a code server then builds is noted); and
   the partitions per asset against Dagster's recommended 100,000 (a budget).
2. **Partition status**, through a real ``dagster-webserver`` on loopback, the queries the 1.13 UI
   sends: ``PartitionHealthQuery`` (the asset's Partitions tab: the partition keys of each
   dimension and the materialized/failed/in-progress ranges) for the 1m candle asset, and
   ``AssetGraphLiveQuery`` (the asset graph and catalog's live data: ``partitionStats`` and each
   check's partition statuses) for every asset. Before them the 1m candle asset gets one runless
   materialization (``report_runless_asset_event``) per partition of the last :data:`LOADED_DAYS`
   days of every symbol, which both answers must show. The first query of each deployment is
   shown apart.
3. **A one-year all-symbols backfill**: the UI's ``LaunchPartitionBackfill`` for the 1m candle asset
   over the partitions of the last 365 days of every symbol (the Materialize dialog's partition
   names), until the mutation returns; then one iteration of the backfill daemon
   (``execute_backfill_iteration``, in a process of its own) on that backfill, until its runs are
   submitted (queued; nothing dequeues them), within a bound: the runs it planned, the first run,
   the seconds per run, and at that rate when the last would be submitted.
4. **Daemon ticks**: a tick of every running schedule and sensor of the project (here the symbols
   sensor, the run failure sensor, the automation condition sensor, the refresh schedule) through
   the daemon's own functions (``benchmarks.scale_daemon``): the first tick, then (full pass) up to
   two more while the desk's ticks stay within :data:`TICK_BUDGET_S`; the figure is the later
   ticks' median (the first tick's when there is no other), against the small deployment and
   against the instigator's own interval (a tick longer than its interval is a daemon falling
   behind).

A call that does not finish within its bound (:data:`TICK_BOUND_S`, :data:`BACKFILL_BOUND_S`,
:data:`QUERY_BOUND_S`) is a finding: it is stopped, and the figure reports the bound and says so.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from benchmarks.harness import REPO_ROOT, Bench, log, median, target
from benchmarks.launch_target import ASSET_NODES, find_candle_asset
from benchmarks.scale_daemon import REPLY

MODULE = "ccxt_questdb_assets.defs.definitions"
#: The project file's ``partitions``: the desk-scale grain of docs/dagster.md.
PARTITIONS: dict[str, Any] = {"ohlcv": "month", "trades": "month"}
ENV_PARTITIONS = "CCXT_BENCH_SCALE_PARTITIONS"
DESK_SYMBOLS, DESK_START = 300, date(2018, 1, 1)
SMALL_SYMBOLS, SMALL_DAYS = 3, 365
PARTITION_BUDGET = 100_000  # Dagster's recommended most partitions per asset
BACKFILL_DAYS = 365
#: Days (before today) of every symbol with a materialization of the 1m candle asset.
LOADED_DAYS = 7
#: Bounds (s): a GraphQL call, start-up; a daemon tick, the backfill iteration (quick, full).
QUERY_BOUND_S = 300.0
STARTUP_BOUND_S = 600.0
TICK_BOUND_S = (45.0, 240.0)
BACKFILL_BOUND_S = (45.0, 120.0)
#: A full pass repeats an instigator's tick (twice at most) while its desk ticks stay within this.
TICK_BUDGET_S = 150.0

# -- the UI's GraphQL (Dagster 1.13.27's webapp bundle) -------------------------------------------

# ui-core/src/assets/usePartitionHealthData.tsx, PARTITION_HEALTH_QUERY
PARTITION_HEALTH = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
              ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
            }
          }
        }
      }
    }
  }
}
"""

# ui-core/src/asset-data/AssetBaseDataProvider.tsx, ASSETS_GRAPH_LIVE_QUERY with its fragments
ASSET_GRAPH_LIVE = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) { id ...AssetNodeLiveFragment }
  assetsLatestInfo(assetKeys: $assetKeys) { id ...AssetLatestInfoFragment }
}
fragment AssetNodeLiveFragment on AssetNode {
  id opNames repository { id } assetKey { path }
  assetMaterializations(limit: 1) { ...AssetNodeLiveMaterialization }
  assetObservations(limit: 1) { ...AssetNodeLiveObservation }
  assetChecksOrError { ... on AssetChecks { checks { ...AssetCheckLiveFragment } } }
  partitionStats { numMaterialized numMaterializing numPartitions numFailed }
}
fragment AssetNodeLiveMaterialization on MaterializationEvent { timestamp runId stepKey }
fragment AssetNodeLiveObservation on ObservationEvent { timestamp runId stepKey }
fragment AssetCheckLiveFragment on AssetCheck {
  name canExecuteIndividually
  executionForLatestMaterialization { id runId status timestamp stepKey evaluation { severity } }
  partitionDefinition { name description }
  partitionStatuses {
    ... on AssetCheckDefaultPartitionStatuses {
      succeededPartitions failedPartitions inProgressPartitions skippedPartitions executionFailedPartitions
    }
    ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
    ... on AssetCheckMultiPartitionStatuses {
      primaryDimensionName
      ranges {
        primaryDimStartKey primaryDimEndKey
        secondaryDim {
          ... on AssetCheckDefaultPartitionStatuses {
            succeededPartitions failedPartitions inProgressPartitions skippedPartitions executionFailedPartitions
          }
          ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
        }
      }
    }
  }
}
fragment AssetLatestInfoFragment on AssetLatestInfo {
  id assetKey { path } unstartedRunIds inProgressRunIds latestRun { id ...AssetLatestInfoRun }
}
fragment AssetLatestInfoRun on Run { status startTime endTime id }
"""

# ui-core/src/instance/backfill/BackfillUtils.tsx, LAUNCH_PARTITION_BACKFILL_MUTATION
LAUNCH_PARTITION_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on UnauthorizedError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on PresetNotFoundError { message }
    ... on RunConfigValidationInvalid { pipelineName errors { message } }
    ... on PythonError { message stack }
  }
}
"""


INF = float("inf")  # a run stopped at its bound


class BoundExceeded(Exception):
    """A measured call did not finish within its bound."""


# -- the two deployments ---------------------------------------------------------------------------


def partitions_design() -> dict[str, Any]:
    """:data:`PARTITIONS`, or the mapping ``$CCXT_BENCH_SCALE_PARTITIONS`` gives."""
    given = os.environ.get(ENV_PARTITIONS)
    if not given:
        return dict(PARTITIONS)
    design = yaml.safe_load(given)
    if not isinstance(design, dict):
        raise SystemExit(
            f"{ENV_PARTITIONS} must be a YAML mapping such as '{{ohlcv: day, trades: day}}', got {given!r}"
        )
    return design


def desk_symbols(n: int) -> list[str]:
    """``n`` symbols: the embedded default's two, then three-letter bases (AAA/USDT, AAB/USDT, ...)."""
    first = ["BTC/USDT", "ETH/USDT"]
    bases = ("".join(p) for p in itertools.product("ABCDEFGHIJKLMNOPQRSTUVWXYZ", repeat=3))
    return [*first, *itertools.islice((f"{b}/USDT" for b in bases), max(0, n - len(first)))][:n]


@dataclass
class Deployment:
    """One project file, one Dagster instance, and the processes started on them."""

    name: str
    symbols: list[str]
    start: date
    work: Path
    env: dict[str, str] = field(default_factory=dict)
    instance: Any = None
    defs: Any = None
    web: Any = None
    daemon: DaemonChild | None = None  # the ticks
    backfiller: DaemonChild | None = None  # the backfill iteration, in a process of its own
    loaded: int = 0  # materializations recorded

    @property
    def label(self) -> str:
        return f"{len(self.symbols)} symbols since {self.start}"

    def setup(self) -> None:
        from dagster import DagsterInstance

        from ccxt_questdb_assets.dagster_dev_process import DEFAULT_ENV
        from ccxt_questdb_assets.defs.definitions import build_definitions
        from ccxt_questdb_assets.defs.listings import sync_symbol_partitions
        from ccxt_questdb_assets.defs.project_config import ProjectConfig
        from ccxt_questdb_assets.services.ports import free_port
        from ccxt_questdb_assets.testing.dagster_dev import write_dagster_home

        self.work.mkdir(parents=True, exist_ok=True)
        nobody = free_port()  # nothing listens there: no exchange, no QuestDB
        project = self.work / "project.yaml"
        project.write_text(
            yaml.safe_dump(
                {
                    "start_date": self.start.isoformat(),
                    "partitions": partitions_design(),
                    "questdb": {
                        "host": "127.0.0.1",
                        "port": nobody,
                        "http_port": nobody,
                        "table_prefix": "bench_scale",
                    },
                    "rate_limiter": {"scope": "process", "max_concurrency": 2},
                    "refresh": {"cron": "*/5 * * * *", "running": True},
                    "exchanges": {
                        "binance": {
                            "base_url": f"http://127.0.0.1:{nobody}",
                            "symbols": self.symbols,
                            "timeframes": ["1m"],
                            "trades": True,
                            "resample_to": ["1h"],
                        }
                    },
                },
                sort_keys=False,
            )
        )
        # The repository's dagster.yaml; runs stay queued (no run is ever dequeued).
        home = write_dagster_home(self.work / "dagster_home", "concurrency:\n  runs:\n    max_concurrent_runs: 0\n")
        self.env = {
            **os.environ,
            **DEFAULT_ENV,
            "DAGSTER_HOME": str(home),
            "CCXT_QUESTDB_PROJECT": str(project),
            "PYTHONWARNINGS": "ignore",
        }
        self.instance = DagsterInstance.from_config(str(home))
        config = ProjectConfig.load(project)
        self.defs = build_definitions(config)
        sync_symbol_partitions(self.instance, config)

    def partitions_def(self, path: Sequence[str]) -> Any:
        from dagster import AssetKey

        return self.defs.get_repository_def().asset_graph.get(AssetKey(list(path))).partitions_def

    def keys_in_window(self, path: Sequence[str], start: date, end: date) -> list[str]:
        from dagster._core.definitions.partitions.context import partition_loading_context

        with partition_loading_context(dynamic_partitions_store=self.instance):
            return window_keys(self.partitions_def(path), start, end)

    def close(self) -> None:
        for child in (self.daemon, self.backfiller):
            if child is not None:
                child.kill()
        if self.web is not None:
            self.web.stop(5.0)
        if self.instance is not None:
            self.instance.dispose()


def _dimension_keys(partitions_def: Any, start: date, end: date) -> list[str]:
    from dagster import TimeWindowPartitionsDefinition
    from dagster._core.definitions.partitions.utils.time_window import TimeWindow

    if isinstance(partitions_def, TimeWindowPartitionsDefinition):
        first = _midnight(start)
        if first.timestamp() > partitions_def.start_timestamp:  # from the window holding ``start`` on
            containing = partitions_def.get_partition_key_for_timestamp(first.timestamp())
            first = partitions_def.time_window_for_partition_key(containing).start
        return list(partitions_def.get_partition_keys_in_time_window(TimeWindow(first, _midnight(end))))
    return list(partitions_def.get_partition_keys())


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def window_keys(partitions_def: Any, start: date, end: date) -> list[str]:
    """The partition keys of ``[start, end)``: each time dimension's keys whose windows overlap it,
    times every key of the other dimensions (what the UI's date range x all symbols selects)."""
    from dagster import MultiPartitionKey, MultiPartitionsDefinition

    if isinstance(partitions_def, MultiPartitionsDefinition):
        dims = partitions_def.partitions_defs
        keys = [_dimension_keys(d.partitions_def, start, end) for d in dims]
        return [
            str(MultiPartitionKey({d.name: k for d, k in zip(dims, combo, strict=True)}))
            for combo in itertools.product(*keys)
        ]
    return _dimension_keys(partitions_def, start, end)


def record_materializations(dep: Deployment, path: Sequence[str], keys: Iterable[str]) -> float:
    """One runless materialization per partition key (as an external ingest would report them)."""
    from dagster import AssetKey, AssetMaterialization

    key = AssetKey(list(path))
    t0 = time.perf_counter()
    for partition in keys:
        dep.instance.report_runless_asset_event(AssetMaterialization(key, partition=partition))
    return time.perf_counter() - t0


def candle_asset_path(dep: Deployment) -> list[str]:
    """The 1m candle ingest asset in the loaded definitions (target 7's rule, in process)."""
    nodes = []
    for node in dep.defs.get_repository_def().asset_graph.asset_nodes:
        entries = [{"label": k, "text": getattr(v, "value", v)} for k, v in node.metadata.items()]
        nodes.append(
            {
                "assetKey": {"path": list(node.key.path)},
                "kinds": sorted(node.kinds),
                "isMaterializable": node.is_materializable,
                "metadataEntries": [e for e in entries if isinstance(e["text"], str)],
                "jobNames": ["-"],
                "repository": {"name": "-", "location": {"name": "-"}},
            }
        )
    return find_candle_asset(nodes, "binance").path


# -- processes -------------------------------------------------------------------------------------


def start_webserver(dep: Deployment) -> Any:
    """``dagster-webserver`` (and the code server it starts) on a free loopback port, in its own group."""
    from ccxt_questdb_assets.dagster_dev_process import DagsterDev
    from ccxt_questdb_assets.services.ports import free_port

    port = free_port()
    log_path = dep.work / "webserver.log"
    cmd = [sys.executable, "-m", "dagster_webserver", "-m", MODULE, "-h", "127.0.0.1", "-p", str(port)]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=dep.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(REPO_ROOT),
        )
    return DagsterDev(url=f"http://127.0.0.1:{port}", home=Path(dep.env["DAGSTER_HOME"]), log_path=log_path, proc=proc)


def wait_webserver(web: Any) -> None:
    from ccxt_questdb_assets.dagster_dev_process import _wait_ready

    _wait_ready(web, STARTUP_BOUND_S)


class DaemonChild:
    """``python -m benchmarks.scale_daemon`` on one deployment: commands in, JSON replies out."""

    def __init__(self, dep: Deployment, role: str) -> None:
        self.dep = dep
        self.role = role
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.progress: list[dict[str, Any]] = []
        self.ready: dict[str, Any] | None = None
        self._log = open(dep.work / f"daemon-{role}-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.scale_daemon"],
            env=dep.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
            cwd=str(REPO_ROOT),
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                message = json.loads(line[len(REPLY) :])
                if "progress" in message:
                    self.progress.append(message)
                else:
                    self.replies.put(message)
        self.replies.put({"error": f"the daemon process exited with code {self.proc.wait()}"})

    def _next(self, bound_s: float) -> dict[str, Any]:
        try:
            return self.replies.get(timeout=bound_s)
        except queue.Empty:
            self.kill()
            raise BoundExceeded(f"no answer within {bound_s:.0f} s") from None

    def wait_ready(self) -> dict[str, Any]:
        if self.ready is None:
            reply = self._next(STARTUP_BOUND_S)
            if not reply.get("ready"):
                raise AssertionError(f"the {self.dep.name} daemon did not load: {reply.get('error')}")
            self.ready = reply
        return self.ready

    def call(self, command: Mapping[str, Any], bound_s: float) -> dict[str, Any]:
        self.wait_ready()
        if not self.alive():
            raise AssertionError(f"the {self.dep.name} daemon is not running")
        assert self.proc.stdin is not None
        self.progress = []
        self.proc.stdin.write(json.dumps(dict(command)) + "\n")
        self.proc.stdin.flush()
        reply = self._next(bound_s)
        if "error" in reply:
            raise AssertionError(f"{self.dep.name} daemon, {dict(command)}: {reply['error']}")
        return reply["reply"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL its process group (it, its code server); safe to call twice."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._log.close()


# -- measuring -------------------------------------------------------------------------------------


def abba(runs: int, cases: Mapping[str, Callable[[], float]]) -> dict[str, list[float]]:
    """``harness.alternate``, except that a case that exceeds its bound is not repeated (its run
    counts as ``inf``, reported as the bound)."""
    names = list(cases)
    out: dict[str, list[float]] = {n: [] for n in names}
    stopped: set[str] = set()
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            if name in stopped:
                continue
            try:
                out[name].append(cases[name]())
            except BoundExceeded as exc:
                log(f"scale: {name}: {exc}")
                stopped.add(name)
                out[name].append(INF)
    return out


def capped(values: Sequence[float], bound: float) -> tuple[float, str]:
    """The median with runs that hit their bound counted as the bound, and a note saying so."""
    hit = sum(1 for v in values if v == INF)
    note = f"{hit} of {len(values)} runs did not finish within the {bound:.0f} s bound (counted as the bound); "
    return median([bound if v == INF else v for v in values]), note if hit else ""


def load_definitions(dep: Deployment) -> dict[str, Any]:
    """A fresh process importing the definitions: seconds from spawn to the import's end, and its report."""
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_daemon", "--load"],
        env=dep.env,
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=STARTUP_BOUND_S,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith(REPLY)]
    if out.returncode != 0 or not lines:
        raise AssertionError(f"definitions of {dep.name} did not load (exit {out.returncode}):\n{out.stderr[-3000:]}")
    report = json.loads(lines[-1][len(REPLY) :])
    report["wall_s"] = report["imported_at"] - spawned
    return report


def materialized_count(status: Mapping[str, Any], dims: Sequence[Mapping[str, Any]]) -> int:
    """How many partitions ``assetPartitionStatuses`` shows materialized."""
    index = {d["name"]: {k: i for i, k in enumerate(d["partitionKeys"])} for d in dims}

    def time_count(ranges: Sequence[Mapping[str, Any]], keys: Mapping[str, int]) -> int:
        return sum(keys[r["endKey"]] - keys[r["startKey"]] + 1 for r in ranges if r["status"] == "MATERIALIZED")

    if "primaryDimensionName" in status:
        primary = status["primaryDimensionName"]
        secondary = next(d["name"] for d in dims if d["name"] != primary)
        total = 0
        for r in status["ranges"]:
            width = index[primary][r["primaryDimEndKey"]] - index[primary][r["primaryDimStartKey"]] + 1
            sub = r["secondaryDim"]
            if "ranges" in sub:
                total += width * time_count(sub["ranges"], index[secondary])
            else:
                total += width * len(sub.get("materializedPartitions") or [])
        return total
    if "ranges" in status:
        return time_count(status["ranges"], index[dims[0]["name"]])
    return len(status.get("materializedPartitions") or [])


@dataclass
class Status:
    """What the partition status queries answered, and how long they took."""

    health_s: float
    live_s: float
    materialized: int
    num_partitions: dict[str, int]
    num_materialized: dict[str, int]
    ranges: int
    health_bytes: int


def status_queries(dep: Deployment, path: Sequence[str], keys: Sequence[Sequence[str]]) -> Status:
    web = dep.web
    try:
        t0 = time.perf_counter()
        health = web.graphql(PARTITION_HEALTH, {"assetKey": {"path": list(path)}}, timeout=QUERY_BOUND_S)
        health_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        live = web.graphql(ASSET_GRAPH_LIVE, {"assetKeys": [{"path": list(k)} for k in keys]}, timeout=QUERY_BOUND_S)
        live_s = time.perf_counter() - t0
    except TimeoutError as exc:  # urllib's read timeout
        raise BoundExceeded(f"partition status of {dep.name}: {exc}") from None
    node = health["assetNodeOrError"]
    status = node["assetPartitionStatuses"]
    stats = {"/".join(n["assetKey"]["path"]): n["partitionStats"] or {} for n in live["assetNodes"]}
    return Status(
        health_s=health_s,
        live_s=live_s,
        materialized=materialized_count(status, node["partitionKeysByDimension"]),
        num_partitions={k: s.get("numPartitions") or 0 for k, s in stats.items()},
        num_materialized={k: s.get("numMaterialized") or 0 for k, s in stats.items()},
        ranges=len(status.get("ranges") or []),
        health_bytes=len(json.dumps(health)),
    )


def launch_backfill(dep: Deployment, path: Sequence[str], partition_names: Sequence[str]) -> tuple[float, str]:
    """The UI's Materialize dialog launching a backfill of the selected partitions of one asset
    (``LaunchAssetChoosePartitionsDialog.onLaunchAsBackfill`` for the asset job: its UI tag,
    ``assetSelection``, ``partitionNames``, ``fromFailure``; no saved run config)."""
    params = {
        "tags": [{"key": "dagster/from_ui", "value": "true"}],
        "assetSelection": [{"path": list(path)}],
        "partitionNames": list(partition_names),
        "fromFailure": False,
    }
    t0 = time.perf_counter()
    try:
        out = dep.web.graphql(LAUNCH_PARTITION_BACKFILL, {"backfillParams": params}, timeout=QUERY_BOUND_S)
    except TimeoutError as exc:
        raise BoundExceeded(f"launchPartitionBackfill of {dep.name}: {exc}") from None
    took = time.perf_counter() - t0
    result = out["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise AssertionError(f"launchPartitionBackfill of {dep.name}: {json.dumps(result)[:3000]}")
    return took, result["backfillId"]


def cancel_backfills(dep: Deployment, ids: Iterable[str]) -> None:
    """Repeated launches are marked canceled: the daemon iteration then submits one backfill."""
    from dagster._core.execution.backfill import BulkActionStatus

    for backfill_id in ids:
        backfill = dep.instance.get_backfill(backfill_id)
        dep.instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELED))


@dataclass
class Progress:
    """What a daemon call did, from its answer or (when it hit its bound) its progress lines."""

    seconds: float
    finished: bool
    runs: int
    planned: int | None
    first_run_s: float | None
    chunk_s: float | None
    reply: dict[str, Any] = field(default_factory=dict)

    @property
    def per_run_s(self) -> float | None:
        """Seconds per submitted run after the first (None with fewer than two)."""
        if self.runs < 2 or self.first_run_s is None:
            return None
        return (self.seconds - self.first_run_s) / (self.runs - 1)

    @property
    def estimate_s(self) -> float | None:
        """When every planned run would have been submitted, at the rate seen (unfinished calls)."""
        if self.finished or not self.planned or self.per_run_s is None or self.first_run_s is None:
            return None
        return self.first_run_s + (self.planned - 1) * self.per_run_s


def progress_of(child: DaemonChild, seconds: float, finished: bool, reply: Mapping[str, Any], chunk: int) -> Progress:
    lines = [p for p in child.progress if "runs" in p]

    def first_at(n: int) -> float | None:
        return next((p["progress"] for p in lines if p["runs"] >= n), None)

    planned = next((p for p in lines if p.get("planned")), None)
    runs = reply.get("runs", lines[-1]["runs"] if lines else 0)
    return Progress(
        seconds=seconds,
        finished=finished,
        runs=runs,
        planned=planned["planned"] if planned else None,
        first_run_s=first_at(1),
        chunk_s=first_at(chunk),
        reply=dict(reply),
    )


def backfill_iteration(dep: Deployment, bound_s: float, chunk: int) -> Progress:
    child = dep.backfiller
    assert child is not None
    child.wait_ready()
    t0 = time.perf_counter()
    try:
        reply = child.call({"op": "backfill"}, bound_s)
        return progress_of(child, reply["seconds"], True, reply, chunk)
    except BoundExceeded:
        return progress_of(child, time.perf_counter() - t0, False, {}, chunk)


def tick(dep: Deployment, name: str, bound_s: float, details: list[str]) -> float:
    """One tick of ``name`` in the deployment's daemon process; a tick past its bound is killed
    (and the process started again at once, to be loaded by the next tick)."""
    child = dep.daemon
    assert child is not None
    try:
        reply = child.call({"op": "tick", "name": name}, bound_s)
    except BoundExceeded as exc:
        runs = child.progress[-1].get("runs", 0) if child.progress else 0
        details.append(f"> {bound_s:.0f} s, {runs} runs submitted by then")
        dep.daemon = DaemonChild(dep, "ticks")
        raise BoundExceeded(f"tick of {name} on {dep.name}: {exc}") from None
    if reply.get("error"):
        raise AssertionError(f"tick of {name} on {dep.name} failed: {reply['error']}")
    details.append(f"{reply['seconds']:.2f} s {reply['status']}, {reply['runs']} runs")
    return reply["seconds"]


# -- the target ------------------------------------------------------------------------------------


def _opt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cron_interval_s(cron: str) -> int:
    from dagster._utils.schedules import get_smallest_cron_interval

    return int(get_smallest_cron_interval(cron).total_seconds())


@target(
    "scale",
    number=8,
    title="300 symbols since 2018 vs 3 symbols for a year: definitions load, partition status, "
    "a one-year backfill launch, daemon ticks",
    needs=(),
)
def scale_target(bench: Bench) -> None:
    today = datetime.now(UTC).date()
    work = Path(tempfile.mkdtemp(prefix="ccxt-bench-scale-"))
    desk = Deployment("desk", desk_symbols(DESK_SYMBOLS), DESK_START, work / "desk")
    small = Deployment("small", desk_symbols(SMALL_SYMBOLS), today - timedelta(days=SMALL_DAYS), work / "small")
    deps = {"desk": desk, "small": small}
    lines: list[str] = []
    try:
        for dep in deps.values():
            dep.setup()
        path = candle_asset_path(desk)
        log(
            f"scale: desk {desk.label}, small {small.label}, partitions {partitions_design()}; the 1m candle "
            f"asset is {'/'.join(path)}"
        )
        lines.append(f"partitions design (the project file's partitions): {partitions_design()}")
        counts = measure_load(bench, deps, lines)
        start_services(deps, path, today)
        measure_status(bench, deps, path, counts, lines)
        measure_ticks(bench, deps, lines)
        measure_backfill(bench, deps, path, today, lines)
    finally:
        for dep in deps.values():
            dep.close()
        shutil.rmtree(work, ignore_errors=True)
        print("\n".join(["scale:", *lines]), flush=True)


def measure_load(bench: Bench, deps: Mapping[str, Deployment], lines: list[str]) -> dict[str, dict[str, Any]]:
    """Figure 1, in fresh processes while nothing else of this target runs."""
    desk, small = deps["desk"], deps["small"]
    runs = bench.runs(3, 5)
    loads: dict[str, list[dict[str, Any]]] = {"desk": [], "small": []}

    def case(name: str) -> Callable[[], float]:
        def run() -> float:
            report = load_definitions(deps[name])
            loads[name].append(report)
            return report["wall_s"]

        return run

    if not bench.quick:
        load_definitions(desk)  # warm-up: the file cache
    wall = abba(runs, {"desk": case("desk"), "small": case("small")})
    imports = {n: median([r["import_s"] for r in loads[n]]) for n in deps}
    snapshot = {n: median([r["snapshot_s"] for r in loads[n]]) for n in deps}
    bench.record(
        "8 scale",
        f"definitions load in a fresh process, {desk.label} vs {small.label}",
        value=median(wall["desk"]),
        baseline=median(wall["small"]),
        unit="s",
        op="<=",
        limit=1.5,
        runs=runs,
        samples=wall,
        note=f"spawn to the import's end (the import alone {imports['desk']:.2f} s vs {imports['small']:.2f} s); "
        f"then the repository snapshot a code server serves: {snapshot['desk']:.3f} s vs {snapshot['small']:.3f} s",
    )
    counts = {n: {a["key"]: a for a in loads[n][-1]["assets"]} for n in deps}
    assets = sorted(counts["desk"].values(), key=lambda a: -a["count"])
    biggest = assets[0]
    bench.record(
        "8 scale",
        f"partitions per asset, {desk.label}, vs Dagster's recommended {PARTITION_BUDGET:,}",
        value=biggest["count"],
        baseline=PARTITION_BUDGET,
        unit="",
        op="<=",
        limit=1.0,
        runs=1,
        note=f"largest {biggest['key']}: {biggest['partitions']}; every asset: "
        + ", ".join(f"{a['key']} {a['count']:,}" for a in assets)
        + f"; {sum(a['count'] for a in assets):,} in all ({max(a['count'] for a in counts['small'].values()):,} "
        "per asset on the small deployment)",
    )
    lines.append("partitions per asset (desk / small) and their partitions definition:")
    for a in assets:
        lines.append(f"  {a['key']}: {a['count']:,} / {counts['small'][a['key']]['count']:,}; {a['partitions']}")
    return counts


def start_services(deps: Mapping[str, Deployment], path: Sequence[str], today: date) -> None:
    """The webservers and daemon processes start while the materializations are recorded."""
    for dep in deps.values():
        dep.web = start_webserver(dep)
        dep.daemon = DaemonChild(dep, "ticks")
        dep.backfiller = DaemonChild(dep, "backfill")
    for name, dep in deps.items():
        keys = dep.keys_in_window(path, today - timedelta(days=LOADED_DAYS), today)
        took = record_materializations(dep, path, keys)
        dep.loaded = len(keys)
        log(f"scale: {name}: {len(keys):,} materializations of {'/'.join(path)} recorded in {took:.1f} s")
    t0 = time.monotonic()
    for dep in deps.values():
        wait_webserver(dep.web)
        dep.daemon.wait_ready()
        dep.backfiller.wait_ready()
    log(f"scale: webservers and daemon processes ready {time.monotonic() - t0:.0f} s after that")


def measure_status(
    bench: Bench,
    deps: Mapping[str, Deployment],
    path: Sequence[str],
    counts: Mapping[str, Mapping[str, Any]],
    lines: list[str],
) -> None:
    """Figure 2: the UI's partition status queries, checked against what was recorded."""
    runs = bench.runs(3, 5)
    asset = "/".join(path)
    ui_asset = find_candle_asset(deps["desk"].web.graphql(ASSET_NODES)["assetNodes"], "binance")
    if ui_asset.path != list(path):
        raise AssertionError(f"the UI's 1m candle asset {ui_asset.path} is not {list(path)}")
    keys = {n: [a["assetKey"]["path"] for a in d.web.graphql(ASSET_NODES)["assetNodes"]] for n, d in deps.items()}
    cold = {n: status_queries(d, path, keys[n]) for n, d in deps.items()}
    for name, status in cold.items():
        loaded = deps[name].loaded
        if status.materialized != loaded or status.num_materialized.get(asset) != loaded:
            raise AssertionError(
                f"{name}: {loaded} materializations recorded, the UI shows {status.materialized} (partition "
                f"health) and {status.num_materialized.get(asset)} (partitionStats)"
            )
        if status.num_partitions.get(asset) != counts[name][asset]["count"]:
            raise AssertionError(
                f"{name}: partitionStats counts {status.num_partitions.get(asset)} partitions of {asset}, the "
                f"definitions {counts[name][asset]['count']}"
            )
    samples: dict[str, dict[str, list[float]]] = {}
    for which in ("health", "live"):
        samples[which] = abba(
            runs,
            {
                n: (lambda n=n, which=which: getattr(status_queries(deps[n], path, keys[n]), f"{which}_s"))
                for n in ("desk", "small")
            },
        )
    d, s = cold["desk"], cold["small"]
    lines.append(
        f"partition status: {deps['desk'].loaded:,} / {deps['small'].loaded:,} partitions of {asset} materialized "
        f"(the last {LOADED_DAYS} days of every symbol); the Partitions tab's answer {d.health_bytes / 1e6:.2f} MB / "
        f"{s.health_bytes / 1e6:.2f} MB, {d.ranges} / {s.ranges} ranges; the first queries (health + live) "
        f"{d.health_s:.2f} + {d.live_s:.2f} s / {s.health_s:.2f} + {s.live_s:.2f} s"
    )
    content = f"{deps['desk'].loaded:,} vs {deps['small'].loaded:,} partitions materialized"
    value, hit = capped(samples["health"]["desk"], QUERY_BOUND_S)
    bench.record(
        "8 scale",
        f"PartitionHealthQuery of {asset} (its Partitions tab), desk vs small",
        value=value,
        baseline=median(samples["health"]["small"]),
        unit="s",
        op="<=",
        limit=None,
        runs=runs,
        samples=samples["health"],
        note=f"{hit}{content}; the first query {d.health_s:.2f} s vs {s.health_s:.2f} s",
    )
    value, hit = capped(samples["live"]["desk"], QUERY_BOUND_S)
    bench.record(
        "8 scale",
        f"AssetGraphLiveQuery of all {len(keys['desk'])} assets (partitionStats, check statuses), desk vs small",
        value=value,
        baseline=median(samples["live"]["small"]),
        unit="s",
        op="<=",
        limit=None,
        runs=runs,
        samples=samples["live"],
        note=f"{hit}the first query {d.live_s:.2f} s vs {s.live_s:.2f} s",
    )


def measure_ticks(bench: Bench, deps: Mapping[str, Deployment], lines: list[str]) -> None:
    """Figure 4: one tick of every running schedule and sensor, the cheap ones first."""
    bound = bench.size(*TICK_BOUND_S)
    described = deps["desk"].daemon.wait_ready()["instigators"]
    stopped = [i["name"] for i in described if not i["running"]]
    order = {"sensor": 0, "automation": 1, "schedule": 2}
    lines.append(
        "ticks (seconds, tick status, runs submitted; the first tick, then the later ones)"
        + (f"; not running, not ticked: {', '.join(stopped)}" if stopped else "")
    )
    for inst in sorted((i for i in described if i["running"]), key=lambda i: (order[i["kind"]], i["name"])):
        name, kind = inst["name"], inst["kind"]
        interval = _cron_interval_s(inst["cron"]) if kind == "schedule" else int(inst.get("min_interval_s") or 0)
        details: dict[str, list[str]] = {"desk": [], "small": []}
        cases = {
            n: (lambda n=n, name=name, details=details: tick(deps[n], name, bound, details[n]))
            for n in ("desk", "small")
        }
        first = abba(1, cases)
        later: dict[str, list[float]] = {"desk": [], "small": []}
        explicit = bench.runs(0, 0)  # --runs N: N ticks of each, whatever they cost
        for i in range(explicit - 1 if explicit else bench.size(0, 2)):
            spent = sum(first["desk"] + later["desk"])
            last = (later["desk"] or first["desk"])[-1]
            if spent == INF or (not explicit and spent + last > TICK_BUDGET_S):
                break
            for n in ("small", "desk") if i % 2 == 0 else ("desk", "small"):
                later[n] += abba(1, {n: cases[n]})[n]
        desk_ticks = later["desk"] or first["desk"]
        value, hit = capped(desk_ticks, bound)
        lines.append(f"  {name} ({kind}, every {interval} s): desk {'; '.join(details['desk'])}")
        lines.append(f"  {' ' * len(name)}  small {'; '.join(details['small'])}")
        which = "the later ticks" if later["desk"] else "the first tick"
        bench.record(
            "8 scale",
            f"tick of {name} ({kind}), desk vs small",
            value=value,
            baseline=median(later["small"] or first["small"]),
            unit="s",
            op="<=",
            limit=None,
            runs=len(desk_ticks),
            samples={"desk": first["desk"] + later["desk"], "small": first["small"] + later["small"]},
            note=f"{hit}{which}; desk ticks: {'; '.join(details['desk'])}",
        )
        if interval:
            bench.record(
                "8 scale",
                f"tick of {name} on the desk vs its {interval} s interval",
                value=value,
                baseline=float(interval),
                unit="s",
                op="<=",
                limit=1.0,
                runs=len(desk_ticks),
                note=f"{which}; a tick longer than the interval is a daemon falling behind",
            )


def measure_backfill(
    bench: Bench, deps: Mapping[str, Deployment], path: Sequence[str], today: date, lines: list[str]
) -> None:
    """Figure 3: the UI's backfill launch, then one backfill daemon iteration on it."""
    from dagster._core.execution.asset_backfill import get_asset_backfill_run_chunk_size

    runs = bench.runs(2, 5)
    asset = "/".join(path)
    names = {n: d.keys_in_window(path, today - timedelta(days=BACKFILL_DAYS), today) for n, d in deps.items()}
    ids: dict[str, list[str]] = {"desk": [], "small": []}

    def case(name: str) -> Callable[[], float]:
        def run() -> float:
            took, backfill_id = launch_backfill(deps[name], path, names[name])
            ids[name].append(backfill_id)
            return took

        return run

    launched = abba(runs, {"desk": case("desk"), "small": case("small")})
    for name, dep in deps.items():
        cancel_backfills(dep, ids[name][1:])
    value, hit = capped(launched["desk"], QUERY_BOUND_S)
    bench.record(
        "8 scale",
        f"launchPartitionBackfill of {asset}, the last {BACKFILL_DAYS} days x every symbol, desk vs small",
        value=value,
        baseline=median(launched["small"]),
        unit="s",
        op="<=",
        limit=None,
        runs=runs,
        samples=launched,
        note=f"{hit}{len(names['desk']):,} vs {len(names['small']):,} partition names in the mutation",
    )
    chunk = get_asset_backfill_run_chunk_size()
    bound = bench.size(*BACKFILL_BOUND_S)
    it = {n: backfill_iteration(deps[n], bound, chunk) for n in ("small", "desk")}
    for name, p in it.items():
        lines.append(
            f"backfill iteration {name}: {'finished' if p.finished else 'stopped at the bound'} after "
            f"{p.seconds:.1f} s; {p.planned or '?'} runs planned, {p.runs} submitted "
            f"(the first after {_opt(p.first_run_s)} s, {chunk} after {_opt(p.chunk_s)} s, "
            f"{_opt(p.per_run_s, 2)} s per run)"
            + (f"; all would be submitted after about {p.estimate_s / 60:.0f} min" if p.estimate_s else "")
            + (f"; backfill {', '.join(p.reply['statuses'])}" if p.reply.get("statuses") else "")
            + (f"; errors: {p.reply['errors']}" if p.reply.get("errors") else "")
        )
    d, s = it["desk"], it["small"]
    if d.finished:
        state = f"all {d.runs} runs submitted"
    else:
        state = f"stopped at the {bound:.0f} s bound with {d.runs} of {d.planned or '?'} runs submitted" + (
            f" (all after about {d.estimate_s / 60:.0f} min at that rate)" if d.estimate_s else ""
        )
    bench.record(
        "8 scale",
        "backfill daemon iteration on that backfill until its runs are submitted, desk vs small",
        value=d.seconds if d.finished else bound,
        baseline=s.seconds,
        unit="s",
        op="<=",
        limit=None,
        runs=1,
        note=f"{state}; the first submitted after {_opt(d.first_run_s)} s (the runs planned before it), "
        f"{_opt(d.per_run_s, 2)} s per run; small: {s.runs} runs in {s.seconds:.1f} s",
    )

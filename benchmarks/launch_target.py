"""Target 7: one-partition runs launched as the UI's Materialize button launches them.

A real ``dagster dev`` of the project (``testing.dagster_dev``: webserver, daemon, code server)
on the benchmark's QuestDB and exchange emulator, with ``CCXT_QUESTDB_PROJECT`` pointing at a
project file shaped like the embedded default (binance with 1m candles, trades and 1h resampled,
the same limiter) but with one symbol, no listing pattern and a fresh table prefix. The 1m
candle ingest asset is found in the loaded definitions (GraphQL ``assetNodes``: kind ``ccxt``,
metadata ``questdb/kind: ohlcv`` and ``ccxt/timeframe: 1m``, or a key like ``*ohlcv*1m*``), not
named here, so the target follows renamed asset keys.

Each run is launched exactly as the Dagster 1.13 UI launches one selected partition from the
asset's "Materialize" dialog (``LaunchAssetChoosePartitionsDialog.onLaunchAsSingleRun``):

1. ``ConfigPartitionForAssetJobQuery``: the job's tags and run config for that partition (the
   ``dagster/partition`` tag and one ``dagster/partition/<dimension>`` tag per dimension);
2. ``LaunchPipelineExecution`` with ``executionParams``: ``mode: default``, those tags plus
   ``dagster/from_ui: true``, the run config YAML, and a selector naming the job the UI picks
   (the asset's first job, ``getCommonJob``), ``assetSelection: [the asset]`` and
   ``assetCheckSelection``: every check of the asset whose jobs include that job
   (``getAssetCheckHandleInputs``), which is what the dialog selects by default.

N runs (``--runs``, default 5; 3 with ``--quick``), one after another, each a different day of one
symbol that nothing has stored yet, so every run fetches its 1,440 candles. For each run, read
back through GraphQL (the run's events and step stats): launch to success (the mutation sent until
the run's end as the instance records it), submit (mutation sent until the run is enqueued),
queued (enqueued until the run worker started the run: the coordinator's dequeue up to
``RUN_STARTING``, then the run worker's process start), running (run start to end), the asset
step's duration from its step events, the check steps, and the engine's own fetch time from the
asset's log line (``... rows written in X s``). Each run must succeed and the day must hold 1,440
candles in QuestDB.

Figures: the median launch to success against the 10 s budget of a one-day run on the 2-core
machine, and the share of it that is the run's own work (the asset step).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from benchmarks.harness import Bench, log, median, target

SYMBOL = "BTC/USDT"
FIRST_DAY = date(2024, 3, 1)  # each run takes the next day: cold, nothing stored yet
CANDLES_PER_DAY = 1440
BUDGET_S = 10.0  # issue 11: a one-partition run of one day succeeds in at most 10 s
RUN_TIMEOUT_S = 600.0
POLL_S = 0.2
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")

# -- GraphQL: what the UI sends, and what we read back ------------------------------------------

ASSET_NODES = """
{
  assetNodes {
    assetKey { path }
    opNames
    jobNames
    kinds
    isMaterializable
    isExecutable
    metadataEntries {
      label
      ... on TextMetadataEntry { text }
    }
    partitionDefinition {
      type
      dimensionTypes { name type dynamicPartitionsDefinitionName }
    }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name jobNames canExecuteIndividually } }
    }
    repository { name location { name } }
  }
}
"""

# The UI's query (ui-core/src/launchpad/ConfigFetch.tsx, CONFIG_PARTITION_FOR_ASSET_JOB_QUERY).
CONFIG_PARTITION_FOR_ASSET_JOB = """
query ConfigPartitionForAssetJobQuery($repositoryName: String!, $repositoryLocationName: String!,
    $jobName: String!, $partitionName: String!, $assetKeys: [AssetKeyInput!]!) {
  pipelineOrError(params: {pipelineName: $jobName, repositoryName: $repositoryName,
                           repositoryLocationName: $repositoryLocationName}) {
    __typename
    ... on Pipeline {
      id
      partition(partitionName: $partitionName, selectedAssetKeys: $assetKeys) {
        name
        runConfigOrError { __typename ... on PartitionRunConfig { yaml } ... on PythonError { message } }
        tagsOrError { __typename ... on PartitionTags { results { key value } } ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

# The UI's mutation (ui-core/src/runs/RunUtils.tsx, LAUNCH_PIPELINE_EXECUTION_MUTATION).
LAUNCH_PIPELINE_EXECUTION = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { id pipelineName } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
  }
}
"""

RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"

RUN_DETAIL = """
query($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run {
      status creationTime startTime endTime
      tags { key value }
      stepStats { stepKey status startTime endTime }
    }
  }
}
"""

RUN_EVENTS = """
query($id: ID!, $cursor: String) {
  logsForRun(runId: $id, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp stepKey eventType }
        ... on ExecutionStepFailureEvent { error { message } }
        ... on RunFailureEvent { error { message } }
        ... on EngineEvent { error { message } }
        ... on MaterializationEvent {
          metadataEntries {
            label
            ... on IntMetadataEntry { intValue }
            ... on FloatMetadataEntry { floatValue }
          }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

#: The engine's log line for a fetched window (``ingest_assets._describe``).
FETCH_LINE = re.compile(r"(\d+) requests, (\d+) rows written in ([0-9.]+) s")


# -- the asset under test -------------------------------------------------------------------------


@dataclass(frozen=True)
class CandleAsset:
    """The 1m candle ingest asset as the UI's Materialize dialog sees it."""

    path: list[str]
    op: str
    job: str
    checks: list[dict[str, Any]]
    dimensions: list[dict[str, Any]]
    table: str | None
    location: str
    repository: str

    @property
    def name(self) -> str:
        return "/".join(self.path)


def _metadata(node: Mapping[str, Any]) -> dict[str, str]:
    return {e["label"]: e["text"] for e in node.get("metadataEntries") or [] if "text" in e}


def _is_candle_ingest(node: Mapping[str, Any]) -> bool:
    md, kinds = _metadata(node), set(node.get("kinds") or [])
    if md.get("questdb/kind") == "ohlcv" and md.get("ccxt/timeframe") == "1m" and "ccxt" in kinds:
        return True
    name = "/".join(node["assetKey"]["path"]).lower()
    if "questdb/kind" in md:
        return False
    return bool(re.search(r"ohlcv.*1m", name)) and not re.search(r"resampl|trade", name)  # no metadata: by name


def find_candle_asset(nodes: Sequence[Mapping[str, Any]], exchange: str) -> CandleAsset:
    """The exchange's 1m candle ingest asset; a clear error when it is not exactly one."""
    found = [n for n in nodes if _is_candle_ingest(n) and n.get("isMaterializable", True)]
    if len(found) > 1:
        found = [
            n
            for n in found
            if _metadata(n).get("ccxt/exchange") == exchange or exchange in "/".join(n["assetKey"]["path"])
        ]
    if len(found) != 1:
        names = sorted("/".join(n["assetKey"]["path"]) for n in nodes)
        raise AssertionError(
            f"expected one 1m candle ingest asset of {exchange}, found "
            f"{['/'.join(n['assetKey']['path']) for n in found]} among {names}"
        )
    node = found[0]
    jobs = node.get("jobNames") or []
    if not jobs:
        raise AssertionError(f"asset {node['assetKey']['path']} is in no job: the UI could not launch it")
    job = jobs[0]  # the UI's getCommonJob(assets) with no preferred job: the first job of the asset
    checks_or_error = node.get("assetChecksOrError") or {}
    checks = [
        c for c in checks_or_error.get("checks") or [] if not c.get("jobNames") or job in c["jobNames"]
    ]  # getAssetCheckHandleInputs
    md = _metadata(node)
    table = md.get("questdb/table") or (md.get("dagster/table_name") or "").split(".", 1)[-1] or None
    dims = (node.get("partitionDefinition") or {}).get("dimensionTypes") or []
    repo = node["repository"]
    return CandleAsset(
        path=list(node["assetKey"]["path"]),
        op=(node.get("opNames") or [""])[0],
        job=job,
        checks=checks,
        dimensions=sorted(dims, key=lambda d: d["name"]),
        table=table,
        location=repo["location"]["name"],
        repository=repo["name"],
    )


def partition_key(asset: CandleAsset, day: date, symbol: str) -> str:
    """The run's partition key: the date and the symbol in dimension order (``2024-03-01|BTC/USDT``)."""
    if not asset.dimensions:
        return str(day)
    parts = []
    for dim in asset.dimensions:
        parts.append(str(day) if dim["type"] == "TIME_WINDOW" else symbol)
    return "|".join(parts)


def ui_execution_params(asset: CandleAsset, tags: Sequence[Mapping[str, str]], run_config_yaml: str) -> dict[str, Any]:
    """``executionParamsForAssetJob`` + ``runConfigData`` + ``paramsWithUIExecutionTags``, as the UI builds them."""
    ui_tags = [{"key": t["key"], "value": t["value"]} for t in tags if t["key"] != "dagster/from_ui"]
    ui_tags.append({"key": "dagster/from_ui", "value": "true"})
    return {
        "mode": "default",
        "executionMetadata": {"tags": ui_tags},
        "runConfigData": run_config_yaml or "",
        "selector": {
            "repositoryLocationName": asset.location,
            "repositoryName": asset.repository,
            "pipelineName": asset.job,
            "assetSelection": [{"path": asset.path}],
            "assetCheckSelection": [{"name": c["name"], "assetKey": {"path": asset.path}} for c in asset.checks],
        },
    }


# -- one run --------------------------------------------------------------------------------------


@dataclass
class LaunchedRun:
    day: date
    run_id: str = ""
    status: str = ""
    prepare_s: float = 0.0  # the UI's config/tags query before the mutation
    launch_to_success_s: float = 0.0  # mutation sent -> run end (as recorded)
    launch_to_seen_s: float = 0.0  # mutation sent -> SUCCESS seen by polling
    launch_to_created_s: float = 0.0  # mutation sent -> run enqueued
    queued_s: float = 0.0  # enqueued -> run started (dequeue + run worker start)
    dequeue_s: float | None = None  # enqueued -> launched by the run coordinator (RUN_STARTING)
    starting_s: float | None = None  # launched -> started (run worker process, imports, code load)
    running_s: float = 0.0  # run start -> run end
    asset_step_s: float = 0.0
    check_steps_s: float = 0.0  # sum of the check steps' durations (0 when they run in the asset's step)
    steps: dict[str, tuple[float, float]] = field(default_factory=dict)  # step -> (start after run start, duration)
    fetch_s: float | None = None  # the engine's own fetch/write time, from its log line
    requests: int | None = None
    rows_logged: int | None = None
    rows_stored: int = 0
    load_before: float = 0.0
    load_after: float = 0.0

    @property
    def work_share(self) -> float:
        return self.asset_step_s / self.launch_to_success_s if self.launch_to_success_s else float("nan")


def _ts(event: Mapping[str, Any]) -> float:
    return int(event["timestamp"]) / 1000.0


def _events(dev: Any, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        out = dev.graphql(RUN_EVENTS, {"id": run_id, "cursor": cursor})["logsForRun"]
        if out["__typename"] != "EventConnection":
            raise AssertionError(f"logsForRun {run_id}: {out}")
        events += out["events"]
        cursor = out["cursor"]
        if not out["hasMore"]:
            return events


def _run_errors(events: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"{e['__typename']} {e.get('stepKey') or ''}: {e.get('message', '')}: {e['error']['message']}"
        for e in events
        if e.get("error")
    ]
    return "\n".join(lines[-6:]) or "(no error events)"


def launch_one(bench: Bench, dev: Any, asset: CandleAsset, day: date, symbol: str) -> LaunchedRun:
    run = LaunchedRun(day=day, load_before=os.getloadavg()[0])
    key = partition_key(asset, day, symbol)
    clicked = time.time()
    config = dev.graphql(
        CONFIG_PARTITION_FOR_ASSET_JOB,
        {
            "repositoryName": asset.repository,
            "repositoryLocationName": asset.location,
            "jobName": asset.job,
            "partitionName": key,
            "assetKeys": [{"path": asset.path}],
        },
    )["pipelineOrError"]
    partition = config.get("partition") if config["__typename"] == "Pipeline" else None
    if not partition or partition["tagsOrError"]["__typename"] != "PartitionTags":
        raise AssertionError(f"partition {key} of job {asset.job}: {config}")
    tags = partition["tagsOrError"]["results"]
    run_config = partition["runConfigOrError"].get("yaml") or ""
    assert any(t["key"] == "dagster/partition" and t["value"] == key for t in tags), tags
    params = ui_execution_params(asset, tags, run_config)
    sent = time.time()
    run.prepare_s = sent - clicked
    out = dev.graphql(LAUNCH_PIPELINE_EXECUTION, {"executionParams": params})["launchPipelineExecution"]
    if out["__typename"] != "LaunchRunSuccess":
        raise AssertionError(f"launchPipelineExecution of {asset.name} {key}: {out}")
    run.run_id = out["run"]["id"]

    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        status = dev.graphql(RUN_STATUS, {"id": run.run_id})["runOrError"].get("status")
        if status in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run.run_id} ({key}) is still {status} after {RUN_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    run.launch_to_seen_s = time.time() - sent
    run.load_after = os.getloadavg()[0]
    run.status = status

    detail = dev.graphql(RUN_DETAIL, {"id": run.run_id})["runOrError"]
    events = _events(dev, run.run_id)
    if status != "SUCCESS":
        raise AssertionError(f"run {run.run_id} ({key}) ended {status}:\n{_run_errors(events)}")
    first: dict[str, float] = {}
    for e in events:  # the first event of each type; run events are RUN_* (PIPELINE_* in older schemas)
        kind = (e.get("eventType") or "").replace("PIPELINE_", "RUN_")
        if kind and kind not in first:
            first[kind] = _ts(e)
    enqueued = first.get("RUN_ENQUEUED", detail["creationTime"])
    started = first.get("RUN_START", detail["startTime"])
    ended = first.get("RUN_SUCCESS", detail["endTime"])
    run.launch_to_created_s = enqueued - sent
    run.launch_to_success_s = ended - sent
    run.queued_s = started - enqueued
    if "RUN_STARTING" in first:  # the queued run coordinator launched it (Dagster 1.13 logs no RUN_DEQUEUED)
        run.dequeue_s = first["RUN_STARTING"] - enqueued
        run.starting_s = started - first["RUN_STARTING"]
    run.running_s = ended - started
    check_names = {c["name"] for c in asset.checks}
    for s in detail["stepStats"]:
        if s["startTime"] is None or s["endTime"] is None:
            continue
        took = s["endTime"] - s["startTime"]
        run.steps[s["stepKey"]] = (s["startTime"] - started, took)
        if s["stepKey"] == asset.op:
            run.asset_step_s = took
        elif any(s["stepKey"].endswith(name) for name in check_names):
            run.check_steps_s += took
    if asset.op not in run.steps:
        raise AssertionError(f"run {run.run_id}: no step {asset.op!r} among {sorted(run.steps)}")
    fetched = [
        FETCH_LINE.search(e.get("message") or "")
        for e in events
        if e.get("stepKey") == asset.op and e["__typename"] == "LogMessageEvent"
    ]
    fetched = [m for m in fetched if m]
    if fetched:
        run.requests = sum(int(m.group(1)) for m in fetched)
        run.rows_logged = sum(int(m.group(2)) for m in fetched)
        run.fetch_s = sum(float(m.group(3)) for m in fetched)
    run.rows_stored = _stored_rows(bench, asset, symbol, day)
    if run.rows_stored != CANDLES_PER_DAY:
        raise AssertionError(f"run {run.run_id} ({key}): {run.rows_stored} candles stored, expected {CANDLES_PER_DAY}")
    return run


def _stored_rows(bench: Bench, asset: CandleAsset, symbol: str, day: date) -> int:
    if not asset.table:
        raise AssertionError(f"asset {asset.name} names no QuestDB table in its metadata")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rows = bench.client.query(
        f'SELECT count() FROM "{asset.table}" WHERE symbol = %s AND ts >= %s AND ts < %s',
        (symbol, start, start + timedelta(days=1)),
    )
    return int(rows[0][0])


# -- the target -----------------------------------------------------------------------------------


def project_mapping(bench: Bench, prefix: str) -> dict[str, Any]:
    """The embedded default project's shape (one symbol, no listing pattern) on the benchmark's services."""
    conn = bench.connection
    return {
        "start_date": "2024-01-01",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "rate_limiter": {"scope": "process", "max_concurrency": 2},
        "exchanges": {
            "binance": {
                "base_url": bench.emulator.base_url,
                "symbols": [SYMBOL],
                "timeframes": ["1m"],
                "trades": True,
                "resample_to": ["1h"],
            }
        },
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(runs: Sequence[LaunchedRun], asset: CandleAsset, startup_s: float) -> list[str]:
    lines = [
        f"launch: asset {asset.name} (job {asset.job}, step {asset.op}), checks selected as the UI does: "
        f"{', '.join(c['name'] for c in asset.checks) or 'none'}; dagster dev ready in {startup_s:.1f} s",
        "run  day         launch->success  submit  queued (dequeue+start)  running  asset step  check steps  "
        "engine fetch  work share  load",
    ]
    for i, r in enumerate(runs, 1):
        split = f"({_fmt(r.dequeue_s)}+{_fmt(r.starting_s)})" if r.dequeue_s is not None else ""
        lines.append(
            f"{i:<4} {r.day}  {r.launch_to_success_s:>14.2f}s  {r.launch_to_created_s:>5.2f}s  "
            f"{r.queued_s:>6.2f}s {split:<15} "
            f"{r.running_s:>7.2f}s  {r.asset_step_s:>9.2f}s  {r.check_steps_s:>10.2f}s  "
            f"{_fmt(r.fetch_s):>11}s  {r.work_share:>9.1%}  {r.load_before:.1f}->{r.load_after:.1f}"
        )

    def stat(name: str, values: Sequence[float]) -> str:
        return f"{name} median {median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"

    lines.append(
        stat("launch->success", [r.launch_to_success_s for r in runs])
        + "; "
        + stat("the UI's partition config query before it", [r.prepare_s for r in runs])
    )
    lines.append(stat("submit (mutation sent -> run enqueued)", [r.launch_to_created_s for r in runs]))
    lines.append(stat("queued", [r.queued_s for r in runs]) + "; " + stat("running", [r.running_s for r in runs]))
    lines.append(
        stat("asset step", [r.asset_step_s for r in runs]) + "; " + stat("check steps", [r.check_steps_s for r in runs])
    )
    fetch = [r.fetch_s for r in runs if r.fetch_s is not None]
    if fetch:
        lines.append(stat("engine fetch+write", fetch))
    launch = median([r.launch_to_success_s for r in runs])
    share = median([r.asset_step_s for r in runs]) / launch
    fetch_share = f", engine fetch+write {median(fetch) / launch:.1%}" if fetch else ""
    lines.append(f"work / launch->success: asset step {share:.1%}{fetch_share} (of the medians)")
    verdict = "PASS" if launch <= BUDGET_S else "FAIL"
    lines.append(
        f"{verdict}: median launch->success {launch:.2f} s vs the {BUDGET_S:.0f} s budget "
        f"({len(runs)} runs, every run SUCCESS with {CANDLES_PER_DAY:,} candles stored)"
    )
    return lines


@target(
    "launch",
    number=7,
    title="one-day, one-partition runs launched as the UI launches them: launch to success",
    needs=("questdb", "emulator"),
)
def launch_target(bench: Bench) -> None:
    from ccxt_questdb_assets.testing.dagster_dev import dagster_dev

    n = bench.runs(3, 5)
    prefix = bench.table_prefix("launch")
    work = Path(tempfile.mkdtemp(prefix="ccxt-bench-launch-"))
    project = work / "project.yaml"
    project.write_text(yaml.safe_dump(project_mapping(bench, prefix)))
    runs: list[LaunchedRun] = []
    try:
        log(f"launch: starting dagster dev (load {os.getloadavg()[0]:.1f})")
        t0 = time.monotonic()
        with dagster_dev(work, env={"CCXT_QUESTDB_PROJECT": str(project)}) as dev:
            startup_s = time.monotonic() - t0
            asset = find_candle_asset(dev.graphql(ASSET_NODES)["assetNodes"], "binance")
            log(
                f"launch: dagster dev ready in {startup_s:.1f} s; asset {asset.name}, job {asset.job}, "
                f"checks {[c['name'] for c in asset.checks]}"
            )
            for dim in asset.dimensions:
                if dim.get("dynamicPartitionsDefinitionName"):
                    dev.add_dynamic_partitions(dim["dynamicPartitionsDefinitionName"], [SYMBOL])
            for i in range(n):
                day = FIRST_DAY + timedelta(days=i)
                run = launch_one(bench, dev, asset, day, SYMBOL)
                runs.append(run)
                log(
                    f"launch: run {i + 1}/{n} {day} {run.run_id[:8]}: launch->success {run.launch_to_success_s:.2f} s "
                    f"(queued {run.queued_s:.2f}, running {run.running_s:.2f}, asset step {run.asset_step_s:.2f}, "
                    f"fetch {_fmt(run.fetch_s)}), load {run.load_before:.1f}->{run.load_after:.1f}; steps (start "
                    f"after run start, duration): "
                    + ", ".join(f"{k} +{a:.2f} s {d:.2f} s" for k, (a, d) in run.steps.items())
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report(runs, asset, startup_s)), flush=True)
    launch = [r.launch_to_success_s for r in runs]
    step = [r.asset_step_s for r in runs]
    samples = {
        "launch_to_success": launch,
        "queued": [r.queued_s for r in runs],
        "running": [r.running_s for r in runs],
        "asset_step": step,
        "check_steps": [r.check_steps_s for r in runs],
        "engine_fetch": [r.fetch_s for r in runs if r.fetch_s is not None],
        "load_1m": [r.load_before for r in runs],
    }
    bench.record(
        "7 launch",
        f"one-day run of {asset.name} launched as the UI does, launch to success, vs the {BUDGET_S:.0f} s budget",
        value=median(launch),
        baseline=BUDGET_S,
        unit="s",
        op="<=",
        limit=1.0,
        runs=n,
        samples=samples,
        note=f"median queued {median(samples['queued']):.2f} s, running {median(samples['running']):.2f} s, "
        f"asset step {median(step):.2f} s, check steps {median(samples['check_steps']):.2f} s; "
        f"dagster dev ready in {startup_s:.1f} s",
    )
    bench.record(
        "7 launch",
        "the run's own work (asset step) vs launch to success",
        value=median(step),
        baseline=median(launch),
        unit="s",
        op="<=",
        limit=None,
        runs=n,
    )

"""Materializations of the project's candle asset in forked children, for crash, outage and
concurrency tests (``tests/test_reliability_crashes.py``).

Importing Dagster, ccxt and the project costs about 8 s of CPU per process. A fork server
(``multiprocessing``'s ``forkserver``) pays it once; every run is then a child forked from it in
milliseconds, with a real ``DagsterInstance`` on a ``DAGSTER_HOME`` and ``materialize`` of
the asset built from a :class:`ProjectConfig`, exactly as a run worker executes it. A test can
SIGKILL such a child at any moment (``RunProcess.kill``) or let it kill itself at a chosen
write (:class:`Trip`), and rerun in its own process with :func:`run_materialization`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PRELOAD",
    "TRIP_PHASES",
    "TRIP_TARGETS",
    "RunProcess",
    "RunSpec",
    "Trip",
    "child_main",
    "make_event",
    "range_tags",
    "run_materialization",
    "run_statuses",
    "shut_down",
    "start_run",
    "warm_up",
]

#: Modules the fork server imports once for every child.
PRELOAD = [
    "pandas",
    "numpy",
    "psycopg",
    "questdb.ingress",
    "aiohttp",
    "ccxt.async_support",
    "dagster",
    "ccxt_questdb_assets.defs.definitions",
    "ccxt_questdb_assets.testing.dagster_runs",
]

TRIP_TARGETS = ("data", "coverage")
TRIP_PHASES = ("before", "during", "after")


@dataclass(frozen=True)
class Trip:
    """SIGKILL the run's process at its first write to the ``target`` table that reaches
    ``at_ms`` (``data``: a candle opening at or after it; ``coverage``: a claim ending at or
    after it), whatever the engine's batching: ``before`` the rows are sent, ``during`` (a timer
    fires ``delay_s`` after the write starts, while it is sent or made visible), or ``after`` it
    is committed but before anyone waited for it to be visible."""

    target: str
    at_ms: int
    phase: str
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.target not in TRIP_TARGETS or self.phase not in TRIP_PHASES:
            raise ValueError(f"bad trip {self!r}: target in {TRIP_TARGETS}, phase in {TRIP_PHASES}")


@dataclass(frozen=True)
class RunSpec:
    """One Dagster run: the candle asset of ``symbol`` over days ``first_day..last_day`` (a
    partition range, one run), on the instance at ``home``, with the project mapping given."""

    project: dict[str, Any]
    home: str
    symbol: str
    first_day: str
    last_day: str
    timeframe: str = "1m"
    checks: bool = False  # also run the asset's checks (no_gaps, unique timestamps, OHLC sanity)
    probe_limiter: bool = False  # report the rate limiter's state and events after the run
    trip: Trip | None = None
    out_dir: str | None = None  # the child's log and result file go here
    tag: str = "run"

    @property
    def result_path(self) -> Path:
        assert self.out_dir is not None
        return Path(self.out_dir) / f"{self.tag}.json"

    @property
    def log_path(self) -> Path:
        assert self.out_dir is not None
        return Path(self.out_dir) / f"{self.tag}.log"


#: Run tag holding the spec's ``tag``, to find a run in the instance (a killed run reports nothing).
TEST_RUN_TAG = "ccxt_questdb/test_run"


def range_tags(symbol: str, first_day: str, last_day: str) -> dict[str, str]:
    """Run tags selecting the days ``first_day..last_day`` of ``symbol`` (one run, as a backfill makes)."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    return {
        ASSET_PARTITION_RANGE_START_TAG: f"{first_day}|{symbol}",
        ASSET_PARTITION_RANGE_END_TAG: f"{last_day}|{symbol}",
    }


def run_statuses(home: str, *tags: str) -> list[str]:
    """Statuses (sorted) of the runs in the instance at ``home`` tagged with one of ``tags``."""
    from dagster import DagsterInstance, RunsFilter

    with DagsterInstance.from_config(home) as instance:
        return sorted(r.status.value for r in instance.get_runs(RunsFilter(tags={TEST_RUN_TAG: list(tags)})))


def run_materialization(spec: RunSpec) -> dict[str, Any]:
    """Materialize the spec's partitions (and checks) in this process; a JSON-able summary."""
    from dagster import AssetSelection, DagsterInstance, materialize

    from ccxt_questdb_assets.defs.asset_keys import ohlcv_key
    from ccxt_questdb_assets.defs.build import build_resources
    from ccxt_questdb_assets.defs.ingest_assets import build_ingest_assets
    from ccxt_questdb_assets.defs.project_config import ProjectConfig

    cfg = ProjectConfig.from_mapping(spec.project)
    ex = cfg.exchanges[0]
    key = ohlcv_key(ex.exchange_id, spec.timeframe)
    asset = next(a for a in build_ingest_assets(cfg) if a.key == key)
    selection = AssetSelection.assets(key) if spec.checks else AssetSelection.assets(key).without_checks()
    resources = build_resources(cfg)
    probe = _LimiterProbe(resources["rate_limiter"], ex.exchange_id) if spec.probe_limiter else None
    started = time.monotonic()
    with DagsterInstance.from_config(spec.home) as instance:
        result = materialize(
            [asset],
            selection=selection,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            tags={**range_tags(spec.symbol, spec.first_day, spec.last_day), TEST_RUN_TAG: spec.tag},
        )
    out: dict[str, Any] = {
        "tag": spec.tag,
        "run_id": result.run_id,
        "success": result.success,
        "seconds": round(time.monotonic() - started, 3),
        "errors": [_error_text(e) for e in result.get_step_failure_events()],
        "partitions": 0,
        "metadata": {},
        "checks": {},
    }
    events = result.asset_materializations_for_node(key.to_python_identifier())
    out["partitions"] = len(events)
    if events:  # the run over its partitions: counts summed, coverage of the least covered day
        mds = [e.metadata for e in events]
        out["metadata"] = {
            k: sum(md[k].value for md in mds)
            for k in ("rows_written", "exchange_requests", "rows_already_present", "dagster/row_count")
        }
        out["metadata"].update({k: min(md[k].value for md in mds) for k in ("coverage_before", "coverage_after")})
    for ev in result.get_asset_check_evaluations():  # one per partition: a check passed if it passed on every day
        out["checks"][ev.check_name] = out["checks"].get(ev.check_name, True) and bool(ev.passed)
    if probe is not None:
        out["limiter"] = probe.finish()
    return out


class _LimiterProbe:
    """Records the run's limiter events; afterwards proves every slot of the key can be taken."""

    def __init__(self, resource: Any, exchange_id: str) -> None:
        self.limiter = resource.get_limiter(exchange_id)
        self.events: list[tuple[str, float, str]] = []
        self.remove = self.limiter.add_listener(
            lambda e: self.events.append((e.kind, time.time(), str(e.info.get("source", ""))))
        )

    def finish(self) -> dict[str, Any]:
        self.remove()
        lim = self.limiter
        after_run = {"in_flight": lim.in_flight, "waiting": lim.waiting, "mode": lim.mode}

        async def hold_all() -> int:
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(lim.concurrency):
                    await stack.enter_async_context(lim.acquire(timeout=10))
                return lim.in_flight

        held = asyncio.run(hold_all())
        kinds = Counter(k for k, _, _ in self.events)
        return {
            **after_run,
            "concurrency": lim.concurrency,
            "held_all": held,
            "in_flight_after_hold": lim.in_flight,
            "fallback_events": kinds["fallback"],
            "resumed_events": kinds["resumed"],
            "admitted_by_source": dict(Counter(src for k, _, src in self.events if k == "admitted")),
            "events": [e for e in self.events if e[0] not in ("admitted", "wait")],
            "stats": lim.stats.as_dict(),
        }


def _error_text(event: Any) -> str:
    data = getattr(event, "step_failure_data", None)
    err = getattr(data, "error", None)
    if err is None:
        return str(getattr(event, "message", event))
    while getattr(err, "cause", None) is not None and err.cls_name in ("DagsterExecutionStepExecutionError",):
        err = err.cause
    return f"{err.cls_name}: {err.message.strip()}"


# ---------------------------------------------------------------------------------- children
def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_trip(trip: Trip, data_table: str, coverage_table: str) -> None:
    """Make this process SIGKILL itself at the trip's write (writes to other tables pass)."""
    import pandas as pd

    from ccxt_questdb_assets.storage.client import QuestDBClient

    table, column = (data_table, "ts") if trip.target == "data" else (coverage_table, "end_ts")
    original = QuestDBClient.write_frame
    fired = threading.Event()

    def reaches(frame: Any) -> bool:
        return bool(pd.to_datetime(frame[column], utc=True).max().value // 1_000_000 >= trip.at_ms)

    def write_frame(self: Any, name: str, frame: Any, **kwargs: Any) -> None:
        if name != table or fired.is_set() or not reaches(frame):
            return original(self, name, frame, **kwargs)
        fired.set()
        if trip.phase == "before":
            _die()
        if trip.phase == "during":
            timer = threading.Timer(trip.delay_s, _die)
            timer.daemon = True
            timer.start()
        original(self, name, frame, **kwargs)
        if trip.phase == "after":
            _die()
        return None

    QuestDBClient.write_frame = write_frame  # type: ignore[method-assign]


def child_main(spec: RunSpec, go: Any = None) -> None:
    """Body of a forked run: log to the spec's log file, wait for ``go`` (an Event) if given,
    run, and write the summary (or the error) as JSON to the spec's result file."""
    log = open(spec.log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        if spec.trip is not None:
            from ccxt_questdb_assets.defs.project_config import ProjectConfig

            tables = ProjectConfig.from_mapping(spec.project).exchanges[0].ohlcv.tables
            install_trip(spec.trip, tables.data, tables.coverage)
        if go is not None and not go.wait(120):
            raise TimeoutError("no go signal within 120 s")
        out = run_materialization(spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which decides
        out = {
            "tag": spec.tag,
            "success": False,
            "crashed": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc()[-4000:],
        }
    tmp = spec.result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, default=str))
    tmp.replace(spec.result_path)
    log.flush()


@dataclass
class RunProcess:
    """A forked run: its process, its spec; ``kill`` is SIGKILL by pid."""

    process: Any
    spec: RunSpec
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def kill(self) -> None:
        self.process.kill()
        self.process.join(30)

    def __enter__(self) -> RunProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        """A run still going when its test ends (a failed assertion) is killed, not left behind."""
        if self.alive():
            self.kill()

    def exitcode(self) -> int | None:
        return self.process.exitcode

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.spec.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the run to end (at most ``timeout`` s, then SIGKILL and fail) and return its summary."""
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()
            raise AssertionError(
                f"run {self.spec.tag} did not end within {timeout:.0f} s (killed). Log:\n{self.log_tail()}"
            )
        if not self.spec.result_path.exists():
            raise AssertionError(
                f"run {self.spec.tag} ended ({self.exitcode()}) without a result. Log:\n{self.log_tail()}"
            )
        return json.loads(self.spec.result_path.read_text())


_context: Any = None


def _forkserver() -> Any:
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


def warm_up() -> None:
    """Start the fork server now: its imports then overlap with what the caller does next."""
    from multiprocessing import forkserver

    _forkserver()
    forkserver.ensure_running()


def shut_down() -> None:
    """Stop the fork server (and free its memory); a later run starts a new one."""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)  # the only way the standard library offers
    if stop is not None:
        stop()


def make_event() -> Any:
    """An event the forked runs can wait on (to start several at the same moment)."""
    return _forkserver().Event()


def start_run(spec: RunSpec, go: Any = None) -> RunProcess:
    """Fork a child of the fork server that runs ``spec`` (after ``go`` is set, if given)."""
    assert spec.out_dir is not None, "a forked run needs out_dir for its log and result"
    Path(spec.out_dir).mkdir(parents=True, exist_ok=True)
    proc = _forkserver().Process(target=child_main, args=(spec, go), name=f"dagster-run-{spec.tag}", daemon=True)
    proc.start()
    return RunProcess(proc, spec)

"""What every benchmark target shares: the services, interleaved timing and the result table.

A figure is always judged as a ratio against a baseline measured in the same invocation,
alternating subject and baseline (ABBA) so that background load hits both alike, and taking the
median of several runs: the absolute times depend on the machine, the ratios should not.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.connection import QuestDBConnection

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]


# -- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    number: int
    name: str
    title: str
    fn: Callable[[Bench], None]
    needs: tuple[str, ...]


TARGETS: dict[str, Target] = {}


def target(name: str, *, number: int, title: str, needs: Sequence[str] = ("questdb",)):
    """Register a benchmark target: ``fn(bench)`` records its figures with ``bench.record``."""

    def register(fn: Callable[[Bench], None]) -> Callable[[Bench], None]:
        TARGETS[name] = Target(number, name, title, fn, tuple(needs))
        return fn

    return register


# -- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    """One figure: the subject's median against the baseline's median, and the rule it must meet.

    ``ratio`` is subject/baseline unless ``higher_is_better`` (then baseline/subject, e.g. how
    many times faster). ``limit`` is the bound on the ratio: ``<=`` or ``>=``.
    """

    target: str
    figure: str
    value: float
    baseline: float
    unit: str
    ratio: float
    op: str  # "<=" or ">="
    limit: float | None
    runs: int
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool | None:
        if self.limit is None:
            return None
        return self.ratio <= self.limit if self.op == "<=" else self.ratio >= self.limit


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.1f} us"
        if value < 1:
            return f"{value * 1e3:.2f} ms"
        return f"{value:.2f} s"
    if unit == "s/row":
        return f"{value * 1e6:.2f} us/row"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:.4g} {unit}".strip()


def render_table(results: Sequence[Result]) -> str:
    rows = [("target", "figure", "value", "baseline", "ratio", "required", "result", "runs")]
    for r in results:
        required = f"{r.op} {r.limit:g}" if r.limit is not None else "(info)"
        verdict = {True: "PASS", False: "MISS", None: "-"}[r.ok]
        rows.append(
            (
                r.target,
                r.figure,
                _fmt(r.value, r.unit),
                _fmt(r.baseline, r.unit),
                f"{r.ratio:.3f}",
                required,
                verdict,
                str(r.runs),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  [{r.target}] {r.figure}: {r.note}" for r in results if r.note]
    return "\n".join(lines + ([""] + notes if notes else []))


# -- timing ----------------------------------------------------------------------------------


def alternate(runs: int, **cases: Callable[[], float]) -> dict[str, list[float]]:
    """Run each case ``runs`` times, alternating their order every round (ABBA...).

    A case prepares what it needs, times only the work and returns the seconds it took.
    """
    names = list(cases)
    out: dict[str, list[float]] = {n: [] for n in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            out[name].append(cases[name]())
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the services and the run ----------------------------------------------------------------


class Bench:
    """One invocation: settings, the services (started on first use), the recorded results."""

    def __init__(
        self,
        *,
        quick: bool,
        runs: int | None,
        questdb_dsn: str | None = None,
        questdb_http: str | None = None,
        keep_tables: bool = False,
    ) -> None:
        self.quick = quick
        self._runs = runs
        self._questdb_dsn = questdb_dsn
        self._questdb_http = questdb_http
        self.keep_tables = keep_tables
        self.results: list[Result] = []
        self._server: Any = None
        self._server_dir: str | None = None
        self._connection: QuestDBConnection | None = None
        self._client: QuestDBClient | None = None
        self._emulator: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tables: list[str] = []
        self.run_id = uuid.uuid4().hex[:8]
        self.load_before = os.getloadavg()[0]

    def runs(self, quick: int, full: int) -> int:
        return self._runs if self._runs is not None else (quick if self.quick else full)

    def size(self, quick: T, full: T) -> T:
        return quick if self.quick else full

    # -- QuestDB
    @property
    def connection(self) -> QuestDBConnection:
        if self._connection is None:
            if self._questdb_dsn:
                settings = {"dsn": self._questdb_dsn, "http": self._questdb_http}
                self._connection = QuestDBConnection.from_mapping(settings)
                log(f"using the QuestDB at {self._connection}")
            else:
                self._connection = self._start_questdb()
        return self._connection

    def _start_questdb(self) -> QuestDBConnection:
        from ccxt_questdb_assets.services.questdb_server import QuestDBServer
        from ccxt_questdb_assets.services.state import ENV_HOME

        env = dict(os.environ)
        if not env.get(ENV_HOME, "").strip():
            env[ENV_HOME] = str(REPO_ROOT / ".ccxt-questdb")  # the jar cache the tests use too
        self._server_dir = tempfile.mkdtemp(prefix="ccxt-bench-questdb-")
        self._server = QuestDBServer(self._server_dir, env=env)
        log(f"starting a private QuestDB in {self._server_dir}")
        self._server.start()
        log(
            f"QuestDB {self._server.version} up in {self._server.startup_seconds:.1f} s "
            f"(http {self._server.http_port}, pg {self._server.pg_port})"
        )
        return self._server.connection

    @property
    def client(self) -> QuestDBClient:
        if self._client is None:
            self._client = QuestDBClient(self.connection)
        return self._client

    def table_prefix(self, name: str) -> str:
        """A fresh table name prefix of this run (its tables are dropped at the end)."""
        prefix = f"bench_{self.run_id}_{name}_{uuid.uuid4().hex[:6]}"
        self._tables.append(prefix)
        return prefix

    def drop(self, *tables: str) -> None:
        for table in tables:
            self.client.query(f'DROP TABLE IF EXISTS "{table}"')

    def _drop_all(self) -> None:
        names = [r[0] for r in self.client.query("SELECT table_name FROM tables()")]
        for name in names:
            if any(name.startswith(p) for p in self._tables):
                self.drop(name)

    # -- the emulator
    @property
    def emulator(self) -> Any:
        if self._emulator is None:
            from ccxt_questdb_assets.emulator.server import EmulatorServer

            # A budget no benchmark reaches: the limiter under test, not the emulator, sets the pace.
            self._emulator = EmulatorServer(weight_limit=10_000_000).start()
            log(f"exchange emulator at {self._emulator.base_url}")
        return self._emulator

    # -- async
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    # -- results
    def record(
        self,
        target: str,
        figure: str,
        *,
        value: float,
        baseline: float,
        unit: str,
        op: str,
        limit: float | None,
        runs: int,
        higher_is_better: bool = False,
        note: str = "",
        samples: dict[str, list[float]] | None = None,
    ) -> Result:
        ratio = (baseline / value if higher_is_better else value / baseline) if baseline and value else float("nan")
        result = Result(target, figure, value, baseline, unit, ratio, op, limit, runs, note, samples or {})
        self.results.append(result)
        verdict = {True: "PASS", False: "MISS", None: "info"}[result.ok]
        log(f"{target}: {figure}: ratio {ratio:.3f} ({op} {limit}) {verdict}")
        return result

    def close(self) -> None:
        try:
            if self._client is not None and not self.keep_tables:
                self._drop_all()
        except Exception as exc:  # noqa: BLE001 - a failed cleanup must not hide the results
            log(f"could not drop the benchmark tables: {exc}")
        if self._client is not None:
            self._client.close()
        if self._loop is not None:
            self._loop.close()
        if self._emulator is not None:
            self._emulator.stop()
        if self._server is not None:
            self._server.stop()
        if self._server_dir is not None:
            shutil.rmtree(self._server_dir, ignore_errors=True)

    def machine(self) -> dict[str, Any]:
        import platform

        mem_kb = 0
        try:
            with open("/proc/meminfo") as f:
                mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        except (OSError, StopIteration, ValueError):
            pass
        return {
            "cores": os.cpu_count(),
            "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "questdb": getattr(self._server, "version", None) or ("external" if self._questdb_dsn else "not used"),
            "load_average_1m": [round(self.load_before, 1), round(os.getloadavg()[0], 1)],
        }

    def to_json(self, path: str, argv: Sequence[str]) -> None:
        data = {
            "command": "python -m benchmarks " + " ".join(argv),
            "machine": self.machine(),
            "results": [asdict(r) | {"ok": r.ok} for r in self.results],
        }
        Path(path).write_text(json.dumps(data, indent=2))

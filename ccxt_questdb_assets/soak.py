"""``ccxt-questdb soak``: the refresh schedule ticking for N minutes against the exchange emulator
with faults switched on, then a verdict on the data and on this process's memory and descriptors.

Each tick evaluates the ``{exchange}_refresh`` schedule at the current time (today's partition of
every symbol, yesterday's too in the first hour of a UTC day) and executes its run requests in this
process, one ``{exchange}_ingest`` run per symbol (candles, trades, derived bars and the asset checks),
in a temporary Dagster instance. The emulator's clock follows real time, so every tick finds new
closed candles and trades. Before each run a seeded random draw arms emulator faults (429, 500,
502, 503, 504, dropped connection, truncated JSON) that the next API requests take; at most
``MAX_ARMED`` are armed at a time, so retries (``max_retries`` 4) always get through.

At the end (``soak_checks``): every window coverage claims equals the emulator's ground
truth, no row shares a dedup key, no bar is closed early, every run and check passed, and RSS and
open file descriptors are flat (last-quarter median within x1.2 / +8 of the second quarter's, the
first quarter being warm-up). Exit 0 only when all hold.

Services: ``--emulator-url`` and ``--questdb`` (a PG-wire DSN, ``--questdb-http`` for HTTP; password
from ``CCXT_QUESTDB_PASSWORD``) name running ones; without them the local stack is started (the
local QuestDB and a bundled emulator, as ``ccxt-questdb demo`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ccxt_questdb_assets.core.errors import ConfigError, ServiceError
from ccxt_questdb_assets.storage.connection import ENV_PASSWORD, QuestDBConnection

FAULT_MENU = ("429", "500", "502", "503", "504", "drop_connection", "truncated_json")
MAX_ARMED = 3
DEFAULT_SYMBOLS = ("BTC/USDT", "ETH/USDT")
NO_TELEMETRY = {"telemetry": {"enabled": False}}


@dataclass(frozen=True)
class SoakSettings:
    """What to soak and how hard."""

    minutes: float
    emulator_url: str
    questdb: QuestDBConnection
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    seed: int = 1
    fault_rate: float = 0.1  # chance per fault kind and run of arming it
    interval_s: float = 10.0  # between schedule ticks
    sample_s: float = 2.0
    table_prefix: str = field(default_factory=lambda: "soak_" + uuid.uuid4().hex[:8])
    rss_ratio: float = 1.2
    fd_slack: int = 8

    def __post_init__(self) -> None:
        if not 0 < self.minutes <= 24 * 60:
            raise ConfigError(f"--minutes {self.minutes!r} must be more than 0 and at most 1440")
        if not 0 <= self.fault_rate <= 1:
            raise ConfigError(f"--fault-rate {self.fault_rate!r} must be a probability between 0 and 1")
        if not self.symbols:
            raise ConfigError("--symbols needs at least one symbol such as BTC/USDT")


@dataclass
class SoakResult:
    settings: dict[str, Any]
    ticks: int = 0
    runs: int = 0
    failed_runs: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    faults_armed: dict[str, int] = field(default_factory=dict)
    fault_responses: int = 0
    api_requests: int = 0
    series: list[dict[str, Any]] = field(default_factory=list)
    flatness: dict[str, Any] = field(default_factory=dict)
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    exact: bool = False
    flat: bool = False

    @property
    def ok(self) -> bool:
        return self.exact and self.flat and not self.failed_runs and not self.failed_checks and self.runs > 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def run_soak(settings: SoakSettings, *, say: Callable[[str], None] = print) -> SoakResult:
    """Tick the refresh schedule for ``settings.minutes``, then check data and resources."""
    warnings.filterwarnings("ignore", module="dagster")
    from dagster import DagsterInstance, build_schedule_context
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from ccxt_questdb_assets.defs.automation import ingest_job_name, refresh_schedule_name
    from ccxt_questdb_assets.defs.build import build_definitions
    from ccxt_questdb_assets.defs.listings import sync_symbol_partitions
    from ccxt_questdb_assets.defs.project_config import ProjectConfig
    from ccxt_questdb_assets.emulator.control import EmulatorControl
    from ccxt_questdb_assets.soak_checks import ResourceSampler, flatness

    shown = {**asdict(settings), "questdb": str(settings.questdb)}
    result = SoakResult(settings=shown)
    project = ProjectConfig.from_mapping(_project_mapping(settings), source="soak")
    defs = build_definitions(project)
    schedule = defs.resolve_schedule_def(refresh_schedule_name("binance"))
    job = defs.resolve_job_def(ingest_job_name("binance"))
    control = EmulatorControl(settings.emulator_url)
    try:
        control.health()
    except (OSError, RuntimeError) as exc:
        raise ServiceError(
            f"no exchange emulator answers at {settings.emulator_url} ({exc}): start one with "
            "`ccxt-questdb emulator serve`, or leave --emulator-url and --questdb out"
        ) from None
    rng = random.Random(settings.seed)
    first_seq = _last_seq(control)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    say(
        f"soak: {settings.minutes:g} min, symbols {', '.join(settings.symbols)}, fault rate {settings.fault_rate:g}, "
        f"seed {settings.seed}, tables {settings.table_prefix}_*, QuestDB {settings.questdb}, "
        f"emulator {settings.emulator_url}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="ccxt-soak-dagster-") as home,
        DagsterInstance.local_temp(tempdir=home, overrides=NO_TELEMETRY) as instance,
        ResourceSampler(settings.sample_s) as sampler,
    ):
        sync_symbol_partitions(instance, project)
        warmup_s: float | None = None  # until the first tick is done (it fetches the whole day so far)
        repo = defs.get_repository_def()
        deadline = time.monotonic() + settings.minutes * 60
        while time.monotonic() < deadline:
            started = time.monotonic()
            tick = datetime.now(UTC)
            data = schedule.evaluate_tick(
                build_schedule_context(instance=instance, scheduled_execution_time=tick, repository_def=repo)
            )
            result.ticks += 1
            for request in data.run_requests or []:
                _arm_faults(control, rng, settings.fault_rate, result.faults_armed)
                run = job.execute_in_process(
                    instance=instance,
                    partition_key=request.partition_key,
                    tags=dict(request.tags),
                    run_config=quiet,
                    raise_on_error=False,
                )
                where = (
                    request.partition_key
                    or request.tags[ASSET_PARTITION_RANGE_START_TAG]
                    + ".."
                    + request.tags[ASSET_PARTITION_RANGE_END_TAG]
                )
                result.runs += 1
                if not run.success:
                    result.failed_runs.append(f"{where} (run {run.run_id})")
                result.failed_checks += [
                    f"{c.check_name} on {c.partition}" for c in run.get_asset_check_evaluations() if not c.passed
                ]
            warmup_s = sampler.elapsed_s() if warmup_s is None else warmup_s
            say(
                f"tick {result.ticks} at {tick:%H:%M:%S}: {len(data.run_requests or [])} runs in "
                f"{time.monotonic() - started:.1f} s; {result.runs} runs, {len(result.failed_runs)} failed; "
                f"RSS {sampler.samples[-1].rss_kb / 1024:.0f} MiB, {sampler.samples[-1].fds} fds"
            )
            time.sleep(max(0.0, min(settings.interval_s - (time.monotonic() - started), deadline - time.monotonic())))
    control.clear_faults()
    result.samples = [(s.t_s, s.rss_kb, s.fds) for s in sampler.samples]
    flat = flatness(sampler.samples, warmup_s=warmup_s, rss_ratio=settings.rss_ratio, fd_slack=settings.fd_slack)
    result.flatness, result.flat = {**asdict(flat), "describe": flat.describe()}, flat.flat
    logged = control.requests(since_seq=first_seq)
    result.api_requests = len(logged)
    result.fault_responses = sum(1 for r in logged if r.get("fault"))
    _check_data(settings, project, result)
    return result


def _project_mapping(settings: SoakSettings) -> dict[str, Any]:
    conn = settings.questdb
    questdb = {
        "host": conn.host,
        "port": conn.port,
        "database": conn.database,
        "user": conn.user,
        "http": f"{'https' if conn.http_tls else 'http'}://{conn.http_addr}",
        "table_prefix": settings.table_prefix,
    }
    return {
        "start_date": "2024-01-01",
        "questdb": questdb,
        "rate_limiter": {"scope": "process", "max_concurrency": 2},
        "exchanges": {
            "binance": {
                "base_url": settings.emulator_url,
                "symbols": list(settings.symbols),
                "timeframes": ["1m"],
                "trades": True,
                "resample_to": ["1h"],
                "max_retries": 4,
                "retry_backoff_s": 0.05,
            }
        },
    }


def _arm_faults(control: Any, rng: random.Random, rate: float, armed: dict[str, int]) -> None:
    """Arm each fault kind with probability ``rate``, keeping at most ``MAX_ARMED`` armed."""
    room = MAX_ARMED - sum(f["remaining"] for f in control.faults())
    for kind in FAULT_MENU:
        if rng.random() < rate and room > 0:
            control.inject(kind, 1, retry_after=1 if kind == "429" else None)
            armed[kind] = armed.get(kind, 0) + 1
            room -= 1


def _last_seq(control: Any) -> int:
    logged = control.requests()
    return int(logged[-1]["seq"]) if logged else 0


def _check_data(settings: SoakSettings, project: Any, result: SoakResult) -> None:
    from ccxt_questdb_assets.emulator.market import SyntheticMarket
    from ccxt_questdb_assets.soak_checks import check_series
    from ccxt_questdb_assets.storage.client import QuestDBClient

    ex = project.exchanges[0]
    market = SyntheticMarket()
    with QuestDBClient(settings.questdb) as client:
        checks = [
            check_series(
                client,
                market,
                symbol=s,
                candle_table=ex.ohlcv.tables.data,
                trade_table=ex.trades_config.tables.data if ex.trades_config else None,
            )
            for s in settings.symbols
        ]
    result.series = [asdict(c) for c in checks]
    result.exact = all(c.exact for c in checks) and all(c.candles_compared and c.trades_compared for c in checks)


def summary(result: SoakResult) -> str:
    """The verdict in a few lines."""
    lines = [
        f"soak {'PASSED' if result.ok else 'FAILED'}: {result.ticks} ticks, {result.runs} runs "
        f"({len(result.failed_runs)} failed, {len(result.failed_checks)} failed checks), "
        f"{result.api_requests} exchange requests, {result.fault_responses} answered with a fault "
        f"(armed: {', '.join(f'{k} x{v}' for k, v in sorted(result.faults_armed.items())) or 'none'})",
        f"  resources: {result.flatness.get('describe', 'no samples')}",
    ]
    for s in result.series:
        lines.append(
            f"  {s['symbol']}: {s['candles_compared']} candles over {s['covered_candle_ms'] / 60000:.0f} "
            f"covered min, {s['trades_compared']} trades over {s['covered_trade_ms'] / 60000:.0f} min: "
            f"{'exact' if not s['problems'] else '; '.join(s['problems'])}"
        )
    lines += [f"  failed run {r}" for r in result.failed_runs[:10]]
    lines += [f"  failed check {c}" for c in result.failed_checks[:10]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "soak",
        help="tick the refresh schedule for N minutes with exchange faults on; "
        "check data exactness and flat memory/fds",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    p.add_argument("--symbols", nargs="+", default=list(DEFAULT_SYMBOLS), help="default: BTC/USDT ETH/USDT")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault draws (default 1)")
    p.add_argument(
        "--fault-rate", type=float, default=0.1, help="chance per fault kind and run of arming it (default 0.1)"
    )
    p.add_argument("--interval-s", type=float, default=10.0, help="seconds between schedule ticks (default 10)")
    p.add_argument("--emulator-url", help="a running emulator (default: start one)")
    p.add_argument("--questdb", metavar="DSN", help="a running QuestDB's PG-wire DSN (default: the local QuestDB)")
    p.add_argument("--questdb-http", metavar="HOST:PORT", help="its HTTP address (default: the DSN's host, 9000)")
    p.add_argument("--table-prefix", help="tables to write (default: soak_<random>)")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.emulator_url) != bool(args.questdb):
        raise ConfigError("give both --emulator-url and --questdb (running services), or neither (local stack)")
    if args.emulator_url:
        conn = QuestDBConnection.from_env(
            {"CCXT_QUESTDB_DSN": args.questdb, "CCXT_QUESTDB_HTTP": args.questdb_http or "", **_password_env()}
        )
        # the runs read the password where every run does, from the environment
        os.environ.setdefault(ENV_PASSWORD, conn.password)
        return _run(args, args.emulator_url, conn)
    from ccxt_questdb_assets.local_stack import local_stack

    with local_stack() as exported:
        if not exported:
            raise ConfigError(
                "CCXT_QUESTDB_PROJECT is set, so no local stack is started: give --emulator-url and --questdb"
            )
        return _run(args, exported["CCXT_QUESTDB_EXCHANGE_URL"], QuestDBConnection.from_env())


def _password_env() -> dict[str, str]:
    return {ENV_PASSWORD: os.environ[ENV_PASSWORD]} if os.environ.get(ENV_PASSWORD) else {}


def _run(args: argparse.Namespace, emulator_url: str, conn: QuestDBConnection) -> int:
    extra = {"table_prefix": args.table_prefix} if args.table_prefix else {}
    settings = SoakSettings(
        minutes=args.minutes,
        emulator_url=emulator_url,
        questdb=conn,
        symbols=tuple(args.symbols),
        seed=args.seed,
        fault_rate=args.fault_rate,
        interval_s=args.interval_s,
        **extra,
    )
    result = run_soak(settings, say=lambda line: print(line, flush=True))
    print(summary(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=1, default=str)
    return 0 if result.ok else 1

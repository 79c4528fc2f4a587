"""The deployment over several hosts, as deploy/ ships it and docs/operations.md describes it.

A module fixture starts it all for real, on hosts made by the test: a bridge in this process's
network namespace is the control host's network (its first address), and two Linux network
namespaces are the run hosts ``h1`` and ``h2`` (the next addresses), each with its own interfaces
and ports. On the control host: Postgres (a private cluster of Debian's ``postgresql``), Redis,
QuestDB (the project's launcher) and the exchange emulator, all listening on the bridge address,
then ``deploy/serve.sh migrate``, ``code-server``, ``daemon`` and ``webserver``; on each run host
``deploy/serve.sh code-server`` started inside its namespace. Every service gets the variables
``deploy/ccxt-questdb.env.example`` documents and no other of the deployment's, and the instance is
``deploy/dagster.yaml`` as shipped.

* A 20-day x 3-symbol backfill launched through GraphQL runs on both hosts (the emulator logs each
  request's source address), ends with exact candles at the minimum of requests, and the cluster
  rate limiter's budget holds across the hosts in every 1 s window of the emulator's log.
* Recovery, each on a backfill of its own days while it fetches: the daemon SIGKILLed and
  restarted (no duplicate run), a run's process SIGKILLed (the run fails, is retried elsewhere),
  Redis SIGKILLed and restarted (the limiter falls back, no run is lost), and a whole run host lost
  (its processes killed and its link cut: its runs are failed by the placing launcher's health
  check and retried on the other host). Each ends exact, with its backfill ``COMPLETED_SUCCESS``
  and no pool slot left claimed.

Needs root (network namespaces); a missing service or package fails with the reason.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccxt_questdb_assets.core.errors import CcxtQuestDBError
from ccxt_questdb_assets.dagster_dev_process import DagsterDev, DagsterDevError, wait_ready
from ccxt_questdb_assets.dagster_graphql import BACKFILL_STATUS, LAUNCH_BACKFILL
from ccxt_questdb_assets.defs.partitions import keys_for
from ccxt_questdb_assets.deployment.run_launcher import RUN_HOST_TAG, RunHost, parse_run_hosts
from ccxt_questdb_assets.emulator.market import SyntheticMarket
from ccxt_questdb_assets.emulator.server import EmulatorServer
from ccxt_questdb_assets.services.questdb_server import QuestDBServer
from ccxt_questdb_assets.services.redis_server import RedisServer
from ccxt_questdb_assets.services.state import ENV_HOME
from ccxt_questdb_assets.testing.candles import assert_candles_exact, stored_candles, truth_candles
from ccxt_questdb_assets.testing.deployment import (
    Service,
    documented_variables,
    run_processes,
    service_env,
    start_service,
    wait_for_code_server,
)
from ccxt_questdb_assets.testing.netns import HostNetwork, require_network_namespaces
from ccxt_questdb_assets.testing.postgres import PostgresServer
from ccxt_questdb_assets.testing.webhook import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVE = DEPLOY / "serve.sh"
ENV_EXAMPLE = DEPLOY / "ccxt-questdb.env.example"
EVERY_HOST, CONTROL_HOST = "every host", "control host"
RUN_HOSTS = ("h1", "h2")
CODE_SERVER_PORT = 4000  # a run host's code server, on the documented port: each host has its own ports
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
#: Each fault's backfill: two runs, one per run host (the pool lets both fetch at once).
FAULT_SYMBOLS = SYMBOLS[:2]
ASSET_PATH = ["binance", "ohlcv", "ohlcv_1m"]
POOL = "ccxt_binance"
KLINES = "/api/v3/klines"
DAY_MS = 86_400_000
BARS_PER_REQUEST = 1000  # Binance pages 1,000 candles
#: The cluster limiter of the project file: 10 weight a second (a kline request weighs 2), a bucket of
#: 20 (the heaviest request, exchangeInfo, fits it: no request leaves the bucket in debt). Two runs
#: fetching at once on two hosts need more than that: the budget binds across the hosts.
RATE, BURST = 10, 20
#: In any window of T seconds at most BURST + RATE * (T + 50 ms) weight goes through (rate-limiting.md).
WINDOW_BOUND = BURST + RATE * 1.05
BACKFILL_TIMEOUT_S = 300
STARTUP_TIMEOUT_S = 300


def days(first: str, n: int) -> list[str]:
    start = date.fromisoformat(first)
    return [str(start + timedelta(days=i)) for i in range(n)]


def utc_ms(day: str) -> int:
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


RUN_MESSAGES = """
query($id: ID!) {
  logsForRun(runId: $id) { __typename ... on EventConnection { events { __typename ... on MessageEvent { message } } } }
}
"""

POOL_SLOTS = """
query($key: String!) {
  instance { concurrencyLimit(concurrencyKey: $key) { slotCount claimedSlots { runId stepKey } } }
}
"""


@dataclass
class Deployment:
    """What the fixture started, and where."""

    work: Path
    net: HostNetwork
    postgres: PostgresServer
    redis: RedisServer
    questdb: QuestDBServer
    emulator: EmulatorServer
    webhook: WebhookReceiver
    web: DagsterDev
    table: str
    variables: dict[str, dict[str, str]]  # host kind -> the deployment's variables
    secrets: tuple[str, ...]
    services: dict[tuple[str, str], Service] = field(default_factory=dict)  # (role, host) -> service
    market: SyntheticMarket = field(default_factory=SyntheticMarket)

    @property
    def control(self) -> str:
        return self.net.control_address

    def host_of_address(self, address: str | None) -> str:
        if address == self.control:
            return "control"
        for name, host in self.net.hosts.items():
            if host.address == address:
                return name
        return f"unknown ({address})"

    def env_for(self, host: str) -> dict[str, str]:
        variables = dict(self.variables[EVERY_HOST])
        if host == "control":
            variables.update(self.variables[CONTROL_HOST])
        else:
            variables["CCXT_QUESTDB_CODE_SERVER_BIND"] = self.net.hosts[host].address
            variables["CCXT_QUESTDB_CODE_SERVER_PORT"] = str(CODE_SERVER_PORT)
        return service_env(variables)

    def start(self, role: str, host: str = "control") -> Service:
        prefix = [] if host == "control" else self.net.hosts[host].exec_prefix
        service = start_service(
            SERVE,
            role,
            host=host,
            env=self.env_for(host),
            log_path=self.work / "logs" / f"{host}-{role}.log",
            prefix=prefix,
            secrets=self.secrets,
        )
        self.services[(role, host)] = service
        return service

    def wait_code_server(self, host: str) -> float:
        service = self.services[("code-server", host)]
        if host == "control":
            port = int(self.variables[EVERY_HOST]["CCXT_QUESTDB_CODE_SERVER_PORT"])
            return wait_for_code_server(self.control, port, service, STARTUP_TIMEOUT_S)
        return wait_for_code_server(self.net.hosts[host].address, CODE_SERVER_PORT, service, STARTUP_TIMEOUT_S)

    def logs(self) -> str:
        return "\n".join(f"--- {s.host} {s.role} ({s.log_path}):\n{s.log_tail(2500)}" for s in self.services.values())

    def stop_services(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop(grace_s=5)


def _fail(what: str, exc: BaseException) -> None:
    pytest.fail(f"{what}: {exc}", pytrace=False)


def _questdb_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get(ENV_HOME, "").strip():
        env[ENV_HOME] = str(ROOT / ".ccxt-questdb")  # the jar cache the other tests use
    return env


def _project(dep_address: str, questdb: QuestDBServer, emulator: EmulatorServer, prefix: str) -> dict[str, Any]:
    return {
        "start_date": "2024-01-01",
        "questdb": {
            "host": dep_address,
            "port": questdb.pg_port,
            "http_port": questdb.http_port,
            "table_prefix": prefix,
        },
        "rate_limiter": {
            "scope": "cluster",
            "tokens_per_interval": RATE,
            "interval_ms": 1000,
            "burst_tokens": BURST,
            "max_concurrency": 2,
            "fallback_fraction": 0.5,  # the pool lets two processes fetch at once: half each while Redis is away
        },
        "exchanges": {
            "binance": {
                "base_url": emulator.base_url,
                "symbols": SYMBOLS,
                "timeframes": ["1m"],
                "retry_backoff_s": 0.01,
            }
        },
    }


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    try:
        require_network_namespaces()
    except CcxtQuestDBError as exc:
        _fail("the deployment test cannot make its hosts", exc)
    if shutil.which("redis-server") is None:
        pytest.fail("the deployment test needs redis-server (apt-get install redis-server)", pytrace=False)
    work = tmp_path_factory.mktemp("deployment")
    with ExitStack() as stack:
        started = time.monotonic()
        try:
            net = HostNetwork(RUN_HOSTS).start()
        except CcxtQuestDBError as exc:
            _fail("the test network", exc)
        stack.callback(net.close)
        address = net.control_address
        pg_password, qdb_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
        try:
            postgres = PostgresServer(host=address, password=pg_password).start()
        except CcxtQuestDBError as exc:
            _fail("Postgres", exc)
        stack.callback(postgres.stop)
        try:
            redis = RedisServer(host=address, workdir=work / "redis").start()
        except CcxtQuestDBError as exc:
            _fail("Redis", exc)
        stack.callback(redis.close)
        try:
            questdb = QuestDBServer(
                work / "questdb", host=address, env=_questdb_env(), extra_env={"QDB_PG_PASSWORD": qdb_password}
            ).start()
        except CcxtQuestDBError as exc:
            _fail("QuestDB", exc)
        stack.callback(questdb.stop)
        try:
            emulator = EmulatorServer(host=address).start()
        except CcxtQuestDBError as exc:
            _fail("the exchange emulator", exc)
        stack.callback(emulator.stop)
        webhook = WebhookReceiver()
        stack.callback(webhook.close)
        services_up = time.monotonic()

        prefix = "deploy_" + uuid.uuid4().hex[:8]
        project = work / "project.yaml"
        project.write_text(yaml.safe_dump(_project(address, questdb, emulator, prefix), sort_keys=False))
        variables = {
            EVERY_HOST: {
                "DAGSTER_HOME": str(work / "dagster_home"),
                "DAGSTER_PG_HOST": address,
                "DAGSTER_PG_PORT": str(postgres.port),
                "DAGSTER_PG_USER": postgres.user,
                "DAGSTER_PG_PASSWORD": pg_password,
                "DAGSTER_PG_DB": postgres.database,
                "CCXT_QUESTDB_PROJECT": str(project),
                "CCXT_QUESTDB_PASSWORD": qdb_password,
                "CCXT_QUESTDB_RATE_LIMITER_REDIS": redis.url,
                "CCXT_QUESTDB_CODE_SERVER_BIND": address,
                "CCXT_QUESTDB_CODE_SERVER_PORT": str(free_port_on(address)),
                "CCXT_QUESTDB_VENV": sys.prefix,
            },
            CONTROL_HOST: {
                "CCXT_QUESTDB_CODE_SERVER_HOST": address,
                "CCXT_QUESTDB_RUN_HOSTS": ",".join(f"{h.address}:{CODE_SERVER_PORT}" for h in net.hosts.values()),
                "CCXT_QUESTDB_WEBSERVER_HOST": address,
                "CCXT_QUESTDB_WEBSERVER_PORT": str(free_port_on(address)),
                "CCXT_QUESTDB_ALERT_WEBHOOK": webhook.url,
            },
        }
        documented = documented_variables(ENV_EXAMPLE)
        for kind in (EVERY_HOST, CONTROL_HOST):
            assert sorted(variables[kind]) == sorted(documented.get(kind, [])), (
                f"the test's variables for '{kind}' differ from {ENV_EXAMPLE.name}'s: "
                f"{sorted(variables[kind])} vs {sorted(documented.get(kind, []))}"
            )
        dep = Deployment(
            work=work,
            net=net,
            postgres=postgres,
            redis=redis,
            questdb=questdb,
            emulator=emulator,
            webhook=webhook,
            web=None,  # type: ignore[arg-type]  (set below, once the webserver answers)
            table=f"{prefix}_ohlcv",
            variables=variables,
            secrets=(pg_password, qdb_password),
        )
        stack.callback(dep.stop_services)

        migrate = dep.start("migrate")
        if migrate.proc.wait(180) != 0:
            pytest.fail(f"deploy/serve.sh migrate failed:\n{migrate.log_tail()}", pytrace=False)
        for host in ("control", *RUN_HOSTS):
            dep.start("code-server", host)
        try:
            loaded = {host: dep.wait_code_server(host) for host in ("control", *RUN_HOSTS)}
        except CcxtQuestDBError as exc:
            _fail("a code server", exc)
        daemon = dep.start("daemon")
        web = dep.start("webserver")
        ctl = variables[CONTROL_HOST]
        dep.web = DagsterDev(
            url=f"http://{ctl['CCXT_QUESTDB_WEBSERVER_HOST']}:{ctl['CCXT_QUESTDB_WEBSERVER_PORT']}",
            home=work / "dagster_home",
            log_path=web.log_path,
            proc=web.proc,
        )
        try:
            wait_ready(dep.web, STARTUP_TIMEOUT_S)
        except DagsterDevError as exc:
            _fail(f"the webserver\n{dep.logs()}", exc)
        if not daemon.alive():
            pytest.fail(f"the daemon exited:\n{daemon.log_tail()}", pytrace=False)
        dep.web.add_dynamic_partitions("binance_symbols", SYMBOLS)
        print(
            f"deployment up after {time.monotonic() - started:.0f} s (services {services_up - started:.0f} s; "
            f"code servers answered after {', '.join(f'{h} {s:.0f} s' for h, s in loaded.items())}); "
            f"control {address}, run hosts {', '.join(f'{n} {h.address}' for n, h in net.hosts.items())}"
        )
        yield dep
        logs = [svc.log_path.read_text(errors="replace") for svc in dep.services.values()]
        assert not any(secret in text for secret in dep.secrets for text in logs), "a password in a service's log"


def free_port_on(address: str) -> int:
    from ccxt_questdb_assets.services.ports import free_port

    return free_port(address)


# ---------------------------------------------------------------------------- helpers


@dataclass
class Backfill:
    id: str
    days: list[str]
    symbols: list[str]
    launched_epoch: float

    @property
    def start_ms(self) -> int:
        return utc_ms(self.days[0])

    @property
    def end_ms(self) -> int:
        return utc_ms(self.days[-1]) + DAY_MS


def launch_backfill(dep: Deployment, backfill_days: list[str], symbols: list[str], title: str) -> Backfill:
    launched = time.time()
    out = dep.web.graphql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": keys_for(backfill_days, symbols),
                "assetSelection": [{"path": ASSET_PATH}],
                "title": title,
            }
        },
    )["launchPartitionBackfill"]
    assert out["__typename"] == "LaunchBackfillSuccess", out
    return Backfill(out["backfillId"], backfill_days, symbols, launched)


def backfill_status(dep: Deployment, backfill: Backfill) -> str:
    result = dep.web.graphql(BACKFILL_STATUS, {"id": backfill.id})["partitionBackfillOrError"]
    assert result["__typename"] == "PartitionBackfill", result
    return result["status"]


def backfill_runs(dep: Deployment, backfill: Backfill) -> list[dict[str, Any]]:
    return dep.web.runs({"dagster/backfill": backfill.id})


def run_host(dep: Deployment, run: dict[str, Any]) -> str:
    """The host a run was launched on, from the placing launcher's ``ccxt_questdb/run_host`` tag."""
    tags = {t["key"]: t["value"] for t in run["tags"]}
    address = tags.get(RUN_HOST_TAG, "").rpartition(":")[0]
    return dep.host_of_address(address or None)


def describe_runs(dep: Deployment, runs: list[dict[str, Any]]) -> str:
    return "; ".join(f"{r['runId'][:8]} {r['status']} on {run_host(dep, r)}" for r in runs)


def wait_backfill(dep: Deployment, backfill: Backfill, timeout_s: float = BACKFILL_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = backfill_status(dep, backfill)
        if status not in ("REQUESTED", "CANCELING", "FAILING"):
            return status
        if time.monotonic() > deadline:
            runs = backfill_runs(dep, backfill)
            raise AssertionError(
                f"backfill {backfill.id} still {status} after {timeout_s} s; runs: {describe_runs(dep, runs)}\n"
                f"{dep.logs()}"
            )
        time.sleep(2)


def kline_requests(dep: Deployment, symbol: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """The emulator's kline requests for ``symbol`` whose ``startTime`` lies in [start, end)."""
    wanted = symbol.replace("/", "")
    return [
        r
        for r in dep.emulator.control.requests(KLINES)
        if r["params"].get("symbol") == wanted and start_ms <= int(r["params"]["startTime"]) < end_ms
    ]


def wait_for_fetching(dep: Deployment, backfill: Backfill, host: str | None = None, timeout_s: float = 180) -> str:
    """Until a run host (``host``, or any) asks for the backfill's candles; that host's name."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for symbol in backfill.symbols:
            for r in kline_requests(dep, symbol, backfill.start_ms, backfill.end_ms):
                seen = dep.host_of_address(r.get("client"))
                if host is None or seen == host:
                    return seen
        time.sleep(0.2)
    raise AssertionError(f"no run host fetched backfill {backfill.id}'s candles within {timeout_s} s\n{dep.logs()}")


def claimed_slots(dep: Deployment) -> list[dict[str, str]]:
    return dep.web.graphql(POOL_SLOTS, {"key": POOL})["instance"]["concurrencyLimit"]["claimedSlots"]


def wait_for_slot_holder(
    dep: Deployment, backfill: Backfill, timeout_s: float = 180
) -> tuple[str, list[dict[str, str]]]:
    """Until one of the backfill's runs holds a pool slot; that run's host and the claimed slots.
    The emulator first stalls the next kline answers, so the holder is still fetching (still holds
    its slot) when the caller acts on it."""
    dep.emulator.control.inject("delay", count=2 * len(backfill.symbols), path=KLINES, delay_s=4)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        slots = claimed_slots(dep)
        holders = {slot["runId"] for slot in slots}
        for run in backfill_runs(dep, backfill):
            if run["runId"] in holders:
                return run_host(dep, run), slots
        time.sleep(0.2)
    raise AssertionError(f"no run of backfill {backfill.id} held a {POOL} slot within {timeout_s} s\n{dep.logs()}")


def wait_slots_free(dep: Deployment, timeout_s: float = 60) -> float:
    t0 = time.monotonic()
    while claimed_slots(dep):
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"pool {POOL} still has claimed slots after {timeout_s} s: {claimed_slots(dep)}")
        time.sleep(1)
    return time.monotonic() - t0


def assert_exact(dep: Deployment, backfill: Backfill) -> None:
    for symbol in backfill.symbols:
        assert_candles_exact(
            stored_candles(dep.questdb, dep.table, symbol, backfill.start_ms, backfill.end_ms),
            truth_candles(dep, symbol, backfill.start_ms, backfill.end_ms),
            f"{symbol} {backfill.days[0]}..{backfill.days[-1]}",
        )


def worst_window(points: list[tuple[float, float, str]], window_s: float = 1.0) -> tuple[float, float, int]:
    """Over the half-open windows ``[t, t + window)`` of ``(time_s, weight, host)``: the most weight
    one holds, the most one holds with requests of several hosts in it, and how many windows (one
    per request, ending at it) held several hosts' requests."""
    points = sorted(points)
    best = best_mixed = total = 0.0
    mixed = j = 0
    hosts: Counter[str] = Counter()
    for t, w, host in points:
        total += w
        hosts[host] += 1
        while t - points[j][0] >= window_s - 1e-9:
            total -= points[j][1]
            hosts[points[j][2]] -= 1
            j += 1
        best = max(best, total)
        if sum(1 for n in hosts.values() if n) > 1:
            mixed += 1
            best_mixed = max(best_mixed, total)
    return best, best_mixed, mixed


def recovered(
    dep: Deployment,
    first_day: str,
    symbols: list[str],
    title: str,
    fault: Callable[[Backfill], str],
) -> tuple[Backfill, list[dict[str, Any]], str]:
    """A 10-day backfill of ``symbols`` with ``fault`` done while it fetches; it must end exact,
    ``COMPLETED_SUCCESS``, with every pool slot given back. Returns it, its runs and what was done."""
    backfill = launch_backfill(dep, days(first_day, 10), symbols, title)
    done = fault(backfill)
    status = wait_backfill(dep, backfill)
    runs = backfill_runs(dep, backfill)
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    errors = "\n".join(dep.web.run_errors(r["runId"]) for r in failed[:2])
    assert status == "COMPLETED_SUCCESS", f"{title}: backfill {status}; runs {describe_runs(dep, runs)}\n{errors}"
    assert_exact(dep, backfill)
    slots_after = wait_slots_free(dep)
    elapsed = time.time() - backfill.launched_epoch
    print(
        f"{title}: {done}; backfill COMPLETED_SUCCESS {elapsed:.0f} s after launch, runs {describe_runs(dep, runs)}; "
        f"pool slots free {slots_after:.0f} s after"
    )
    return backfill, runs, done


# ---------------------------------------------------------------------------- tests


def test_serve_names_a_missing_variable_and_starts_nothing(tmp_path: Path):
    """deploy/serve.sh checks its role's variables before anything starts; a code server never
    falls back to the embedded project."""
    base = {
        "DAGSTER_HOME": str(tmp_path / "home"),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": "not-used",
        "DAGSTER_PG_DB": "dagster",
        "CCXT_QUESTDB_VENV": sys.prefix,
    }

    def serve(role: str, **variables: str) -> subprocess.CompletedProcess[str]:
        env = service_env({**base, **variables})
        return subprocess.run(["bash", str(SERVE), role], env=env, capture_output=True, text=True, timeout=30)

    done = serve("code-server")
    assert done.returncode == 2 and "CCXT_QUESTDB_PROJECT" in done.stderr, done.stderr
    done = serve("code-server", CCXT_QUESTDB_PROJECT=str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "missing.yaml" in done.stderr and "not a file" in done.stderr, done.stderr
    done = serve("daemon")
    assert done.returncode == 2 and "CCXT_QUESTDB_CODE_SERVER_HOST" in done.stderr, done.stderr
    env = {k: v for k, v in base.items() if k != "DAGSTER_PG_PASSWORD"}
    done = subprocess.run(
        ["bash", str(SERVE), "webserver"], env=service_env(env), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "DAGSTER_PG_PASSWORD" in done.stderr, done.stderr
    assert not (tmp_path / "home").exists(), "nothing is created before the variables are checked"
    assert "not-used" not in done.stderr


def test_run_hosts_are_parsed_from_the_daemons_variable():
    assert parse_run_hosts("10.0.0.2:4000, 10.0.0.3 [fd00::4]:4100") == [
        RunHost("10.0.0.2", 4000),
        RunHost("10.0.0.3", 4000),
        RunHost("fd00::4", 4100),
    ]
    assert parse_run_hosts("") == []
    for bad in ("10.0.0.2:x", "10.0.0.2:0", ":4000", "10.0.0.2:4000,10.0.0.2"):
        with pytest.raises(ValueError, match="CCXT_QUESTDB_RUN_HOSTS"):
            parse_run_hosts(bad)


def test_backfill_runs_on_both_hosts_exact_at_minimal_requests_within_the_cluster_limit(deployment: Deployment):
    dep = deployment
    dep.emulator.control.reset()
    backfill = launch_backfill(dep, days("2024-02-01", 20), SYMBOLS, "deployment: 20 days x 3 symbols")
    status = wait_backfill(dep, backfill)
    elapsed = time.time() - backfill.launched_epoch
    runs = backfill_runs(dep, backfill)
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    assert status == "COMPLETED_SUCCESS", f"backfill {status}; runs {describe_runs(dep, runs)}\n" + "\n".join(
        dep.web.run_errors(r["runId"]) for r in failed[:2]
    )
    assert len(runs) == len(SYMBOLS) and not failed, describe_runs(dep, runs)  # multi_run: one run per symbol
    assert_exact(dep, backfill)

    log = dep.emulator.control.requests()
    klines = {s: kline_requests(dep, s, backfill.start_ms, backfill.end_ms) for s in SYMBOLS}
    minimum = math.ceil(len(backfill.days) * 1440 / BARS_PER_REQUEST)
    assert {s: len(r) for s, r in klines.items()} == dict.fromkeys(SYMBOLS, minimum), "kline requests per symbol"

    by_host = Counter(dep.host_of_address(r.get("client")) for r in log)
    placed = Counter(run_host(dep, r) for r in runs)
    assert set(placed) == set(RUN_HOSTS), f"runs placed on {dict(placed)}: " + "; ".join(  # read on failure only
        m for r in runs for m in dep.web.run_messages(r["runId"], "Launching the run on run host")
    )
    kline_hosts = Counter(dep.host_of_address(r.get("client")) for rs in klines.values() for r in rs)
    assert set(kline_hosts) == set(RUN_HOSTS), f"kline requests came from {dict(kline_hosts)}"
    # the pool (2 steps of ccxt_binance across the deployment): never three symbols fetching at once
    spans = [(rs[0]["time_ms"], rs[-1]["time_ms"]) for rs in klines.values()]
    fetching_at_once = max(sum(1 for a, b in spans if a <= t <= b) for t, _ in spans)
    assert fetching_at_once <= 2, f"{fetching_at_once} symbols fetched at once across the hosts (pool limit 2)"

    points = [(r["time_ms"] / 1000, float(r["weight"]), dep.host_of_address(r.get("client"))) for r in log]
    worst, worst_shared, shared_windows = worst_window(points)
    span = (log[-1]["time_ms"] - log[0]["time_ms"]) / 1000 if len(log) > 1 else 0.0
    weight = sum(w for _, w, _ in points)
    assert worst <= WINDOW_BOUND, f"worst 1 s window {worst:g} weight > {WINDOW_BOUND:g} across the hosts"
    # the bound means something across hosts only where both sent requests within one second
    assert shared_windows, "the two run hosts never fetched within the same second: the shared budget went untested"
    assert claimed_slots(dep) == []
    print(
        f"backfill {backfill.id}: COMPLETED_SUCCESS {elapsed:.0f} s after launch; runs {describe_runs(dep, runs)}; "
        f"kline requests {sum(map(len, klines.values()))} (minimum {minimum} x {len(SYMBOLS)}), by host "
        f"{dict(kline_hosts)}; all requests by host {dict(by_host)}; at most {fetching_at_once} symbols fetching "
        f"at once; limiter: worst 1 s window {worst:g} weight (bound {WINDOW_BOUND:g}; {worst_shared:g} in the "
        f"worst of {shared_windows} windows holding both hosts' requests), {weight:g} weight over {span:.1f} s "
        f"({weight / max(span, 1e-9):.1f}/s)"
    )


def wait_alert(dep: Deployment, run_id: str, timeout_s: float = 90) -> float:
    """Until the run-failure sensor (control host's code server) posted ``run_id`` to the webhook."""
    t0 = time.monotonic()
    while not any(run_id in post["body"] for post in dep.webhook.posts):
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"no alert for failed run {run_id} within {timeout_s} s: {dep.webhook.posts}")
        time.sleep(1)
    return time.monotonic() - t0


def test_daemon_killed_mid_backfill_resumes_without_duplicate_runs(deployment: Deployment):
    dep = deployment

    def kill_daemon(backfill: Backfill) -> str:
        fetching = wait_for_fetching(dep, backfill)
        dep.services[("daemon", "control")].kill()
        time.sleep(2)
        dep.start("daemon")
        return f"daemon SIGKILLed while {fetching} fetched, restarted 2 s later"

    backfill, runs, _ = recovered(dep, "2024-03-01", FAULT_SYMBOLS, "daemon killed", kill_daemon)
    assert len(runs) == len(FAULT_SYMBOLS), f"one run per symbol, no duplicate: {describe_runs(dep, runs)}"


def test_run_process_killed_mid_backfill_is_retried_and_alerted(deployment: Deployment):
    dep = deployment
    killed: dict[str, Any] = {}

    def kill_run(backfill: Backfill) -> str:
        host, slots = wait_for_slot_holder(dep, backfill)
        pids = run_processes(dep.services[("code-server", host)])
        assert pids, f"no run process under {host}'s code server"
        os.kill(pids[0], signal.SIGKILL)
        killed.update(host=host, pid=pids[0], at=time.time(), slots=slots)
        dep.emulator.control.clear_faults()
        return f"run process {pids[0]} on {host} SIGKILLed while fetching (pool slots then: {len(killed['slots'])})"

    backfill, runs, _ = recovered(dep, "2024-03-11", FAULT_SYMBOLS, "run process killed", kill_run)
    failed = [r for r in runs if r["status"] == "FAILURE"]
    assert len(failed) == 1 and len(runs) == len(FAULT_SYMBOLS) + 1, f"one failed, a retry: {describe_runs(dep, runs)}"
    held = [slot for slot in killed["slots"] if slot["runId"] == failed[0]["runId"]]
    assert held, f"the killed run held no pool slot when killed: {killed['slots']}"  # and none is left (recovered)
    took = wait_alert(dep, failed[0]["runId"])
    print(
        f"the killed run {failed[0]['runId'][:8]} ended FAILURE {failed[0]['endTime'] - killed['at']:.1f} s after the "
        f"kill; its alert was posted {took:.0f} s after the backfill ended"
    )


def test_redis_killed_mid_backfill_loses_no_run(deployment: Deployment):
    dep = deployment

    def kill_redis(backfill: Backfill) -> str:
        fetching = wait_for_fetching(dep, backfill)
        dep.redis.kill()
        time.sleep(3)
        dep.redis.start()
        return f"Redis SIGKILLed while {fetching} fetched, back 3 s later (empty)"

    backfill, runs, _ = recovered(dep, "2024-03-21", FAULT_SYMBOLS, "Redis killed", kill_redis)
    assert len(runs) == len(FAULT_SYMBOLS), f"the limiter fell back, no run failed: {describe_runs(dep, runs)}"
    said = Counter()
    for run in runs:
        events = dep.web.graphql(RUN_MESSAGES, {"id": run["runId"]})["logsForRun"]["events"]
        for message in (e.get("message") or "" for e in events):
            said["fell back"] += "Redis unreachable" in message
            said["shared again"] += "sharing again" in message
    assert said["fell back"] >= 1, f"no run's limiter saw the outage: {describe_runs(dep, runs)}"
    print(f"rate limiter messages in the runs' logs: {dict(said)}")


def test_run_host_lost_mid_backfill_its_runs_are_retried_on_the_other(deployment: Deployment):
    dep = deployment
    lost: dict[str, Any] = {}

    def lose_host(backfill: Backfill) -> str:
        host, slots = wait_for_slot_holder(dep, backfill)
        lost.update(host=host, slots=slots, at=time.time(), pids=dep.net.hosts[host].lose())
        dep.emulator.control.clear_faults()
        return (
            f"run host {host} lost ({len(lost['pids'])} processes SIGKILLed, its link down) while fetching "
            f"(pool slots then: {len(lost['slots'])})"
        )

    backfill, runs, _ = recovered(dep, "2024-04-01", FAULT_SYMBOLS, "run host lost", lose_host)
    survivor = next(h for h in RUN_HOSTS if h != lost["host"])
    failed = [r for r in runs if r["status"] == "FAILURE"]
    assert failed and all(run_host(dep, r) == lost["host"] for r in failed), describe_runs(dep, runs)
    failed_ids = {r["runId"] for r in failed}
    assert any(slot["runId"] in failed_ids for slot in lost["slots"]), f"no slot held by the lost runs: {lost}"
    print(
        "the lost host's runs ended FAILURE "
        + ", ".join(f"{r['endTime'] - lost['at']:.0f} s" for r in failed)
        + f" after the loss; retried on {survivor}"
    )
    after = [r for r in runs if r["creationTime"] > lost["at"]]
    assert after and all(run_host(dep, r) == survivor for r in after), f"after the loss: {describe_runs(dep, after)}"


def test_no_password_in_the_instance_or_the_logs(deployment: Deployment):
    """Postgres's and QuestDB's passwords came from the environment only: no row of the instance's
    tables (runs, events, tags, ticks, backfills, ...) holds one, nor does any service's log."""
    dep = deployment
    rows = 0
    with dep.postgres.connect() as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            rows += conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            for secret in dep.secrets:
                found = conn.execute(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s', (f"%{secret}%",))
                assert found.fetchone() == (0,), f"a password is stored in the instance's table {table}"
    for service in dep.services.values():
        text = service.log_path.read_text(errors="replace")
        assert not any(secret in text for secret in dep.secrets), f"a password in {service.host}'s {service.role} log"
    print(f"no password in {rows} rows of {len(tables)} instance tables or in {len(dep.services)} service logs")

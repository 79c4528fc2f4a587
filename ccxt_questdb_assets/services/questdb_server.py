"""Run a local QuestDB server from the pinned jar.

Two ways:

* ``QuestDBServer`` — owned by this Python process (tests, fixtures). Context manager; ``start()``
  blocks until HTTP ``/ping`` answers 204 and PG wire answers ``select 1``; ``stop()`` sends SIGTERM,
  then SIGKILL. The JVM is tied to its parent on Linux (it gets SIGKILL if the parent dies).
* ``start_detached`` / ``stop_detached`` / ``server_status`` — a background server that outlives the
  command (the ``ccxt-questdb questdb`` CLI). Its pid, settings and log live in the data dir:
  ``ccxt-questdb.pid``, ``ccxt-questdb.json``, ``ccxt-questdb.log``.

Settings come from arguments, else ``ServerSettings.from_env`` (``CCXT_QUESTDB_*``), else defaults.
Every QuestDB setting is passed as a ``QDB_*`` environment variable; nothing is written to
``server.conf``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ccxt_questdb_assets.core.errors import ConfigError, ServiceError
from ccxt_questdb_assets.services.java import JavaRuntime, find_java
from ccxt_questdb_assets.services.ports import free_ports, port_accepts, port_is_free, validate_port
from ccxt_questdb_assets.services.process import parent_death_preexec
from ccxt_questdb_assets.services.questdb_release import QuestDBRelease, fetch_release, resolve_release
from ccxt_questdb_assets.services.state import state_dir
from ccxt_questdb_assets.storage.connection import QuestDBConnection

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_HEAP",
    "ENV_DATA_DIR",
    "ENV_HTTP_PORT",
    "ENV_PG_PORT",
    "ENV_ILP_PORT",
    "ENV_MIN_PORT",
    "ENV_BIND_HOST",
    "ENV_HEAP",
    "ENV_JVM_OPTS",
    "ENV_START_TIMEOUT",
    "ServerPorts",
    "ServerSettings",
    "ServerStatus",
    "QuestDBServer",
    "default_data_dir",
    "build_command",
    "build_qdb_env",
    "ping",
    "pg_ready",
    "start_detached",
    "stop_detached",
    "server_status",
    "log_tail",
]

ENV_DATA_DIR = "CCXT_QUESTDB_DATA_DIR"
ENV_HTTP_PORT = "CCXT_QUESTDB_HTTP_PORT"
ENV_PG_PORT = "CCXT_QUESTDB_PG_PORT"
ENV_ILP_PORT = "CCXT_QUESTDB_ILP_PORT"
ENV_MIN_PORT = "CCXT_QUESTDB_MIN_HTTP_PORT"
ENV_BIND_HOST = "CCXT_QUESTDB_BIND_HOST"
ENV_HEAP = "CCXT_QUESTDB_HEAP"
ENV_JVM_OPTS = "CCXT_QUESTDB_JVM_OPTS"
ENV_START_TIMEOUT = "CCXT_QUESTDB_START_TIMEOUT"

DEFAULT_HEAP = "2g"
DEFAULT_BIND_HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT = 90.0
PID_FILE = "ccxt-questdb.pid"
STATE_FILE = "ccxt-questdb.json"
LOG_FILE = "ccxt-questdb.log"
# A marker on the JVM command line, so a pid from a pid file is only trusted if it is ours.
_MARKER_PROP = "ccxt.questdb.root"


@dataclass(frozen=True)
class ServerPorts:
    http: int
    pg: int
    ilp: int
    min: int

    def as_list(self) -> list[tuple[str, int]]:
        return [("http", self.http), ("pg", self.pg), ("ilp", self.ilp), ("min", self.min)]


DEFAULT_PORTS = ServerPorts(http=9000, pg=8812, ilp=9009, min=9003)


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$CCXT_QUESTDB_DATA_DIR``, else ``<state dir>/questdb/data``."""
    env = os.environ if env is None else env
    raw = env.get(ENV_DATA_DIR, "").strip()
    return Path(raw).expanduser().absolute() if raw else state_dir(env) / "questdb" / "data"


def _heap_ok(heap: str) -> str:
    h = heap.strip().lower()
    if not h or not h[:-1].isdigit() or h[-1] not in "kmg" or int(h[:-1]) <= 0:
        raise ConfigError(f"QuestDB heap size must look like 512m or 2g, got {heap!r}")
    return h


@dataclass(frozen=True)
class ServerSettings:
    """Everything needed to start one server."""

    data_dir: Path
    ports: ServerPorts
    host: str = DEFAULT_BIND_HOST
    heap: str = DEFAULT_HEAP
    jvm_opts: tuple[str, ...] = ()
    start_timeout: float = DEFAULT_START_TIMEOUT
    extra_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold QDB_PG_PASSWORD

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        http_port: int | None = None,
        pg_port: int | None = None,
        ilp_port: int | None = None,
        min_port: int | None = None,
        host: str | None = None,
        heap: str | None = None,
        jvm_opts: Sequence[str] | None = None,
        start_timeout: float | None = None,
    ) -> ServerSettings:
        """Arguments win over ``CCXT_QUESTDB_*`` variables, which win over the defaults."""
        env = os.environ if env is None else env

        def port(arg: int | None, label: str, name: str, default: int) -> int:
            if arg is not None:
                return validate_port(arg, label)
            raw = env.get(name, "").strip()
            return validate_port(raw, name) if raw else default

        ports = ServerPorts(
            http=port(http_port, "http port", ENV_HTTP_PORT, DEFAULT_PORTS.http),
            pg=port(pg_port, "pg port", ENV_PG_PORT, DEFAULT_PORTS.pg),
            ilp=port(ilp_port, "ilp port", ENV_ILP_PORT, DEFAULT_PORTS.ilp),
            min=port(min_port, "min http port", ENV_MIN_PORT, DEFAULT_PORTS.min),
        )
        ddir = Path(data_dir).expanduser().absolute() if data_dir else default_data_dir(env)
        if jvm_opts is None:
            try:
                jvm_opts = shlex.split(env.get(ENV_JVM_OPTS, ""))
            except ValueError as exc:
                raise ConfigError(f"{ENV_JVM_OPTS} is not a valid shell word list: {exc}") from None
        raw_timeout = (
            start_timeout
            if start_timeout is not None
            else env.get(ENV_START_TIMEOUT, "").strip() or DEFAULT_START_TIMEOUT
        )
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ConfigError(f"{ENV_START_TIMEOUT} must be seconds, got {raw_timeout!r}") from None
        return cls(
            data_dir=ddir,
            ports=ports,
            host=(host or env.get(ENV_BIND_HOST, "").strip() or DEFAULT_BIND_HOST),
            heap=_heap_ok(heap or env.get(ENV_HEAP, "").strip() or DEFAULT_HEAP),
            jvm_opts=tuple(jvm_opts),
            start_timeout=timeout,
        )

    def __post_init__(self) -> None:
        seen: dict[int, str] = {}
        for name, p in self.ports.as_list():
            validate_port(p, f"{name} port")
            if p in seen:
                raise ConfigError(f"QuestDB {name} port {p} is also the {seen[p]} port; give each a different port")
            seen[p] = name

    @property
    def client_host(self) -> str:
        """Where clients connect: the bind host, or loopback for a wildcard bind."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host


def build_qdb_env(settings: ServerSettings) -> dict[str, str]:
    """The ``QDB_*`` variables that configure the server."""
    h, p = settings.host, settings.ports
    env = {
        "QDB_HTTP_BIND_TO": f"{h}:{p.http}",
        "QDB_HTTP_MIN_BIND_TO": f"{h}:{p.min}",
        "QDB_PG_NET_BIND_TO": f"{h}:{p.pg}",
        "QDB_LINE_TCP_NET_BIND_TO": f"{h}:{p.ilp}",
        # UDP ILP would take 9009/udp on every instance; nothing here uses it.
        "QDB_LINE_UDP_ENABLED": "false",
        "QDB_TELEMETRY_ENABLED": "false",
        "QDB_TELEMETRY_HIDE_TABLES": "true",
    }
    env.update(dict(settings.extra_env))
    return env


def build_command(java: JavaRuntime | Path, jar: Path, settings: ServerSettings) -> list[str]:
    java_path = java.path if isinstance(java, JavaRuntime) else java
    return [
        str(java_path),
        f"-Xms{min(256, _heap_mb(settings.heap))}m",
        f"-Xmx{settings.heap}",
        "-XX:+UseParallelGC",
        f"-XX:ErrorFile={settings.data_dir / 'hs_err_pid%p.log'}",
        f"-D{_MARKER_PROP}={settings.data_dir}",
        *settings.jvm_opts,
        "--add-exports",
        "java.base/jdk.internal.math=io.questdb",
        "-p",
        str(jar),
        "-m",
        "io.questdb/io.questdb.ServerMain",
        "-d",
        str(settings.data_dir),
    ]


def _heap_mb(heap: str) -> int:
    n, unit = int(heap[:-1]), heap[-1]
    return {"k": max(1, n // 1024), "m": n, "g": n * 1024}[unit]


# ----- probes ----------------------------------------------------------------------------------

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ping(host: str, http_port: int, timeout: float = 1.0) -> bool:
    """True when ``GET /ping`` answers 204 (proxies from the environment are ignored)."""
    try:
        with _NO_PROXY_OPENER.open(f"http://{host}:{http_port}/ping", timeout=timeout) as resp:
            return resp.status == 204
    except (urllib.error.URLError, OSError, ValueError):
        return False


def pg_ready(conn: QuestDBConnection, timeout: float = 2.0) -> bool:
    """True when PG wire accepts a login and answers ``select 1``."""
    import psycopg

    try:
        with psycopg.connect(conn.with_(connect_timeout=timeout).pg_conninfo(), autocommit=True) as c:
            return c.execute("select 1").fetchone() == (1,)
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False


def log_tail(path: Path, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:]) or "(empty log)"


def _connection_for(settings: ServerSettings) -> QuestDBConnection:
    """Where the server answers, with the PG credentials it was given (``QDB_PG_USER``/``QDB_PG_PASSWORD``
    in ``extra_env``), so readiness probes and clients of a password-protected server can log in."""
    extra = dict(settings.extra_env)
    creds = {
        key: extra[name] for key, name in (("user", "QDB_PG_USER"), ("password", "QDB_PG_PASSWORD")) if extra.get(name)
    }
    return QuestDBConnection(
        host=settings.client_host,
        port=settings.ports.pg,
        http_host=settings.client_host,
        http_port=settings.ports.http,
        **creds,
    )


def _wait_ready(settings: ServerSettings, proc_alive: Any, log_path: Path, what: str) -> float:
    """Poll until ready; returns seconds waited. ServiceError (with the log tail) on death/timeout."""
    t0 = time.monotonic()
    deadline = t0 + settings.start_timeout
    conn = _connection_for(settings)
    http_ok = False
    while True:
        code = proc_alive()
        if code is not None:
            raise ServiceError(
                f"{what} exited with code {code} during startup. Last log lines ({log_path}):\n{log_tail(log_path)}"
            )
        if not http_ok:
            http_ok = ping(settings.client_host, settings.ports.http)
        if http_ok and pg_ready(conn):
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{what} did not become ready within {settings.start_timeout:.0f} s "
                f"(HTTP /ping {'ok' if http_ok else 'not answering'} on port {settings.ports.http}, "
                f"PG wire not answering on port {settings.ports.pg}); raise {ENV_START_TIMEOUT} if the "
                f"machine is slow. Last log lines ({log_path}):\n{log_tail(log_path)}"
            )
        time.sleep(0.1)


def _ports_text(ports: ServerPorts | None) -> str:
    return ", ".join(f"{name} {p}" for name, p in ports.as_list()) if ports else "unknown ports"


def _busy_ports(settings: ServerSettings) -> list[str]:
    return [f"{name} {p}" for name, p in settings.ports.as_list() if not port_is_free(p, settings.host)]


def _prepare(
    settings: ServerSettings,
    release: QuestDBRelease | None,
    jar: Path | None,
    java: JavaRuntime | None,
    env: Mapping[str, str],
) -> tuple[QuestDBRelease, Path, JavaRuntime, list[str], dict[str, str]]:
    release = release or resolve_release(env=env)
    java = java or find_java(release.min_java, env)
    if java.major < release.min_java:
        raise ServiceError(f"QuestDB {release.version} needs Java {release.min_java}+, but {java} was given")
    jar = jar or fetch_release(release, env=env)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = build_command(java, jar, settings)
    child_env = dict(env)
    child_env.update(build_qdb_env(settings))
    return release, jar, java, cmd, child_env


def _stop_pid(pid: int, timeout: float, wait: Any) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. ``wait(t)`` returns True once the pid is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait(timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait(10.0)


# ----- in-process server -----------------------------------------------------------------------


class QuestDBServer:
    """A QuestDB server child of this process.

    Ports left as None are picked free at construction. Example::

        with QuestDBServer(tmp_path / "qdb") as srv:
            with srv.connection.pg_connect() as c: ...
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        http_port: int | None = None,
        pg_port: int | None = None,
        ilp_port: int | None = None,
        min_port: int | None = None,
        *,
        host: str = DEFAULT_BIND_HOST,
        version: str | None = None,
        release: QuestDBRelease | None = None,
        jar: str | os.PathLike[str] | None = None,
        java: JavaRuntime | None = None,
        heap: str | None = None,
        jvm_opts: Sequence[str] | None = None,
        start_timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        given = [http_port, pg_port, ilp_port, min_port]
        missing = sum(p is None for p in given)
        if missing:
            taken = {p for p in given if p is not None}
            probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            picked = iter([p for p in free_ports(missing + len(taken), probe_host) if p not in taken][:missing])
            http_port, pg_port, ilp_port, min_port = (p if p is not None else next(picked) for p in given)
        self.settings = replace(
            ServerSettings.from_env(
                self._env,
                data_dir=data_dir,
                http_port=http_port,
                pg_port=pg_port,
                ilp_port=ilp_port,
                min_port=min_port,
                host=host,
                heap=heap,
                jvm_opts=jvm_opts,
                start_timeout=start_timeout,
            ),
            extra_env=tuple((extra_env or {}).items()),
        )
        self.release = release or resolve_release(version, self._env)
        self.jar = Path(jar) if jar else None
        self.java = java
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    # -- addresses
    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def ports(self) -> ServerPorts:
        return self.settings.ports

    @property
    def http_port(self) -> int:
        return self.ports.http

    @property
    def pg_port(self) -> int:
        return self.ports.pg

    @property
    def ilp_port(self) -> int:
        return self.ports.ilp

    @property
    def min_port(self) -> int:
        return self.ports.min

    @property
    def version(self) -> str:
        return self.release.version

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def connection(self) -> QuestDBConnection:
        return _connection_for(self.settings)

    @property
    def http_url(self) -> str:
        return self.connection.rest_url

    @property
    def pg_dsn(self) -> str:
        """The PG wire DSN, password included (default admin/quest)."""
        return self.connection.to_dsn(include_password=True)

    @property
    def ilp_conf(self) -> str:
        return self.connection.ilp_conf()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- lifecycle
    def start(self) -> QuestDBServer:
        """Start and wait until ready. ServiceError (with the log tail) if it cannot."""
        if self.is_running():
            return self
        busy = _busy_ports(self.settings)
        if busy:
            raise ServiceError(
                f"cannot start QuestDB: port(s) already in use on {self.settings.host}: {', '.join(busy)}"
            )
        self.release, self.jar, self.java, cmd, child_env = _prepare(
            self.settings, self.release, self.jar, self.java, self._env
        )
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- ccxt-questdb: starting QuestDB {self.version}: {shlex.join(cmd)}\n".encode())
            log.flush()
            try:
                self.process = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                    cwd=self.data_dir,
                    preexec_fn=parent_death_preexec(),  # noqa: PLW1509
                )
            except OSError as exc:
                raise ServiceError(f"cannot run {cmd[0]}: {exc}") from exc
        try:
            _wait_ready(
                self.settings, self.process.poll, self.log_path, f"QuestDB {self.version} (pid {self.process.pid})"
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def restart(self) -> QuestDBServer:
        """Stop, then start again with the same data dir and ports (data is kept)."""
        self.stop()
        return self.start()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Safe to call twice."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return

        def wait(t: float) -> bool:
            try:
                proc.wait(t)
                return True
            except subprocess.TimeoutExpired:
                return False

        _stop_pid(proc.pid, timeout, wait)

    def __enter__(self) -> QuestDBServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return (
            f"QuestDBServer(version={self.version!r}, data_dir={str(self.data_dir)!r}, http={self.http_port}, "
            f"pg={self.pg_port}, ilp={self.ilp_port}, min={self.min_port}, {state})"
        )


# ----- detached server (CLI) -------------------------------------------------------------------


@dataclass
class ServerStatus:
    running: bool
    data_dir: Path
    pid: int | None = None
    version: str | None = None
    ports: ServerPorts | None = None
    host: str | None = None
    healthy: bool | None = None  # /ping answered 204
    log_path: Path | None = None
    started_at: float | None = None
    already_running: bool = False
    startup_seconds: float | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data_dir"] = str(self.data_dir)
        d["log_path"] = str(self.log_path) if self.log_path else None
        d.pop("extra")
        return d

    def describe(self) -> str:
        if not self.running:
            return f"QuestDB: not running (data dir {self.data_dir}){' - ' + self.detail if self.detail else ''}"
        p = self.ports
        assert p is not None
        lines = [
            f"QuestDB {self.version}: {'already running' if self.already_running else 'running'}, pid {self.pid}"
            + ("" if self.healthy else " (not answering /ping)"),
            f"  data dir : {self.data_dir}",
            f"  http     : http://{self.host}:{p.http}  (REST, ILP over HTTP, web console)",
            f"  pg wire  : postgresql://admin:quest@{self.host}:{p.pg}/qdb",
            f"  ilp tcp  : {self.host}:{p.ilp}",
            f"  health   : http://{self.host}:{p.min}",
            f"  log      : {self.log_path}",
        ]
        if self.startup_seconds is not None:
            lines.append(f"  started in {self.startup_seconds:.1f} s")
        return "\n".join(lines)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _pid_is_ours(pid: int, data_dir: Path) -> bool:
    """The pid runs QuestDB with our marker for this data dir (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid file
    return f"-D{_MARKER_PROP}={data_dir}".encode() in args


def _read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        pass
    try:
        return {"pid": int((data_dir / PID_FILE).read_text().strip())}
    except (OSError, ValueError):
        return None


def _clear_state(data_dir: Path) -> None:
    for name in (PID_FILE, STATE_FILE):
        (data_dir / name).unlink(missing_ok=True)


def server_status(data_dir: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> ServerStatus:
    """Is the detached server of ``data_dir`` (default: ``default_data_dir()``) running?"""
    ddir = Path(data_dir).expanduser().absolute() if data_dir else default_data_dir(env)
    state = _read_state(ddir)
    if not state or "pid" not in state:
        return ServerStatus(
            running=False, data_dir=ddir, log_path=ddir / LOG_FILE if (ddir / LOG_FILE).exists() else None
        )
    pid = int(state["pid"])
    ports = ServerPorts(**state["ports"]) if "ports" in state else None
    if not _pid_is_ours(pid, ddir):
        return ServerStatus(
            running=False, data_dir=ddir, detail=f"stale pid file (pid {pid} is gone)", log_path=ddir / LOG_FILE
        )
    host = state.get("client_host", "127.0.0.1")
    return ServerStatus(
        running=True,
        data_dir=ddir,
        pid=pid,
        version=state.get("version"),
        ports=ports,
        host=host,
        healthy=ping(host, ports.http) if ports else None,
        log_path=ddir / LOG_FILE,
        started_at=state.get("started_at"),
    )


def start_detached(
    settings: ServerSettings | None = None,
    *,
    release: QuestDBRelease | None = None,
    env: Mapping[str, str] | None = None,
) -> ServerStatus:
    """Start a background QuestDB for ``settings.data_dir`` unless it already runs there.

    Already running on the same ports -> its status with ``already_running=True``; on other ports ->
    ServiceError. Waits until ready; on failure the process is killed and the log tail reported.
    """
    env = dict(os.environ if env is None else env)
    settings = settings or ServerSettings.from_env(env)
    release = release or resolve_release(env=env)
    current = server_status(settings.data_dir, env)
    if current.running:
        if current.ports == settings.ports:
            current.already_running = True
            return current
        raise ServiceError(
            f"QuestDB already runs from {settings.data_dir} (pid {current.pid}) on other ports "
            f"({_ports_text(current.ports)}); stop it first with "
            f"`ccxt-questdb questdb stop --data-dir {settings.data_dir}`"
        )
    _clear_state(settings.data_dir)
    busy = _busy_ports(settings)
    if busy:
        hint = ""
        if port_accepts(settings.ports.http, settings.client_host) and ping(settings.client_host, settings.ports.http):
            hint = f"; a QuestDB not started from {settings.data_dir} answers on HTTP port {settings.ports.http}"
        raise ServiceError(
            f"cannot start QuestDB: port(s) already in use on {settings.host}: {', '.join(busy)}{hint}. "
            "Choose other ports (--http-port/--pg-port/--ilp-port/--min-port or CCXT_QUESTDB_*_PORT)"
        )
    release, jar, java, cmd, child_env = _prepare(settings, release, None, None, env)
    log_path = settings.data_dir / LOG_FILE
    with open(log_path, "ab") as log:
        log.write(f"\n--- ccxt-questdb: starting QuestDB {release.version}: {shlex.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=settings.data_dir,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot run {cmd[0]}: {exc}") from exc
    started_at = time.time()
    state = {
        "pid": proc.pid,
        "version": release.version,
        "ports": asdict(settings.ports),
        "host": settings.host,
        "client_host": settings.client_host,
        "data_dir": str(settings.data_dir),
        "jar": str(jar),
        "java": str(java.path),
        "heap": settings.heap,
        "started_at": started_at,
    }
    (settings.data_dir / PID_FILE).write_text(f"{proc.pid}\n")
    tmp = settings.data_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, settings.data_dir / STATE_FILE)
    try:
        waited = _wait_ready(settings, proc.poll, log_path, f"QuestDB {release.version} (pid {proc.pid})")
    except BaseException:
        _stop_pid(proc.pid, 10.0, lambda t: _wait_popen(proc, t))
        _clear_state(settings.data_dir)
        raise
    status = server_status(settings.data_dir, env)
    status.startup_seconds = waited
    return status


def _wait_popen(proc: subprocess.Popen[bytes], t: float) -> bool:
    try:
        proc.wait(t)
        return True
    except subprocess.TimeoutExpired:
        return False


def _wait_pid_gone(pid: int, t: float) -> bool:
    deadline = time.monotonic() + t
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return not _pid_alive(pid)


def stop_detached(
    data_dir: str | os.PathLike[str] | None = None, *, timeout: float = 30.0, env: Mapping[str, str] | None = None
) -> ServerStatus:
    """Stop the background server of ``data_dir``: SIGTERM, wait ``timeout`` s, then SIGKILL.

    Returns the status before stopping (``running`` False if there was nothing to stop).
    """
    status = server_status(data_dir, env)
    if status.running and status.pid is not None:
        _stop_pid(status.pid, timeout, lambda t: _wait_pid_gone(status.pid, t))  # type: ignore[arg-type]
        if _pid_alive(status.pid):
            raise ServiceError(f"QuestDB pid {status.pid} did not exit after SIGKILL")
    _clear_state(status.data_dir)
    return status

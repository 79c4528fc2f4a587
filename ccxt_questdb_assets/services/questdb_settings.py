"""The local QuestDB's settings: ports, data dir, heap, from arguments or ``CCXT_QUESTDB_*``, and
the command and ``QDB_*`` environment that start the server with them (nothing is written to
``server.conf``)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.services.java import JavaRuntime
from ccxt_questdb_assets.services.state import state_dir
from ccxt_questdb_assets.storage.connection import port_number

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
MARKER_PROP = "ccxt.questdb.root"


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
                return port_number(arg, label)
            raw = env.get(name, "").strip()
            return port_number(raw, name) if raw else default

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
            port_number(p, f"{name} port")
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
        f"-D{MARKER_PROP}={settings.data_dir}",
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

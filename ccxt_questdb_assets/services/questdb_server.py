"""Run a local QuestDB server from the pinned jar.

Two ways:

* ``QuestDBServer`` — owned by this Python process (tests, fixtures). Context manager; ``start()``
  blocks until HTTP ``/ping`` answers 204 and PG wire answers ``select 1``; ``stop()`` sends SIGTERM,
  then SIGKILL. The JVM is tied to its parent on Linux (it gets SIGKILL if the parent dies).
* ``start_detached`` / ``stop_detached`` / ``server_status`` (:mod:`.questdb_daemon`) — a background
  server that outlives the command (the ``ccxt-questdb questdb`` CLI). Its pid, settings and log live in the data dir:
  ``ccxt-questdb.pid``, ``ccxt-questdb.json``, ``ccxt-questdb.log``.

Settings (:mod:`.questdb_settings`) come from arguments, else ``ServerSettings.from_env``
(``CCXT_QUESTDB_*``), else defaults. Every QuestDB setting is passed as a ``QDB_*`` environment
variable; nothing is written to ``server.conf``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.services.java import JavaRuntime
from ccxt_questdb_assets.services.ports import free_ports
from ccxt_questdb_assets.services.process import ChildProcess, parent_death_preexec
from ccxt_questdb_assets.services.questdb_endpoints import QuestDBEndpoints
from ccxt_questdb_assets.services.questdb_process import (
    busy_ports,
    connection_for,
    launch,
    prepare,
    stop_pid,
    wait_exit,
    wait_ready,
)
from ccxt_questdb_assets.services.questdb_release import QuestDBRelease, resolve_release
from ccxt_questdb_assets.services.questdb_settings import DEFAULT_BIND_HOST, LOG_FILE, ServerPorts, ServerSettings
from ccxt_questdb_assets.storage.connection import QuestDBConnection


class QuestDBServer(QuestDBEndpoints, ChildProcess):
    """A QuestDB server child of this process (``http_url``, ``pg_dsn``, ``ilp_conf``: its endpoints).

    Ports left as None are picked free at construction; ``restart()`` keeps them, and the data.
    Example::

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
        return connection_for(self.settings)

    # -- lifecycle
    def start(self) -> QuestDBServer:
        """Start and wait until ready. ServiceError (with the log tail) if it cannot."""
        if self.is_running():
            return self
        busy = busy_ports(self.settings)
        if busy:
            raise ServiceError(
                f"cannot start QuestDB: port(s) already in use on {self.settings.host}: {', '.join(busy)}"
            )
        self.release, self.jar, self.java, cmd, child_env = prepare(
            self.settings, self.release, self.jar, self.java, self._env
        )
        t0 = time.monotonic()
        self.process = launch(self.settings, cmd, child_env, self.version, preexec_fn=parent_death_preexec())
        try:
            wait_ready(self.settings, self.process.poll, f"QuestDB {self.version} (pid {self.process.pid})")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Safe to call twice."""
        proc = self._take_running()
        if proc is None:
            return
        stop_pid(proc.pid, timeout, lambda t: wait_exit(proc, t))

    def __repr__(self) -> str:
        return (
            f"QuestDBServer(version={self.version!r}, data_dir={str(self.data_dir)!r}, http={self.http_port}, "
            f"pg={self.pg_port}, ilp={self.ilp_port}, min={self.min_port}, {self._state()})"
        )

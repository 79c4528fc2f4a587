"""What starting and stopping a local QuestDB process takes: readiness probes (HTTP ``/ping``, PG
wire ``select 1``), the log's tail, busy ports, the jar and Java, launching the JVM, and stopping a
pid."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.services.java import JavaRuntime, find_java
from ccxt_questdb_assets.services.ports import port_is_free
from ccxt_questdb_assets.services.questdb_release import QuestDBRelease, fetch_release, resolve_release
from ccxt_questdb_assets.services.questdb_settings import (
    ENV_START_TIMEOUT,
    LOG_FILE,
    ServerPorts,
    ServerSettings,
    build_command,
    build_qdb_env,
)
from ccxt_questdb_assets.storage.connection import QuestDBConnection

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


def connection_for(settings: ServerSettings) -> QuestDBConnection:
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


def wait_ready(settings: ServerSettings, proc_alive: Any, what: str) -> float:
    """Poll until ready; returns seconds waited. ServiceError (with the server log's tail) on death/timeout."""
    log_path = settings.data_dir / LOG_FILE
    t0 = time.monotonic()
    deadline = t0 + settings.start_timeout
    conn = connection_for(settings)
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


def ports_text(ports: ServerPorts | None) -> str:
    return ", ".join(f"{name} {p}" for name, p in ports.as_list()) if ports else "unknown ports"


def busy_ports(settings: ServerSettings) -> list[str]:
    return [f"{name} {p}" for name, p in settings.ports.as_list() if not port_is_free(p, settings.host)]


def prepare(
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


def launch(
    settings: ServerSettings, cmd: list[str], child_env: Mapping[str, str], version: str, **detach: Any
) -> subprocess.Popen[bytes]:
    """Run ``cmd`` (from :func:`prepare`) in the data dir, its output appended to the server log
    after a line naming the start; ``detach`` ties the process to its parent or sets it free
    (``preexec_fn``, ``start_new_session``). ServiceError if it cannot run."""
    with open(settings.data_dir / LOG_FILE, "ab") as log:
        log.write(f"\n--- ccxt-questdb: starting QuestDB {version}: {shlex.join(cmd)}\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=settings.data_dir,
                **detach,
            )
        except OSError as exc:
            raise ServiceError(f"cannot run {cmd[0]}: {exc}") from exc


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once ``proc`` has exited, waiting up to ``timeout`` seconds."""
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def stop_pid(pid: int, timeout: float, wait: Any) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. ``wait(t)`` returns True once the pid is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait(timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait(10.0)

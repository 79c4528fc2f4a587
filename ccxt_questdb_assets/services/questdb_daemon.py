"""A QuestDB server that outlives the command that started it (the ``ccxt-questdb questdb`` CLI):
its pid, settings and log live in the data dir (``ccxt-questdb.pid``, ``ccxt-questdb.json``,
``ccxt-questdb.log``); ``server_status`` tells whether it runs and is ours."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.services.ports import port_accepts
from ccxt_questdb_assets.services.questdb_process import (
    busy_ports,
    launch,
    ping,
    ports_text,
    prepare,
    stop_pid,
    wait_exit,
    wait_ready,
)
from ccxt_questdb_assets.services.questdb_release import QuestDBRelease, resolve_release
from ccxt_questdb_assets.services.questdb_settings import (
    LOG_FILE,
    MARKER_PROP,
    PID_FILE,
    STATE_FILE,
    ServerPorts,
    ServerSettings,
    default_data_dir,
)


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
    return f"-D{MARKER_PROP}={data_dir}".encode() in args


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
            f"({ports_text(current.ports)}); stop it first with "
            f"`ccxt-questdb questdb stop --data-dir {settings.data_dir}`"
        )
    _clear_state(settings.data_dir)
    busy = busy_ports(settings)
    if busy:
        hint = ""
        if port_accepts(settings.ports.http, settings.client_host) and ping(settings.client_host, settings.ports.http):
            hint = f"; a QuestDB not started from {settings.data_dir} answers on HTTP port {settings.ports.http}"
        raise ServiceError(
            f"cannot start QuestDB: port(s) already in use on {settings.host}: {', '.join(busy)}{hint}. "
            "Choose other ports (--http-port/--pg-port/--ilp-port/--min-port or CCXT_QUESTDB_*_PORT)"
        )
    release, jar, java, cmd, child_env = prepare(settings, release, None, None, env)
    proc = launch(settings, cmd, child_env, release.version, start_new_session=True)
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
        waited = wait_ready(settings, proc.poll, f"QuestDB {release.version} (pid {proc.pid})")
    except BaseException:
        stop_pid(proc.pid, 10.0, lambda t: wait_exit(proc, t))
        _clear_state(settings.data_dir)
        raise
    status = server_status(settings.data_dir, env)
    status.startup_seconds = waited
    return status


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
        stop_pid(status.pid, timeout, lambda t: _wait_pid_gone(status.pid, t))  # type: ignore[arg-type]
        if _pid_alive(status.pid):
            raise ServiceError(f"QuestDB pid {status.pid} did not exit after SIGKILL")
    _clear_state(status.data_dir)
    return status

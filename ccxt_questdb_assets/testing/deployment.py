"""The services of the deployment over several hosts (``deploy/``), started as its units start them.

Each service is ``deploy/serve.sh ROLE`` (what ``deploy/systemd``'s units run) with an environment
made of the variables ``deploy/ccxt-questdb.env.example`` documents, on a host: this process's
network namespace (the control host) or one of :mod:`.netns`'s hosts (``ip netns exec``). A
service runs in its own process group, which holds everything it starts (a code server's runs
too), so :meth:`Service.stop` and :meth:`Service.kill` leave nothing behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ccxt_questdb_assets.core.errors import ServiceError

__all__ = [
    "ENV_PREFIXES",
    "Service",
    "documented_variables",
    "run_processes",
    "service_env",
    "start_service",
    "wait_for_code_server",
]

#: Variables of the caller's environment a service does not inherit: the deployment's own are set
#: explicitly, so a leftover from the shell running the tests cannot change what is tested.
ENV_PREFIXES = ("DAGSTER_", "CCXT_QUESTDB_", "QMTL_")

_SECTION = re.compile(r"^#\s*-{2,}\s*(.+?)(?:\s*\(.*\))?\s*$")
_ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=")


def documented_variables(env_file: Path) -> dict[str, list[str]]:
    """The variables of each ``# ---- section`` of an environment file, in order."""
    sections: dict[str, list[str]] = {}
    current = "preamble"
    for line in env_file.read_text().splitlines():
        heading = _SECTION.match(line)
        if heading:
            current = heading.group(1).strip()
            continue
        assigned = _ASSIGNMENT.match(line)
        if assigned:
            sections.setdefault(current, []).append(assigned.group(1))
    return sections


def service_env(variables: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment) without the deployment's variables, plus ``variables``."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(ENV_PREFIXES)}
    env.update(variables)
    return env


@dataclass
class Service:
    """One running role of the deployment on one host."""

    role: str
    host: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    secrets: tuple[str, ...] = ()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"<no log at {self.log_path}: {exc}>"
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # start_new_session: the group id is the leader's pid
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the service and everything it started (a crash)."""
        self._signal_group(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL whatever of the group is left after ``grace_s``. Safe to call twice."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)
        self.proc.wait(30)

    def __repr__(self) -> str:
        return f"Service({self.role} on {self.host}, pid {self.proc.pid}, {'up' if self.alive() else 'down'})"


def start_service(
    serve_sh: Path,
    role: str,
    *,
    host: str,
    env: Mapping[str, str],
    log_path: Path,
    prefix: Sequence[str] = (),
    secrets: Iterable[str] = (),
) -> Service:
    """``[prefix] bash serve_sh role`` in a new process group, its output in ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*prefix, "bash", str(serve_sh), role],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(serve_sh.parent),
        )
    return Service(role, host, proc, log_path, tuple(s for s in secrets if s))


def wait_for_code_server(address: str, port: int, service: Service, timeout_s: float) -> float:
    """Until the code server at ``address:port`` answers a ping; seconds waited. ServiceError with
    its log's tail if it exits or does not answer in time."""
    from dagster._grpc.client import DagsterGrpcClient

    client = DagsterGrpcClient(host=address, port=port)
    started = time.monotonic()
    last = ""
    while True:
        if not service.alive():
            raise ServiceError(
                f"{service.role} on {service.host} exited with code {service.proc.returncode}:\n{service.log_tail()}"
            )
        try:
            client.ping("")
            return time.monotonic() - started
        except Exception as exc:  # noqa: BLE001
            last = type(exc).__name__
        if time.monotonic() - started > timeout_s:
            raise ServiceError(
                f"{service.role} on {service.host} ({address}:{port}) does not answer after {timeout_s:.0f} s "
                f"({last}):\n{service.log_tail()}"
            )
        time.sleep(0.5)


def _group_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[2])  # fields after the command: state, ppid, pgrp


def run_processes(service: Service) -> list[int]:
    """Pids of the run processes a code server started (multiprocessing children of its group)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _group_of(int(entry.name)) != service.pid:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)

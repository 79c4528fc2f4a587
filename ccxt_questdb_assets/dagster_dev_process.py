"""A ``dagster dev`` (webserver, daemon, code server) as a child process, and a client for its UI.

``start_dagster_dev`` runs it in its own process group (the webserver, the daemon, the code server
and the runs the code server launches are all in that group) with its output in a log file, and
returns once ``/server_info`` answers and every code location has loaded; a failure raises
:class:`DagsterDevError` with the log's tail. :meth:`DagsterDev.stop` sends ``dagster dev``
SIGTERM (it shuts its children down), then SIGKILLs whatever is left of the group after a grace
period: ``dagster dev`` leaves code servers behind when it exits, and may take longer than a user
waits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.dagster_graphql import ADD_DYNAMIC_PARTITION, LAUNCH_RUN, RUN_ERRORS, RUNS, WORKSPACE

__all__ = [
    "DEFAULT_ENV",
    "DEFAULT_MODULE",
    "FINISHED_STATUSES",
    "DagsterDev",
    "DagsterDevError",
    "start_dagster_dev",
    "wait_ready",
]

DEFAULT_MODULE = "ccxt_questdb_assets.defs.definitions"

#: On a busy machine launching a run through the code server (which waits for the run worker to
#: import the project) can take longer than Dagster's default 60 s gRPC deadline; the run then
#: fails with "User code server request timed out" before it started.
DEFAULT_ENV = {
    "DAGSTER_GRPC_TIMEOUT_SECONDS": "600",
    "DAGSTER_REPOSITORY_GRPC_TIMEOUT_SECONDS": "600",
    "PYTHONUNBUFFERED": "1",
}

#: ``dagster dev`` says on every start that it is superseded by ``dg dev``, which needs another
#: package (the dg CLI) and a dg project layout; the project keeps ``dagster dev`` and drops that
#: notice (only it: a warning filter on its message, added to the user's own PYTHONWARNINGS).
DEV_COMMAND_NOTICE = "ignore:Function `dev_command` is superseded"


def _python_warnings(environ: Mapping[str, str]) -> str:
    own = environ.get("PYTHONWARNINGS", "")
    return f"{own},{DEV_COMMAND_NOTICE}" if own else DEV_COMMAND_NOTICE


#: Run statuses after which a run changes no more.
FINISHED_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


class DagsterDevError(ServiceError):
    """``dagster dev`` did not start, or a GraphQL call failed."""


@dataclass
class DagsterDev:
    """A running ``dagster dev``: its URL, instance directory, log and process."""

    url: str
    home: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    location: str | None = None
    repository: str | None = None
    startup_s: float = 0.0
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"<no log at {self.log_path}: {exc}>"

    def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """POST a GraphQL document; returns ``data`` and raises on transport or GraphQL errors."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise DagsterDevError(f"GraphQL HTTP {exc.code}: {exc.read()[:2000]!r}") from None
        if payload.get("errors"):
            raise DagsterDevError(f"GraphQL errors: {json.dumps(payload['errors'])[:3000]}")
        return payload["data"]

    def repository_selector(self) -> dict[str, str]:
        if not self.location or not self.repository:
            raise DagsterDevError("no loaded code location")
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}

    def add_dynamic_partitions(self, name: str, keys: Sequence[str]) -> None:
        """Add ``keys`` to the dynamic partitions definition ``name`` (existing keys are fine)."""
        for key in keys:
            out = self.graphql(
                ADD_DYNAMIC_PARTITION, {"selector": self.repository_selector(), "name": name, "key": key}
            )
            result = out["addDynamicPartition"]
            if result["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
                raise DagsterDevError(f"addDynamicPartition {name} {key!r}: {result}")

    def launch_run(self, job: str, tags: Mapping[str, str], run_config: Mapping[str, Any] | None = None) -> str:
        """Launch ``job`` of the loaded location as the UI's launchpad does; returns the run id."""
        params = {
            "selector": {**self.repository_selector(), "jobName": job},
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            errors = "; ".join(e["message"] for e in result.get("errors") or [])
            raise DagsterDevError(
                f"launching {job} with tags {dict(tags)} failed: {result['__typename']}: "
                f"{result.get('message') or errors}{''.join(result.get('stack') or [])}"
            )
        return result["run"]["runId"]

    def runs(
        self, tags: Mapping[str, str] | None = None, *, run_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Runs (newest first) with their status, timestamps and tags, optionally filtered by tags or ids."""
        filt: dict[str, Any] = {}
        if tags:
            filt["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if run_ids is not None:
            filt["runIds"] = list(run_ids)
        data = self.graphql(RUNS, {"filter": filt or None})["runsOrError"]
        if "results" not in data:
            raise DagsterDevError(f"runsOrError: {data}")
        return data["results"]

    def wait_for_runs(self, run_ids: Sequence[str], timeout_s: float, poll_s: float = 1.0) -> dict[str, str]:
        """Wait until every run has finished; returns each run's status."""
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = {r["runId"]: r["status"] for r in self.runs(run_ids=run_ids)}
            if len(statuses) == len(run_ids) and set(statuses.values()) <= FINISHED_STATUSES:
                return statuses
            if not self.alive():
                raise DagsterDevError(
                    f"dagster dev exited with code {self.proc.returncode} while runs were "
                    f"going (log {self.log_path}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise DagsterDevError(f"runs not finished within {timeout_s:.0f} s: {statuses} (log {self.log_path})")
            time.sleep(poll_s)

    def _run_events(self, run_id: str) -> list[dict[str, Any]]:
        return self.graphql(RUN_ERRORS, {"id": run_id})["logsForRun"].get("events") or []

    def run_errors(self, run_id: str) -> str:
        """The error messages of a run's events (for assertion messages)."""
        lines = []
        for e in self._run_events(run_id):
            err = e.get("error")
            if err:
                lines.append(
                    f"{e['__typename']}: {e.get('message', '')}: {err['message']}"
                    + "".join(err.get("stack") or [])[-1500:]
                )
        return "\n".join(lines) or "(no error events)"

    def run_messages(self, run_id: str, containing: str) -> list[str]:
        """The messages of a run's events that contain ``containing`` (for assertion messages)."""
        return [e["message"] for e in self._run_events(run_id) if containing in (e.get("message") or "")]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM ``dagster dev``; after ``grace_s`` (or once it exited) SIGKILL what is left of its
        process group (code servers it left behind, run workers), and reap it. Safe to call twice."""
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing of the group is left
        self.proc.wait()


def _get(url: str, timeout: float = 5.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return None


def _location_error(entry: dict[str, Any]) -> str | None:
    """Why a loaded workspace entry has no repository, or None when it has one."""
    loc = entry["locationOrLoadError"]
    if loc is not None and loc["__typename"] == "RepositoryLocation":
        return None
    loc = loc or {}
    causes = [c["error"]["message"] for c in loc.get("errorChain") or []]
    if not causes and loc.get("cause"):
        causes = [loc["cause"]["message"]]
    msg = "\n".join([loc.get("message", "no location").strip(), *(f"caused by: {c.strip()}" for c in causes)])
    return f"code location {entry['name']} failed to load: {msg}\n{''.join(loc.get('stack') or [])}"


def wait_ready(dev: DagsterDev, timeout_s: float) -> None:
    """Until the webserver answers and every code location has loaded; the first location's names
    go to ``dev``. :class:`DagsterDevError` with the log's tail if a location fails or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer from /server_info yet"
    while time.monotonic() < deadline:
        if not dev.alive():
            raise DagsterDevError(
                f"dagster dev exited with code {dev.proc.returncode} during startup "
                f"(log {dev.log_path}):\n{dev.log_tail()}"
            )
        if _get(f"{dev.url}/server_info") is None:
            time.sleep(0.5)
            continue
        try:
            data = dev.graphql(WORKSPACE, timeout=30)
        except (DagsterDevError, urllib.error.URLError, OSError, TimeoutError) as exc:
            last = f"workspace query failed: {exc}"
            time.sleep(0.5)
            continue
        ws = data["workspaceOrError"]
        if ws["__typename"] != "Workspace":
            raise DagsterDevError(
                f"workspace error: {ws.get('message')}\n{''.join(ws.get('stack') or [])}\nlog tail:\n{dev.log_tail()}"
            )
        entries = ws["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            for e in entries:
                error = _location_error(e)
                if error:
                    raise DagsterDevError(f"{error}\nlog tail:\n{dev.log_tail()}")
            first = entries[0]
            dev.location = first["name"]
            dev.repository = first["locationOrLoadError"]["repositories"][0]["name"]
            return
        last = "code locations: " + ", ".join(f"{e['name']}={e['loadStatus']}" for e in entries)
        time.sleep(0.5)
    raise DagsterDevError(f"dagster dev not ready within {timeout_s:.0f} s ({last}); log tail:\n{dev.log_tail()}")


def start_dagster_dev(
    home: Path,
    *,
    port: int,
    log_path: Path,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    module: str = DEFAULT_MODULE,
    cwd: Path | None = None,
    startup_timeout_s: float = 600.0,
    stop_grace_s: float = 5.0,
) -> DagsterDev:
    """Start ``dagster dev -m module`` on ``host:port`` with ``DAGSTER_HOME=home``, :data:`DEFAULT_ENV`
    and ``env`` on top of this process's environment (the log truncated); return it once loaded.
    If it does not get there (or this process is interrupted meanwhile), it is stopped."""
    full_env = {**os.environ, **DEFAULT_ENV, **dict(env or {}), "DAGSTER_HOME": str(home)}
    full_env["PYTHONWARNINGS"] = _python_warnings(full_env)
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", module, "-h", host, "-p", str(port)]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(cwd) if cwd else None,
        )
    client_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    dev = DagsterDev(url=f"http://{client_host}:{port}", home=home, log_path=log_path, proc=proc, env=full_env)
    try:
        wait_ready(dev, startup_timeout_s)
    except BaseException:
        dev.stop(stop_grace_s)
        raise
    dev.startup_s = time.monotonic() - started
    return dev

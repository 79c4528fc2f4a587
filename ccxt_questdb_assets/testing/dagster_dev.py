"""A real ``dagster dev`` (webserver + daemon + code server) for tests, on a free port.

    with dagster_dev(workdir, env={"CCXT_QUESTDB_PROJECT": str(project_yaml)}) as dev:
        dev.graphql("{ version }")
        dev.add_dynamic_partitions("binance_symbols", ["BTC/USDT"])
        ...

``dagster dev`` runs in its own process group (its webserver, daemon, code server and the runs
the code server launches are all in it); leaving the block kills the whole group. The instance is
``workdir/dagster_home`` with a ``dagster.yaml`` that turns the onboarding pop-up (``nux``) and
telemetry off, dequeues runs every second and gives slow code servers time to start; gRPC
deadlines are raised through the environment (:data:`DEFAULT_ENV`). Startup waits until
``/server_info`` answers and every code location has loaded; a failure raises
:class:`DagsterDevError` with the log's tail.
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccxt_questdb_assets.services.ports import free_port

DEFAULT_MODULE = "ccxt_questdb_assets.defs.definitions"

DAGSTER_YAML = """\
nux:
  enabled: false
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
    dequeue_use_threads: true
code_servers:
  local_startup_timeout: 600
"""

#: On a busy machine launching a run through the code server (which waits for the run worker to
#: import the project) can take longer than Dagster's default 60 s gRPC deadline; the run then
#: fails with "User code server request timed out" before it started.
DEFAULT_ENV = {
    "DAGSTER_GRPC_TIMEOUT_SECONDS": "600",
    "DAGSTER_REPOSITORY_GRPC_TIMEOUT_SECONDS": "600",
    "PYTHONUNBUFFERED": "1",
}

_WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on PythonError { message stack }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack cause { message } errorChain { error { message } } }
          ... on RepositoryLocation { repositories { name } }
        }
      }
    }
  }
}
"""

_ADD_PARTITION = """
mutation($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionKey }
    ... on DuplicateDynamicPartitionError { partitionName }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""


_RUNS = """
query($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status creationTime startTime endTime tags { key value } } }
    ... on PythonError { message }
  }
}
"""

_RUN_ERRORS = """
query($id: ID!) {
  logsForRun(runId: $id) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message }
        ... on ExecutionStepFailureEvent { error { message stack } }
        ... on RunFailureEvent { error { message stack } }
        ... on EngineEvent { error { message stack } }
      }
    }
  }
}
"""


class DagsterDevError(RuntimeError):
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

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, *,
                timeout: float = 60.0) -> dict[str, Any]:
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
            out = self.graphql(_ADD_PARTITION, {"selector": self.repository_selector(), "name": name, "key": key})
            result = out["addDynamicPartition"]
            if result["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
                raise DagsterDevError(f"addDynamicPartition {name} {key!r}: {result}")

    def runs(self, tags: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Runs (newest first) with their status, timestamps and tags, optionally filtered by tags."""
        filt = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]} if tags else None
        data = self.graphql(_RUNS, {"filter": filt})["runsOrError"]
        if "results" not in data:
            raise DagsterDevError(f"runsOrError: {data}")
        return data["results"]

    def run_errors(self, run_id: str) -> str:
        """The error messages of a run's events (for assertion messages)."""
        events = self.graphql(_RUN_ERRORS, {"id": run_id})["logsForRun"].get("events") or []
        lines = []
        for e in events:
            err = e.get("error")
            if err:
                lines.append(f"{e['__typename']}: {e.get('message', '')}: {err['message']}"
                             + "".join(err.get("stack") or [])[-1500:])
        return "\n".join(lines) or "(no error events)"

    def alive(self) -> bool:
        return self.proc.poll() is None


def write_dagster_home(home: Path, extra_yaml: str = "") -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML + extra_yaml)
    return home


def _get(url: str, timeout: float = 5.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return None


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the process group (dagster dev shuts its children down), then SIGKILL what is left."""
    pgid = proc.pid  # start_new_session: the group id is the leader's pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while True:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            break  # nothing of the group is left
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _wait_ready(dev: DagsterDev, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer from /server_info yet"
    while time.monotonic() < deadline:
        if not dev.alive():
            raise DagsterDevError(f"dagster dev exited with code {dev.proc.returncode} during startup "
                                  f"(log {dev.log_path}):\n{dev.log_tail()}")
        if _get(f"{dev.url}/server_info") is None:
            time.sleep(0.5)
            continue
        try:
            data = dev.graphql(_WORKSPACE_QUERY, timeout=30)
        except (DagsterDevError, urllib.error.URLError, OSError, TimeoutError) as exc:
            last = f"workspace query failed: {exc}"
            time.sleep(0.5)
            continue
        ws = data["workspaceOrError"]
        if ws["__typename"] != "Workspace":
            raise DagsterDevError(f"workspace error: {ws.get('message')}\n{''.join(ws.get('stack') or [])}\n"
                                  f"log tail:\n{dev.log_tail()}")
        entries = ws["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            for e in entries:
                loc = e["locationOrLoadError"]
                if loc is None or loc["__typename"] != "RepositoryLocation":
                    loc = loc or {}
                    causes = [c["error"]["message"] for c in loc.get("errorChain") or []]
                    if not causes and loc.get("cause"):
                        causes = [loc["cause"]["message"]]
                    msg = "\n".join([loc.get("message", "no location").strip(),
                                     *(f"caused by: {c.strip()}" for c in causes)])
                    stack = "".join(loc.get("stack") or [])
                    raise DagsterDevError(f"code location {e['name']} failed to load: {msg}\n{stack}\n"
                                          f"log tail:\n{dev.log_tail()}")
            first = entries[0]
            dev.location = first["name"]
            dev.repository = first["locationOrLoadError"]["repositories"][0]["name"]
            return
        last = "code locations: " + ", ".join(f"{e['name']}={e['loadStatus']}" for e in entries)
        time.sleep(0.5)
    raise DagsterDevError(f"dagster dev not ready within {timeout_s:.0f} s ({last}); log tail:\n{dev.log_tail()}")


@contextmanager
def dagster_dev(
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    module: str = DEFAULT_MODULE,
    startup_timeout_s: float = 240.0,
    dagster_yaml_extra: str = "",
    cwd: Path | None = None,
) -> Iterator[DagsterDev]:
    """Start ``dagster dev -m module`` with ``DAGSTER_HOME=workdir/dagster_home`` and ``env`` on top
    of this process's environment; yield once the code location has loaded; kill the group on exit."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    home = write_dagster_home(workdir / "dagster_home", dagster_yaml_extra)
    port = free_port()
    full_env = {**os.environ, **DEFAULT_ENV, **dict(env or {}), "DAGSTER_HOME": str(home)}
    log_path = workdir / "dagster_dev.log"
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", module, "-h", "127.0.0.1", "-p", str(port)]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(cwd or workdir))
    dev = DagsterDev(url=f"http://127.0.0.1:{port}", home=home, log_path=log_path, proc=proc, env=full_env)
    try:
        _wait_ready(dev, startup_timeout_s)
        dev.startup_s = time.monotonic() - started
        yield dev
    finally:
        _kill_group(proc)

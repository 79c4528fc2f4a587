"""A run launcher that places each run on one of several hosts, each running the project's code server.

Dagster's ``DefaultRunLauncher`` asks the code server of the run's code location to start the run:
every run executes on that one host. :class:`PlacingRunLauncher` is that launcher with a choice of
host. The daemon's environment names the run hosts (``CCXT_QUESTDB_RUN_HOSTS``: ``host:port`` of
each host's ``dagster code-server start``); a run goes to the host that answers and has the fewest
runs in progress, counting the runs of this instance tagged with that host, and carries the tag
``ccxt_questdb/run_host`` (the UI's runs list filters on it). Dagster's own
machinery does the rest, as it does for the default launcher: the code server there starts the run
in a process of its own (the project's in-process executor runs every step of the run there), the
run is tagged with the host (``dagster/grpc_info``), termination goes through that tag, and the
code server reports a run whose process died as failed.

What the default launcher lacks for several hosts is knowing that a host is gone: a run on a dead
host would stay STARTED forever and keep its pool slots. This launcher supports Dagster's run
monitoring: the daemon asks each run's code server whether it still executes the run. A code
server that answers and no longer has the run (its process died unreported, the server restarted)
fails it at once; one that does not answer for ``lost_after_seconds`` is taken as lost with its
host, and its runs are failed. Failed runs give their pool slots back after
``run_monitoring.free_slots_after_run_end_seconds`` and are retried by ``run_retries`` on a host
that answers; an asset backfill waits for those retries.

With no run host named, it launches on the code location's server, as ``DefaultRunLauncher``.
Imports only Dagster: every process that opens the instance builds its launcher.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagster import Field
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._serdes import ConfigurableClassData

if TYPE_CHECKING:
    from dagster._grpc.client import DagsterGrpcClient

__all__ = [
    "DEFAULT_CODE_SERVER_PORT",
    "ENV_RUN_HOSTS",
    "RUN_HOST_TAG",
    "PlacingRunLauncher",
    "RunHost",
    "parse_run_hosts",
]

#: The daemon's variable naming the run hosts: ``host:port`` of each code server, comma-separated.
ENV_RUN_HOSTS = "CCXT_QUESTDB_RUN_HOSTS"
#: Run tag naming the run host a run was launched on (shown in the UI, filterable in the runs list).
RUN_HOST_TAG = "ccxt_questdb/run_host"
#: The port of a run host named without one.
DEFAULT_CODE_SERVER_PORT = 4000


@dataclass(frozen=True, order=True)
class RunHost:
    """One host's code server."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def client(self) -> DagsterGrpcClient:
        from dagster._grpc.client import DagsterGrpcClient

        return DagsterGrpcClient(host=self.host, port=self.port)


def parse_run_hosts(text: str, variable: str = ENV_RUN_HOSTS) -> list[RunHost]:
    """``"10.0.0.2:4000, 10.0.0.3"`` (commas or spaces; the port defaults to 4000) as run hosts."""
    hosts: list[RunHost] = []
    for item in text.replace(",", " ").split():
        if item.startswith("[") and "]" in item:  # [ipv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif item.count(":") == 1:
            host, port = item.split(":")
        else:
            host, port = item, ""
        port = port or str(DEFAULT_CODE_SERVER_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{variable}: {item!r} is not host:port (a code server of a run host)")
        found = RunHost(host, int(port))
        if found in hosts:
            raise ValueError(f"{variable}: {found} is named twice")
        hosts.append(found)
    return hosts


def host_of(run: DagsterRun) -> RunHost | None:
    """The code server a run was launched on (its ``dagster/grpc_info`` tag), if any."""
    raw = run.tags.get(GRPC_INFO_TAG)
    if not raw:
        return None
    try:
        info = json.loads(raw)
        return RunHost(str(info["host"]), int(info["port"]))
    except (ValueError, KeyError, TypeError):
        return None  # a unix socket, or a tag written by something else


class PlacingRunLauncher(DefaultRunLauncher):
    """Launches each run on the least busy run host that answers; fails the runs of a lost host."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        hosts_env: str = ENV_RUN_HOSTS,
        lost_after_seconds: int = 60,
        probe_timeout_seconds: int = 10,
    ) -> None:
        super().__init__(inst_data=inst_data)
        self.hosts_env = hosts_env
        self.lost_after_seconds = lost_after_seconds
        self.probe_timeout_seconds = probe_timeout_seconds
        self._lock = threading.Lock()
        self._launching: Counter[RunHost] = Counter()  # launches under way (the daemon launches from threads)
        self._silent_since: dict[RunHost, float] = {}  # host -> when its code server first failed to answer

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "hosts_env": Field(
                str,
                is_required=False,
                default_value=ENV_RUN_HOSTS,
                description="Variable (read by the daemon) naming the run hosts' code servers, host:port, "
                "comma-separated.",
            ),
            "lost_after_seconds": Field(
                int,
                is_required=False,
                default_value=60,
                description="A run host whose code server has not answered for this long is lost: its runs are failed.",
            ),
            "probe_timeout_seconds": Field(
                int,
                is_required=False,
                default_value=10,
                description="How long one question to a code server may take.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> PlacingRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    # ------------------------------------------------------------------ placement

    def run_hosts(self) -> list[RunHost]:
        try:
            return parse_run_hosts(os.environ.get(self.hosts_env, ""), self.hosts_env)
        except ValueError as exc:
            raise DagsterLaunchFailedError(str(exc)) from None

    def _runs_in_progress(self) -> Counter[RunHost]:
        runs = self._instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]))
        return Counter(host for host in map(host_of, runs) if host is not None)

    def _answers(self, host: RunHost, run_id: str) -> bool:
        from dagster._grpc.types import CanCancelExecutionRequest

        try:
            host.client().can_cancel_execution(CanCancelExecutionRequest(run_id=run_id), self.probe_timeout_seconds)
        except Exception:  # noqa: BLE001  (unreachable, timed out, refused: not a place for a run now)
            return False
        return True

    def launch_run(self, context: LaunchRunContext) -> None:
        hosts = self.run_hosts()
        if not hosts:
            super().launch_run(context)
            launched = self._instance.get_run_by_id(context.dagster_run.run_id)
            host = host_of(launched) if launched else None
            if host is not None:  # a retry inherits its parent's tags: name the host it really went to
                self._instance.add_run_tags(context.dagster_run.run_id, {RUN_HOST_TAG: str(host)})
            return
        run = context.dagster_run
        answering = [h for h in hosts if self._answers(h, run.run_id)]
        if not answering:
            raise DagsterLaunchFailedError(
                f"no run host answers ({self.hosts_env}: {', '.join(map(str, hosts))}): "
                "is `dagster code-server start` running on them, reachable from the daemon?"
            )
        with self._lock:
            load = self._runs_in_progress() + self._launching
            chosen = min(answering, key=lambda h: (load[h], hosts.index(h)))
            self._launching[chosen] += 1
        try:
            self._instance.add_run_tags(run.run_id, {RUN_HOST_TAG: str(chosen)})
            self._instance.report_engine_event(
                f"Launching the run on run host {chosen} ({load[chosen]} run(s) in progress there; "
                f"{len(answering)} of {len(hosts)} run hosts answering)",
                run,
                cls=self.__class__,
            )
            self.launch_run_from_grpc_client(self._instance, run, chosen.client())
            self._run_ids.add(run.run_id)
        finally:
            with self._lock:
                self._launching[chosen] -= 1

    # ------------------------------------------------------------------ health

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
        from dagster._serdes import deserialize_value

        host = host_of(run)
        if host is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run host recorded: not checked")
        now = time.monotonic()
        try:
            raw = host.client().can_cancel_execution(
                CanCancelExecutionRequest(run_id=run.run_id), self.probe_timeout_seconds
            )
        except Exception as exc:  # noqa: BLE001
            with self._lock:
                since = self._silent_since.setdefault(host, now)
            silent = now - since
            if silent >= self.lost_after_seconds:
                return CheckRunHealthResult(
                    WorkerStatus.FAILED,
                    f"the code server of run host {host} has not answered for {silent:.0f} s "
                    f"(lost_after_seconds {self.lost_after_seconds}): the host is taken as lost "
                    f"({type(exc).__name__})",
                )
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, f"run host {host} silent for {silent:.0f} s, not yet taken as lost"
            )
        with self._lock:
            self._silent_since.pop(host, None)
        if deserialize_value(raw, CanCancelExecutionResult).can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the code server of run host {host} no longer executes the run "
            "(its process ended without reporting the run's end, or the server restarted)",
        )

    def get_run_worker_debug_info(self, run: DagsterRun, include_container_logs: bool | None = True) -> str | None:
        host = host_of(run)
        return f"run host: {host}" if host else None

"""One local stack for ``ccxt-questdb demo`` and ``ccxt-questdb dev``: the local services
(:mod:`ccxt_questdb_assets.local_stack`) and ``dagster dev`` on the project's instance.

``dagster dev`` (webserver, daemon, code server) runs in its own process group with its output in
``<instance>/dagster-dev.log``, not on the terminal. Leaving the block, even by Ctrl-C or SIGTERM
(:mod:`ccxt_questdb_assets.stop_signals`), stops in turn ``dagster dev`` (SIGTERM, then its whole
group SIGKILLed after :data:`DAGSTER_STOP_GRACE_S`), the emulator and, with
``stop_started_questdb``, the QuestDB this stack started: within 10 s, further signals ignored
meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ccxt_questdb_assets.dagster_dev_process import DagsterDev, start_dagster_dev
from ccxt_questdb_assets.defs.project_config import ENV_PROJECT
from ccxt_questdb_assets.local_stack import DEFAULT_EMULATOR_PORT, local_stack
from ccxt_questdb_assets.stop_signals import signals_ignored

if TYPE_CHECKING:
    from dagster import DagsterInstance

__all__ = ["DAGSTER_STOP_GRACE_S", "LOG_NAME", "DevStack", "cancel_unfinished", "dev_stack", "unfinished_runs"]

#: ``dagster dev`` takes 3 to 8 s to stop its webserver and daemon on a busy machine, and leaves
#: its code servers running: after this its group is killed, so the whole stack stops within 10 s.
DAGSTER_STOP_GRACE_S = 5.0
LOG_NAME = "dagster-dev.log"


@dataclass(frozen=True)
class DevStack:
    """A running stack: ``dagster dev`` and the variables the local services exported."""

    dagster: DagsterDev
    services: dict[str, str]

    @property
    def home(self) -> Path:
        return self.dagster.home


def _dagster_env() -> dict[str, str]:
    """``dagster dev`` runs in the instance directory (where its dagster.yaml is, so it does not warn
    that the one in the current directory is unused): the project file's path is made absolute."""
    project = os.environ.get(ENV_PROJECT)
    return {ENV_PROJECT: str(Path(project).absolute())} if project else {}


@contextmanager
def dev_stack(
    home: Path, *, host: str, port: int, emulator_port: int | None, stop_started_questdb: bool
) -> Iterator[DevStack]:
    """Start the local services (the emulator on ``emulator_port``, None: :data:`DEFAULT_EMULATOR_PORT`)
    and ``dagster dev`` on ``host:port`` with the instance ``home`` (``instance_home.prepare_dagster_home``);
    yield once its code location has loaded."""
    stack = ExitStack()
    try:
        emulator_port = DEFAULT_EMULATOR_PORT if emulator_port is None else emulator_port
        services = stack.enter_context(
            local_stack(emulator_port=emulator_port, stop_started_questdb=stop_started_questdb)
        )
        log_path = home / LOG_NAME
        print(
            f"starting dagster dev (webserver, daemon, code server) on instance {home}; its log: {log_path}", flush=True
        )
        dev = start_dagster_dev(
            home,
            port=port,
            host=host,
            log_path=log_path,
            env=_dagster_env(),
            cwd=home,
            stop_grace_s=DAGSTER_STOP_GRACE_S,
        )
        stack.callback(dev.stop, DAGSTER_STOP_GRACE_S)
        print(f"dagster dev ready in {dev.startup_s:.0f} s", flush=True)
        yield DevStack(dev, services)
    finally:
        with signals_ignored():
            t0 = time.monotonic()
            print("stopping the local stack ...", flush=True)
            stack.close()
            print(f"stopped in {time.monotonic() - t0:.1f} s", flush=True)


def unfinished_runs(instance: DagsterInstance, created_after: datetime) -> list[str]:
    """Ids of the runs created since ``created_after`` still queued or in progress."""
    from dagster import DagsterRunStatus, RunsFilter

    active = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
    ]
    return list(instance.get_run_ids(RunsFilter(statuses=active, created_after=created_after)))


def cancel_unfinished(instance: DagsterInstance, run_ids: Sequence[str], why: str) -> list[str]:
    """Mark the runs that had not finished canceled (their processes are gone with the stack that ran
    them, and the local run launcher cannot tell), so the UI does not show them in progress forever;
    returns their ids."""
    canceled = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            instance.report_run_canceled(run, message=why)
            canceled.append(run_id)
    return canceled

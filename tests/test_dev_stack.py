"""``ccxt-questdb dev`` stops everything it started, on Ctrl-C and on SIGTERM, within 10 s.

Each case runs the command as a terminal runs a job (its own process group) with its own ports,
``DAGSTER_HOME`` and QuestDB data dir, so the command starts its own QuestDB, emulator and
``dagster dev``. Once the UI answers ``/server_info``, the case sends SIGINT to the process group
(what Ctrl-C does) or SIGTERM to the process, and asserts that the command exits within 10 s and
that nothing it started is left: no process carries the case's instance dir, data dir or ports in
its command line or environment, and the webserver's, emulator's and QuestDB's ports are closed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import pytest

from ccxt_questdb_assets.services.ports import free_ports, port_accepts
from ccxt_questdb_assets.services.state import ENV_HOME

STOP_BUDGET_S = 10.0
STARTUP_TIMEOUT_S = 600.0

pytestmark = pytest.mark.timeout(int(STARTUP_TIMEOUT_S) + 120)


@dataclass(frozen=True)
class Case:
    """Where one ``ccxt-questdb dev`` lives: its instance dir, QuestDB data dir and ports."""

    home: Path
    data_dir: Path
    ports: dict[str, int]

    def env(self, jar_cache: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CCXT_QUESTDB_PROJECT"}  # the embedded default
        env.update(
            {
                "DAGSTER_HOME": str(self.home),
                "CCXT_QUESTDB_DATA_DIR": str(self.data_dir),
                ENV_HOME: jar_cache,
                "CCXT_QUESTDB_HTTP_PORT": str(self.ports["questdb http"]),
                "CCXT_QUESTDB_PG_PORT": str(self.ports["questdb pg"]),
                "CCXT_QUESTDB_ILP_PORT": str(self.ports["questdb ilp"]),
                "CCXT_QUESTDB_MIN_HTTP_PORT": str(self.ports["questdb min"]),
            }
        )
        return env

    def is_ours(self, cmdline: list[str], environ: list[str]) -> bool:
        """The case's instance or data dir in a command-line argument, one of its ports as an argument,
        or its instance dir or data dir in the environment."""
        paths = (str(self.home), str(self.data_dir))
        ports = {str(p) for p in self.ports.values()}
        env = {f"DAGSTER_HOME={self.home}", f"CCXT_QUESTDB_DATA_DIR={self.data_dir}"}
        return (
            any(path in arg for arg in cmdline for path in paths)
            or bool(ports & set(cmdline))
            or bool(env & set(environ))
        )


def _read(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except OSError:  # gone meanwhile, or not ours to read
        return []


def processes_of(case: Case) -> dict[int, str]:
    """Live processes of the case (this test's own process aside), with their command lines."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        cmdline = _read(f"/proc/{entry}/cmdline")
        if case.is_ours(cmdline, _read(f"/proc/{entry}/environ")):
            found[int(entry)] = " ".join(cmdline)[:300]
    return found


def _ui_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _command() -> list[str]:
    script = Path(sys.executable).with_name("ccxt-questdb")
    if not script.is_file():
        pytest.fail(
            f"the ccxt-questdb command is not installed beside {sys.executable} (uv sync installs it)", pytrace=False
        )
    return [str(script), "dev"]


BACKGROUND = "sigint to a script's background job (started with SIGINT ignored)"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell without job control does to `cmd &`


@pytest.mark.parametrize("stop", ["ctrl-c to the process group", "sigterm to the process", BACKGROUND])
def test_dev_stops_everything_it_started(stop, tmp_path, request):
    names = ["ui", "emulator", "questdb http", "questdb pg", "questdb ilp", "questdb min"]
    case = Case(tmp_path / "dagster_home", tmp_path / "questdb", dict(zip(names, free_ports(len(names)), strict=True)))
    jar_cache = os.environ.get(ENV_HOME, "").strip() or str(Path(request.config.rootpath) / ".ccxt-questdb")
    url = f"http://127.0.0.1:{case.ports['ui']}"
    log_path = tmp_path / "ccxt-questdb-dev.out"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*_command(), "--port", str(case.ports["ui"]), "--emulator-port", str(case.ports["emulator"])],
            env=case.env(jar_cache),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_ignore_sigint if stop == BACKGROUND else None,
        )

    def output() -> str:
        return log_path.read_text(errors="replace")[-6000:]

    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _ui_answers(url):
            if proc.poll() is not None:
                pytest.fail(
                    f"ccxt-questdb dev exited with code {proc.returncode} before its UI answered "
                    f"(a service it needs could not start):\n{output()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the UI did not answer {url}/server_info within {STARTUP_TIMEOUT_S:.0f} s:\n{output()}",
                    pytrace=False,
                )
            time.sleep(0.5)
        started = processes_of(case)
        for what in ("emulator", "questdb pg"):
            assert port_accepts(case.ports[what]), f"the {what} port {case.ports[what]} is not open:\n{output()}"
        assert len(started) >= 6, (
            f"expected dagster dev, its webserver, daemon and code server, the emulator and QuestDB; found {started}"
        )

        t0 = time.monotonic()
        if stop == "ctrl-c to the process group":
            os.killpg(proc.pid, signal.SIGINT)
        elif stop == BACKGROUND:
            proc.send_signal(signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_BUDGET_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ccxt-questdb dev still runs {STOP_BUDGET_S:.0f} s after {stop}:\n{output()}", pytrace=False)
        elapsed = time.monotonic() - t0
        print(f"{stop}: exited with code {code} in {elapsed:.1f} s\n{output()}")

        left = processes_of(case)
        assert not left, f"left running after {stop}: " + "".join(f"\n  {pid}: {cmd}" for pid, cmd in left.items())
        open_ports = {what: port for what, port in case.ports.items() if port_accepts(port)}
        assert not open_ports, f"ports still open after {stop}: {open_ports}"
        assert code == 0, f"exit code {code} after {stop}:\n{output()}"
    finally:  # a failing case leaves nothing behind either
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pid in processes_of(case):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_runs_a_stopped_dev_had_started_are_marked_canceled_and_no_other(tmp_path):
    """Runs whose processes went down with ``ccxt-questdb dev`` would show in progress forever."""
    import shutil
    from datetime import datetime

    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.storage.dagster_run import DagsterRun

    from ccxt_questdb_assets.devserver import cancel_left_runs

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        older = instance.add_run(DagsterRun(job_name="binance_ingest", status=DagsterRunStatus.STARTED))
        time.sleep(0.05)
        started = datetime.now(UTC)
        time.sleep(0.05)
        left = instance.add_run(DagsterRun(job_name="binance_ingest", status=DagsterRunStatus.STARTED))
        starting = instance.add_run(DagsterRun(job_name="binance_ingest", status=DagsterRunStatus.STARTING))
        done = instance.add_run(DagsterRun(job_name="binance_ingest", status=DagsterRunStatus.SUCCESS))
        assert sorted(cancel_left_runs(instance, started)) == sorted([left.run_id, starting.run_id])
        status = {r.run_id: instance.get_run_by_id(r.run_id).status for r in (older, left, starting, done)}
    assert status == {
        older.run_id: DagsterRunStatus.STARTED,
        left.run_id: DagsterRunStatus.CANCELED,
        starting.run_id: DagsterRunStatus.CANCELED,
        done.run_id: DagsterRunStatus.SUCCESS,
    }

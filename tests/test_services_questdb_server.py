"""The local QuestDB: settings, the in-process server, and the CLI's detached start/status/stop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from ccxt_questdb_assets.core.errors import ConfigError, ServiceError
from ccxt_questdb_assets.services.ports import free_ports, port_is_free
from ccxt_questdb_assets.services.questdb_daemon import server_status, stop_detached
from ccxt_questdb_assets.services.questdb_process import ping
from ccxt_questdb_assets.services.questdb_release import fetch_release, resolve_release
from ccxt_questdb_assets.services.questdb_server import QuestDBServer
from ccxt_questdb_assets.services.questdb_settings import (
    PID_FILE,
    STATE_FILE,
    ServerPorts,
    ServerSettings,
    build_command,
    build_qdb_env,
    default_data_dir,
)

CLI = [sys.executable, "-m", "ccxt_questdb_assets.cli"]


@pytest.fixture(scope="module")
def service_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment with the project's jar cache; the pinned jar is fetched once if missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCXT_QUESTDB_")}
    env["CCXT_QUESTDB_HOME"] = os.environ.get("CCXT_QUESTDB_HOME") or str(request.config.rootpath / ".ccxt-questdb")
    fetch_release(resolve_release(env=env), env=env)
    return env


# ----- settings ------------------------------------------------------------------------------------


def test_settings_from_env_and_arguments(tmp_path: Path) -> None:
    env = {
        "CCXT_QUESTDB_HOME": str(tmp_path / "home"),
        "CCXT_QUESTDB_HTTP_PORT": "19100",
        "CCXT_QUESTDB_PG_PORT": "18900",
        "CCXT_QUESTDB_HEAP": "512m",
        "CCXT_QUESTDB_JVM_OPTS": "-XX:+UseSerialGC -Dx='a b'",
    }
    s = ServerSettings.from_env(env, ilp_port=19109)
    assert s.ports == ServerPorts(http=19100, pg=18900, ilp=19109, min=9003)
    assert s.data_dir == tmp_path / "home" / "questdb" / "data" == default_data_dir(env)
    assert s.host == "127.0.0.1" and s.heap == "512m" and s.jvm_opts == ("-XX:+UseSerialGC", "-Dx=a b")
    defaults = ServerSettings.from_env({"CCXT_QUESTDB_HOME": str(tmp_path)})
    assert defaults.ports == ServerPorts(9000, 8812, 9009, 9003) and defaults.heap == "2g"


@pytest.mark.parametrize(
    "env",
    [
        {"CCXT_QUESTDB_HTTP_PORT": "nope"},
        {"CCXT_QUESTDB_PG_PORT": "70000"},
        {"CCXT_QUESTDB_HTTP_PORT": "8812"},  # same as the PG default
        {"CCXT_QUESTDB_HEAP": "lots"},
        {"CCXT_QUESTDB_START_TIMEOUT": "soon"},
    ],
)
def test_bad_settings_raise_config_error(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ServerSettings.from_env({"CCXT_QUESTDB_HOME": str(tmp_path), **env})


def test_qdb_env_and_command(tmp_path: Path) -> None:
    s = ServerSettings(data_dir=tmp_path, ports=ServerPorts(1001, 1002, 1003, 1004))
    env = build_qdb_env(s)
    assert env["QDB_HTTP_BIND_TO"] == "127.0.0.1:1001"
    assert env["QDB_PG_NET_BIND_TO"] == "127.0.0.1:1002"
    assert env["QDB_LINE_TCP_NET_BIND_TO"] == "127.0.0.1:1003"
    assert env["QDB_HTTP_MIN_BIND_TO"] == "127.0.0.1:1004"
    assert env["QDB_TELEMETRY_ENABLED"] == "false"
    cmd = build_command(Path("/usr/bin/java"), Path("/x/questdb.jar"), s)
    assert "-Xmx2g" in cmd and cmd[cmd.index("-m") + 1] == "io.questdb/io.questdb.ServerMain"
    assert cmd[cmd.index("-p") + 1] == "/x/questdb.jar" and cmd[-2:] == ["-d", str(tmp_path)]


# ----- in-process server ---------------------------------------------------------------------------


def test_in_process_server_start_restart_stop_keeps_data(tmp_path: Path, service_env: dict[str, str]) -> None:
    srv = QuestDBServer(tmp_path / "qdb", env=service_env)
    assert len(set(srv.ports.as_list())) == 4
    with srv:
        assert srv.is_running() and srv.version == "9.3.4"
        print(f"QuestDB {srv.version} ready in {srv.startup_seconds:.2f} s")
        assert ping("127.0.0.1", srv.http_port)
        assert srv.http_url == f"http://127.0.0.1:{srv.http_port}"
        assert srv.pg_dsn == f"postgresql://admin:quest@127.0.0.1:{srv.pg_port}/qdb"
        assert srv.ilp_conf.startswith(f"http::addr=127.0.0.1:{srv.http_port};")
        with psycopg.connect(srv.pg_dsn, autocommit=True) as c:
            c.execute("CREATE TABLE keep (x LONG)")
            c.execute("INSERT INTO keep VALUES (42)")
        srv.restart()
        with srv.connection.pg_connect() as c:
            assert c.execute("SELECT x FROM keep").fetchall() == [(42,)]
        assert (srv.data_dir / "ccxt-questdb.log").read_text().count("starting QuestDB 9.3.4") == 2
    assert not srv.is_running()
    assert all(port_is_free(p) for _, p in srv.ports.as_list())
    srv.stop()  # idempotent


def test_startup_failure_reports_the_log_tail(tmp_path: Path, service_env: dict[str, str]) -> None:
    srv = QuestDBServer(tmp_path / "qdb", env=service_env, jvm_opts=["-XX:+NoSuchVmOptionAtAll"])
    with pytest.raises(ServiceError) as ei:
        srv.start()
    msg = str(ei.value)
    assert "exited with code" in msg and "NoSuchVmOptionAtAll" in msg
    assert not srv.is_running()


def test_busy_port_is_reported_before_starting(tmp_path: Path, service_env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        srv = QuestDBServer(tmp_path / "qdb", pg_port=busy, env=service_env)
        with pytest.raises(ServiceError, match=f"pg {busy}"):
            srv.start()


def test_session_fixture(questdb, questdb_conn, questdb_connection) -> None:
    assert questdb_conn.execute("select 1").fetchone() == (1,)
    assert questdb.connection == questdb_connection
    assert ping(questdb_connection.http_host, questdb_connection.http_port)


# ----- detached server through the CLI ----------------------------------------------------------


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "questdb", *args], env=env, capture_output=True, text=True, timeout=180)


def test_cli_start_status_stop(tmp_path: Path, service_env: dict[str, str]) -> None:
    data_dir = tmp_path / "qdb"
    http, pg, ilp, mn = free_ports(4)
    port_args = ["--http-port", str(http), "--pg-port", str(pg), "--ilp-port", str(ilp), "--min-port", str(mn)]
    dd = ["--data-dir", str(data_dir)]
    try:
        t0 = time.monotonic()
        r = _cli(service_env, "start", *dd, *port_args, "--json")
        assert r.returncode == 0, r.stderr
        started = json.loads(r.stdout)
        print(
            f"CLI start returned after {time.monotonic() - t0:.2f} s "
            f"(server ready in {started['startup_seconds']:.2f} s)"
        )
        assert started["running"] and started["healthy"] and not started["already_running"]
        assert started["version"] == "9.3.4" and started["ports"] == {"http": http, "pg": pg, "ilp": ilp, "min": mn}
        pid = started["pid"]
        assert (data_dir / PID_FILE).read_text().strip() == str(pid)
        with psycopg.connect(f"postgresql://admin:quest@127.0.0.1:{pg}/qdb", autocommit=True) as c:
            assert c.execute("select 1").fetchone() == (1,)

        # Idempotent: same ports -> reported as already running.
        r = _cli(service_env, "start", *dd, *port_args)
        assert r.returncode == 0, r.stderr
        assert "already running" in r.stdout and str(pid) in r.stdout

        # Other ports for the same data dir -> refused with a hint.
        r = _cli(service_env, "start", *dd, "--http-port", str(http + 1 if http < 65535 else http - 1))
        assert r.returncode == 2 and "other ports" in r.stderr and "questdb stop" in r.stderr

        r = _cli(service_env, "status", *dd, "--json")
        assert r.returncode == 0
        st = json.loads(r.stdout)
        assert st["running"] and st["pid"] == pid and st["ports"]["pg"] == pg and st["data_dir"] == str(data_dir)
        r = _cli(service_env, "status", *dd)
        assert r.returncode == 0 and f"pid {pid}" in r.stdout and f"127.0.0.1:{http}" in r.stdout

        r = _cli(service_env, "stop", *dd)
        assert r.returncode == 0 and "stopped" in r.stdout, r.stderr
        assert not ping("127.0.0.1", http) and port_is_free(pg)
        assert not (data_dir / PID_FILE).exists() and not (data_dir / STATE_FILE).exists()

        r = _cli(service_env, "status", *dd)
        assert r.returncode == 3 and "not running" in r.stdout
        r = _cli(service_env, "stop", *dd)
        assert r.returncode == 0 and "nothing to stop" in r.stdout
    finally:
        stop_detached(data_dir)


def test_cli_fetch_and_unknown_version(service_env: dict[str, str]) -> None:
    r = _cli(service_env, "fetch", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["version"] == "9.3.4" and Path(out["jar"]).is_file()
    r = _cli(service_env, "start", "--version", "0.0.1")
    assert r.returncode == 2 and "0.0.1" in r.stderr and "9.3.4" in r.stderr


def test_stale_pid_file_is_not_trusted(tmp_path: Path) -> None:
    # Our own pid is alive but is not a QuestDB for this data dir.
    (tmp_path / PID_FILE).write_text(f"{os.getpid()}\n")
    st = server_status(tmp_path)
    assert not st.running and "stale" in st.detail
    assert not stop_detached(tmp_path).running
    assert not (tmp_path / PID_FILE).exists()

"""RedisServer: start on a free port, PING, stop, restart on the same port, crash, missing binary."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.services.ports import port_accepts
from ccxt_questdb_assets.services.redis_server import RedisServer, find_redis_server


def test_start_stop_restart_same_port(tmp_path: Path) -> None:
    with RedisServer(workdir=tmp_path) as srv:
        port, url = srv.port, srv.url
        assert url == f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_timeout=2)
        assert client.ping()
        client.set("k", "v")
        # No persistence configured.
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"

        srv.stop()
        assert not srv.is_running() and not port_accepts(port)
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(url, socket_timeout=1).ping()

        srv.start()
        assert srv.port == port and srv.url == url
        fresh = redis.Redis.from_url(url, socket_timeout=2)
        assert fresh.ping() and fresh.get("k") is None  # nothing persisted

        srv.kill()  # crash
        assert not srv.is_running()
        srv.restart()
        assert srv.ping()
        srv.stop()
        srv.stop()  # idempotent
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("*.aof"))


def test_two_servers_get_different_ports() -> None:
    with RedisServer() as a, RedisServer() as b:
        assert a.port != b.port and a.ping() and b.ping()
        workdir = a.workdir
    assert not workdir.exists()  # its own temp dir is removed


def test_missing_binary_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ServiceError, match="apt-get install redis-server"):
        find_redis_server(tmp_path / "redis-server")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("os.access", lambda *_a, **_k: False)
    with pytest.raises(ServiceError, match="apt-get install redis-server"):
        RedisServer(workdir=tmp_path, port=1).start()


def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    srv = RedisServer(workdir=tmp_path, extra_args=["--no-such-option", "x"])
    with pytest.raises(ServiceError, match="redis-server exited"):
        srv.start()
    assert not srv.is_running()


def test_session_fixture_survives_a_test_that_stops_it(redis_server, redis_url: str) -> None:
    assert redis.Redis.from_url(redis_url, socket_timeout=2).ping()
    redis_server.stop()  # the next user of `redis_url` gets it back


def test_redis_url_fixture_restarts_a_stopped_session_server(redis_server, redis_url: str) -> None:
    assert redis_server.is_running()
    assert redis.Redis.from_url(redis_url, socket_timeout=2).ping()

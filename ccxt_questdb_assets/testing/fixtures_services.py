"""pytest fixtures for real QuestDB and Redis servers.

* ``questdb`` (session): a private QuestDB on free ports in a temp data dir (the pinned jar, cached
  under ``<rootdir>/.ccxt-questdb`` unless ``CCXT_QUESTDB_HOME`` is set). Has ``.connection``
  (``QuestDBConnection``), ``.http_url``, ``.pg_dsn``, ``.ilp_conf``. With ``CCXT_QUESTDB_TEST_DSN``
  (and ``CCXT_QUESTDB_TEST_HTTP``, ``host:port`` or URL) an existing server is used instead.
* ``questdb_connection``: ``questdb.connection``.
* ``questdb_conn``: a fresh autocommit psycopg connection per test, closed afterwards.
* ``redis_server`` (session): a ``RedisServer`` on a free port (``stop()``/``start()``/``restart()``
  keep the port). ``CCXT_QUESTDB_TEST_REDIS_URL`` uses an existing Redis instead.
* ``redis_url``: the URL, after making sure the session Redis is up (a test may have stopped it).

A service that cannot start fails the test with the reason; nothing is skipped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ccxt_questdb_assets.core.errors import CcxtQuestDBError, ServiceError
from ccxt_questdb_assets.services.ports import port_is_free
from ccxt_questdb_assets.services.questdb_endpoints import QuestDBEndpoints
from ccxt_questdb_assets.services.questdb_process import pg_ready, ping
from ccxt_questdb_assets.services.questdb_server import QuestDBServer
from ccxt_questdb_assets.services.redis_server import RedisServer
from ccxt_questdb_assets.services.state import ENV_HOME
from ccxt_questdb_assets.storage.connection import QuestDBConnection

__all__ = [
    "questdb",
    "questdb_connection",
    "questdb_conn",
    "redis_server",
    "redis_url",
    "ExternalQuestDB",
    "ExternalRedis",
    "wait_for_wal",
    "ENV_TEST_DSN",
    "ENV_TEST_HTTP",
    "ENV_TEST_REDIS_URL",
]

ENV_TEST_DSN = "CCXT_QUESTDB_TEST_DSN"
ENV_TEST_HTTP = "CCXT_QUESTDB_TEST_HTTP"
ENV_TEST_REDIS_URL = "CCXT_QUESTDB_TEST_REDIS_URL"


class ExternalQuestDB(QuestDBEndpoints):
    """An existing QuestDB named by the environment; the tests do not own it."""

    external = True

    def __init__(self, connection: QuestDBConnection) -> None:
        self._connection = connection

    @property
    def connection(self) -> QuestDBConnection:
        return self._connection

    def is_running(self) -> bool:
        return pg_ready(self.connection)

    def stop(self) -> None:
        raise ServiceError(f"the external QuestDB at {self.connection} ({ENV_TEST_DSN}) cannot be stopped by tests")

    start = restart = stop

    def __repr__(self) -> str:
        return f"ExternalQuestDB({self.connection})"


class ExternalRedis:
    """An existing Redis named by ``CCXT_QUESTDB_TEST_REDIS_URL``; the tests do not own it."""

    external = True

    def __init__(self, url: str) -> None:
        self.url = url

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=2).ping())
        except Exception:  # noqa: BLE001
            return False

    def is_running(self) -> bool:
        return self.ping()

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise ServiceError(f"the external Redis ({ENV_TEST_REDIS_URL}) cannot be stopped or restarted by tests")

    stop = kill = restart = _refuse

    def start(self) -> ExternalRedis:
        return self

    def __repr__(self) -> str:
        return "ExternalRedis(<from CCXT_QUESTDB_TEST_REDIS_URL>)"


T = TypeVar("T")


@contextmanager
def _held(
    open_: Callable[[], T],
    close: Callable[[T], object],
    failure: str,
    errors: type[Exception] = CcxtQuestDBError,
) -> Iterator[T]:
    """What ``open_()`` gives, ``close``d when the block ends; the test fails with ``failure`` and
    the error when ``open_`` raises one of ``errors``."""
    try:
        held = open_()
    except errors as exc:
        pytest.fail(f"{failure}: {exc}", pytrace=False)
    try:
        yield held
    finally:
        close(held)


def _service_env(config: pytest.Config) -> dict[str, str]:
    env = dict(os.environ)
    if not env.get(ENV_HOME, "").strip():
        env[ENV_HOME] = str(Path(config.rootpath) / ".ccxt-questdb")
    return env


def _start_questdb(data_dir: Path, env: dict[str, str]) -> QuestDBServer:
    last: Exception | None = None
    for _attempt in range(2):
        server = QuestDBServer(data_dir, env=env)
        try:
            return server.start()
        except ServiceError as exc:
            last = exc
            # Another process may have taken one of our free ports between the probe and the bind:
            # only that case is worth a second try, with fresh ports.
            if all(port_is_free(p) for _, p in server.ports.as_list()):
                break
    assert last is not None
    raise last


@pytest.fixture(scope="session")
def questdb(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    dsn = os.environ.get(ENV_TEST_DSN, "").strip()
    if dsn:
        try:
            conn = QuestDBConnection.from_mapping({"dsn": dsn, "http": os.environ.get(ENV_TEST_HTTP) or None})
        except CcxtQuestDBError as exc:
            pytest.fail(f"{ENV_TEST_DSN}/{ENV_TEST_HTTP}: {exc}", pytrace=False)
        if not pg_ready(conn, timeout=5):
            pytest.fail(f"the QuestDB at {conn} ({ENV_TEST_DSN}) does not answer over PG wire", pytrace=False)
        if not ping(conn.http_host or conn.host, conn.http_port, timeout=5) and not conn.http_tls:
            pytest.fail(f"the QuestDB at {conn} does not answer /ping over HTTP (set {ENV_TEST_HTTP})", pytrace=False)
        yield ExternalQuestDB(conn)
        return
    env = _service_env(request.config)
    data_dir = tmp_path_factory.mktemp("questdb")
    with _held(
        lambda: _start_questdb(data_dir, env), QuestDBServer.stop, "QuestDB could not start for the tests"
    ) as server:
        yield server


@pytest.fixture(scope="session")
def questdb_connection(questdb: Any) -> QuestDBConnection:
    return questdb.connection


@pytest.fixture
def questdb_conn(questdb: Any) -> Iterator[Any]:
    """An autocommit psycopg connection to the session QuestDB."""
    with _held(
        lambda: questdb.connection.pg_connect(autocommit=True),
        lambda conn: conn.close(),
        f"cannot connect to QuestDB at {questdb.connection} over PG wire",
        errors=Exception,
    ) as conn:
        yield conn


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    url = os.environ.get(ENV_TEST_REDIS_URL, "").strip()
    if url:
        ext = ExternalRedis(url)
        if not ext.ping():
            pytest.fail(f"the Redis named by {ENV_TEST_REDIS_URL} does not answer PING", pytrace=False)
        yield ext
        return
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"))
    with _held(server.start, RedisServer.stop, "Redis could not start for the tests"):
        yield server


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    """The session Redis URL; restarts the server first if an earlier test left it stopped."""
    if not redis_server.is_running():
        try:
            redis_server.start()
        except CcxtQuestDBError as exc:
            pytest.fail(f"Redis could not be restarted for this test: {exc}", pytrace=False)
    return str(redis_server.url)


def wait_for_wal(conn: Any, table: str, timeout: float = 30.0) -> None:
    """Block until ``table``'s WAL is applied (``writerTxn = sequencerTxn``); fail on suspension/timeout."""
    deadline = time.monotonic() + timeout
    row = None
    while True:
        row = conn.execute(
            "SELECT writerTxn, sequencerTxn, suspended FROM wal_tables() WHERE name = %s", (table,)
        ).fetchone()
        if row is not None:
            writer, seq, suspended = row
            if suspended:
                raise AssertionError(f"WAL of table {table!r} is suspended (writerTxn {writer}, sequencerTxn {seq})")
            if writer == seq:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"WAL of table {table!r} not applied within {timeout} s (last wal_tables row: {row})")
        time.sleep(0.05)

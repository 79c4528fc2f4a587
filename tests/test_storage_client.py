"""QuestDBClient and SeriesStore on the real server: the kept ILP senders (reuse, thread safety,
recovery after a rejected write and after a server restart), parallel bulk writes, and the two
read paths (parquet over /exp, PG wire) giving the same frames."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ccxt_questdb_assets.core.coverage import CoverageSpan
from ccxt_questdb_assets.core.errors import StorageError
from ccxt_questdb_assets.core.node_ids import NodeId
from ccxt_questdb_assets.core.windows import TimeWindow
from ccxt_questdb_assets.services.questdb_server import QuestDBServer
from ccxt_questdb_assets.storage import client as client_module
from ccxt_questdb_assets.storage.client import QuestDBClient
from ccxt_questdb_assets.storage.coverage_store import CoverageStore
from ccxt_questdb_assets.storage.series import EXPORT_MIN_ROWS, SeriesStore, _literal
from ccxt_questdb_assets.storage.series_kind import CANDLE_KIND, TRADE_KIND

MIN = 60_000
T0 = 1_704_067_200_000  # 2024-01-01 UTC
NODE = NodeId.parse("ohlcv:binance:BTC/USDT:1m")


def candles(n: int, start_ms: int = T0, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    o, c = 100 + rng.random(n), 100 + rng.random(n)
    return pd.DataFrame(
        {
            "ts": start_ms + np.arange(n, dtype=np.int64) * MIN,
            "open": o,
            "high": np.maximum(o, c) + 0.5,
            "low": np.minimum(o, c) - 0.5,
            "close": c,
            "volume": rng.random(n) * 10,
            "closed": np.ones(n, dtype=bool),
        }
    )


def store(client: QuestDBClient, kind=CANDLE_KIND) -> SeriesStore:
    s = SeriesStore(client, f"st_{uuid.uuid4().hex[:10]}", kind)
    s.ensure()
    return s


def count(client: QuestDBClient, table: str) -> int:
    client.wait_visible(table)
    return client.query(f'SELECT count() FROM "{table}"')[0][0]


def test_one_sender_is_reused_and_each_write_is_committed_when_it_returns(questdb):
    client = QuestDBClient(questdb.connection)
    s = store(client)
    for i in range(5):
        s.write(NODE, candles(100, T0 + i * 100 * MIN))
        assert count(client, s.table) == 100 * (i + 1)  # flushed: only WAL apply is waited for
    assert client._senders.opened == 1
    client.close()
    s.write(NODE, candles(100, T0 + 500 * MIN))  # usable after close: a new sender
    assert count(client, s.table) == 600
    assert client._senders.opened == 2
    client.close()


def test_a_rejected_write_raises_and_the_next_write_gets_a_fresh_sender(questdb):
    client = QuestDBClient(questdb.connection)
    s = store(client)
    s.write(NODE, candles(10))
    bad = pd.DataFrame({"ts": pd.to_datetime([T0], unit="ms", utc=True), "open": ["not a number"]})
    with pytest.raises(StorageError, match="rejected a write of 1 rows"):
        client.write_frame(s.table, bad, symbols=())
    s.write(NODE, candles(10, T0 + 10 * MIN))
    assert count(client, s.table) == 20
    assert client._senders.opened == 2
    client.close()


def test_concurrent_writers_share_the_client(questdb):
    client = QuestDBClient(questdb.connection)
    s = store(client)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(5):
                s.write(NODE, candles(200, T0 + (k * 5 + i) * 200 * MIN))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert count(client, s.table) == 4 * 5 * 200
    assert 1 <= client._senders.opened <= 4
    client.close()


def test_a_large_frame_goes_in_parallel_slices_and_arrives_whole(questdb):
    client = QuestDBClient(questdb.connection, write_parallelism=2)
    s = store(client)
    n = client_module.PARALLEL_MIN_ROWS + 1_001
    rows = candles(n)
    s.write(NODE, rows)
    assert count(client, s.table) == n
    assert client._senders.opened == 2
    got = s.read(NODE, TimeWindow(T0, T0 + n * MIN))
    np.testing.assert_array_equal(got["close"].to_numpy(), rows["close"].to_numpy())
    s.write(NODE, rows)  # the same rows again: DEDUP keeps one of each
    assert count(client, s.table) == n
    client.close()


def test_signals_to_the_writing_thread_are_held_not_failing_the_write(questdb):
    """The ILP client does not retry a system call a signal interrupts (EINTR): a signal the process
    handles for its own purposes arriving mid-write would fail it. Each write here opens a fresh
    sender while the main thread gets a signal every millisecond; every handler still runs."""
    client = QuestDBClient(questdb.connection)
    s = store(client)
    handled = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: handled.append(1))
    done = threading.Event()
    main = threading.main_thread().ident

    def pester() -> None:
        while not done.wait(0.001):
            signal.pthread_kill(main, signal.SIGUSR1)

    pesterer = threading.Thread(target=pester, daemon=True)
    pesterer.start()
    try:
        for i in range(30):
            client.close()  # the next write establishes a sender (the protocol probe) as well
            s.write(NODE, candles(500, T0 + i * 500 * MIN))
    finally:
        done.set()
        pesterer.join()
        signal.signal(signal.SIGUSR1, previous)
    assert count(client, s.table) == 30 * 500
    assert len(handled) > 30  # the signals were delivered, after each write
    client.close()
    # Ctrl-C and a run's termination are not held: they still stop a write at once
    assert signal.SIGUSR1 in client_module.HELD_SIGNALS
    assert not {signal.SIGINT, signal.SIGTERM} & client_module.HELD_SIGNALS


def test_a_write_paused_by_stop_signals_goes_again_in_halves_and_arrives_whole(questdb):
    """A process paused and resumed (a profiler sampling it, a debugger) sees a waiting socket
    read fail with EINTR, which no signal mask prevents: such a write goes again in halves that
    fit between the pauses. Here a second process pauses this one for 1 ms every 20 ms (a sampling
    profiler's default is every 10 ms; a flush of 60,000 rows takes longer than either)."""
    client = QuestDBClient(questdb.connection, write_parallelism=2)
    s = store(client)
    n = client_module.PARALLEL_MIN_ROWS + 20_000
    rows = candles(n)
    s.write(NODE, rows)  # before the pauses: the server's first answers, slow while it warms up
    pauser = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, signal, sys, time\n"
            "pid, end = int(sys.argv[1]), time.monotonic() + 60\n"
            "while time.monotonic() < end and os.getppid() == pid:\n"
            "    os.kill(pid, signal.SIGSTOP); time.sleep(0.001); os.kill(pid, signal.SIGCONT); time.sleep(0.02)\n",
            str(os.getpid()),
        ]
    )
    later = [candles(n, T0 + k * n * MIN, seed=k) for k in (1, 2)]
    try:
        time.sleep(0.2)  # pausing already
        s.write(NODE, rows)  # the same rows again (upserted)
        for more in later:
            s.write(NODE, more)
    finally:
        pauser.kill()
        pauser.wait()
        os.kill(os.getpid(), signal.SIGCONT)
    assert count(client, s.table) == 3 * n  # DEDUP: rows sent twice are kept once
    got = s.read(NODE, TimeWindow(T0, T0 + 3 * n * MIN))
    np.testing.assert_array_equal(got["close"].to_numpy(), pd.concat([rows, *later])["close"].to_numpy())
    client.close()


def test_export_and_pg_wire_reads_are_identical(questdb):
    client = QuestDBClient(questdb.connection)
    s = store(client)
    n = EXPORT_MIN_ROWS * 2
    rows = candles(n)
    s.write(NODE, rows)
    s.write(NodeId.parse("ohlcv:binance:ETH/USDT:1m"), candles(n, seed=2))
    s.wait_visible()
    window = TimeWindow(T0 - 5 * MIN, T0 + n * MIN)
    exported = s.read(NODE, window)
    assert client._http.opened == 1  # the read went through /exp
    client.export_enabled = False
    over_pg = s.read(NODE, window)
    pd.testing.assert_frame_equal(exported, over_pg, check_exact=True)
    assert str(exported["ts"].dtype) == "datetime64[us, UTC]"
    assert list(exported.columns) == ["ts", "open", "high", "low", "close", "volume"]
    np.testing.assert_array_equal(exported["ts"].astype("int64").to_numpy() // 1000, rows["ts"].to_numpy())
    # Empty answers have the same typed columns on both paths.
    client.export_enabled = True
    empty_window = TimeWindow(T0 - 10 * n * MIN, T0 - 9 * n * MIN)
    empty = s.read(NODE, empty_window)
    client.export_enabled = False
    pd.testing.assert_frame_equal(empty, s.read(NODE, empty_window))
    assert empty.empty and str(empty["close"].dtype) == "float64"
    client.close()


def test_trades_read_the_same_on_both_paths(questdb):
    client = QuestDBClient(questdb.connection)
    s = store(client, TRADE_KIND)
    node = NodeId.parse("trades:binance:BTC/USDT")
    n = 8_000
    rows = pd.DataFrame(
        {
            "ts": T0 + np.arange(n, dtype=np.int64) * 900,
            "trade_id": [str(i) for i in range(n)],
            "price": np.linspace(1, 2, n),
            "amount": np.linspace(0.1, 0.2, n),
            "side": np.where(np.arange(n) % 3 == 0, "buy", "sell"),
        }
    )
    s.write(node, rows)
    s.wait_visible()
    window = TimeWindow(T0, T0 + n * 900)  # two hours: an export
    exported = s.read(node, window)
    assert client._http.opened == 1
    client.export_enabled = False
    pd.testing.assert_frame_equal(exported, s.read(node, window), check_exact=True)
    assert sorted(exported["trade_id"].astype(int)) == list(range(n))
    client.close()


def test_values_outside_the_literal_alphabet_stay_on_bound_parameters(questdb):
    assert _literal("BTC/USDT") == "'BTC/USDT'"
    for bad in ("BTC'/USDT", "a b", "x;DROP", "back\\slash", ""):
        assert _literal(bad) is None
    client = QuestDBClient(questdb.connection)
    s = store(client)
    node = NodeId.parse("ohlcv:binance:it's/USDT:1m")
    rows = candles(EXPORT_MIN_ROWS + 10)
    s.write(node, rows)
    s.wait_visible()
    got = s.read(node, TimeWindow(T0, T0 + len(rows) * MIN))
    assert len(got) == len(rows)
    assert client._http.opened == 0  # read over PG wire with the symbol as a bound parameter
    client.close()


def test_coverage_recorded_without_waiting_is_read_back_by_the_same_store(questdb):
    client = QuestDBClient(questdb.connection)
    cov = CoverageStore(client, f"st_{uuid.uuid4().hex[:10]}_coverage")
    node = str(NODE)
    for i in range(1, 6):
        cov.record(node, [CoverageSpan(T0, T0 + i * 1000 * MIN, False, T0)], wait=False)
        assert [(s.start_ms, s.end_ms) for s in cov.load(node).spans] == [(T0, T0 + i * 1000 * MIN)]
    client.close()


class _Refuse(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(403)
        self.end_headers()
        self.wfile.write(b'{"error": "read-only instance"}')

    def log_message(self, *args) -> None:
        pass


def test_an_export_the_server_refuses_falls_back_to_pg_wire_for_good(questdb):
    writer = QuestDBClient(questdb.connection)
    s = store(writer)
    rows = candles(EXPORT_MIN_ROWS)
    s.write(NODE, rows)
    s.wait_visible()
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    try:
        reader = QuestDBClient(questdb.connection.with_(http_port=fake.server_address[1]))
        got = SeriesStore(reader, s.table, CANDLE_KIND).read(NODE, TimeWindow(T0, T0 + len(rows) * MIN))
        assert len(got) == len(rows)
        assert reader.export_enabled is False
        reader.close()
    finally:
        fake.shutdown()
    writer.close()


@pytest.mark.slow
def test_writes_and_exports_survive_a_server_restart(tmp_path: Path, request: pytest.FixtureRequest):
    env = dict(os.environ)
    env.setdefault("CCXT_QUESTDB_HOME", str(request.config.rootpath / ".ccxt-questdb"))
    with QuestDBServer(tmp_path / "qdb", env=env) as server:
        client = QuestDBClient(server.connection)
        s = store(client)
        s.write(NODE, candles(EXPORT_MIN_ROWS))
        s.wait_visible()
        assert len(s.read(NODE, TimeWindow(T0, T0 + EXPORT_MIN_ROWS * MIN))) == EXPORT_MIN_ROWS
        server.restart()
        s.write(NODE, candles(EXPORT_MIN_ROWS, T0 + EXPORT_MIN_ROWS * MIN))  # the kept sender's socket is dead
        assert count(client, s.table) == 2 * EXPORT_MIN_ROWS
        assert len(s.read(NODE, TimeWindow(T0, T0 + 2 * EXPORT_MIN_ROWS * MIN))) == 2 * EXPORT_MIN_ROWS
        assert client.export_enabled  # a dropped connection is not a refusal
        client.close()


def test_benchmarks_help_runs():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and "coverage" in done.stdout

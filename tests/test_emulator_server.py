"""The emulator over HTTP: Binance wire format, parameter errors, weights, faults, control API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from ccxt_questdb_assets.emulator import ThreadedEmulator
from ccxt_questdb_assets.emulator.market import HOUR_MS, MINUTE_MS

KLINES = "/api/v3/klines"
AGG = "/api/v3/aggTrades"
NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000) + 30_123


def get(base_url: str, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(base_url + path, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_klines_wire_format_matches_binance_and_ground_truth(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    start = NOW - 10 * MINUTE_MS
    status, headers, body = get(emulator.base_url, f"{KLINES}?symbol=BTCUSDT&interval=1m&startTime={start}")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "2"
    rows = json.loads(body)
    truth = emulator.market.candles("BTCUSDT", "1m", start, NOW + 1, now_ms=NOW)
    assert len(rows) == len(truth) == 10  # the last one is the open candle, cut at now
    for row, want in zip(rows, truth, strict=True):
        assert len(row) == 12 and isinstance(row[0], int) and isinstance(row[6], int) and isinstance(row[8], int)
        assert all(isinstance(row[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))
        assert row[6] == row[0] + MINUTE_MS - 1
        assert [row[0], *map(float, row[1:6])] == want
        assert len(row[1].split(".")[1]) == 8


def test_agg_trades_wire_format(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    status, _, body = get(emulator.base_url, f"{AGG}?symbol=ETHUSDT&limit=3")
    assert status == 200
    rows = json.loads(body)
    assert [sorted(r) for r in rows] == [sorted("apqflTmM")] * 3
    assert rows[-1]["T"] <= NOW
    truth = emulator.market.trades("ETHUSDT", rows[0]["T"], rows[-1]["T"] + 1, now_ms=NOW)
    assert [r["a"] for r in rows] == [t.id for t in truth][-3:]


def test_exchange_info_filters(emulator, emulator_control):
    status, headers, body = get(emulator.base_url, "/api/v3/exchangeInfo")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "20"
    info = json.loads(body)
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert info["rateLimits"][0]["limit"] == 6000
    _, _, body = get(emulator.base_url, '/api/v3/exchangeInfo?symbols=["SOLUSDT","ETHUSDT"]')
    assert [s["symbol"] for s in json.loads(body)["symbols"]] == ["SOLUSDT", "ETHUSDT"]
    _, _, body = get(emulator.base_url, "/api/v3/exchangeInfo?symbol=ETHUSDT")
    assert [s["symbol"] for s in json.loads(body)["symbols"]] == ["ETHUSDT"]
    assert get(emulator.base_url, "/api/v3/exchangeInfo?symbol=NOPE")[0] == 400


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (f"{KLINES}?symbol=NOPE&interval=1m", -1121),
        (f"{KLINES}?symbol=BTCUSDT&interval=2m", -1120),
        (f"{KLINES}?symbol=BTCUSDT", -1102),
        (f"{KLINES}?interval=1m", -1102),
        (f"{KLINES}?symbol=BTCUSDT&interval=1m&limit=1001", -1130),
        (f"{KLINES}?symbol=BTCUSDT&interval=1m&limit=0", -1130),
        (f"{KLINES}?symbol=BTCUSDT&interval=1m&startTime=abc", -1100),
        (f"{AGG}?symbol=BTCUSDT&limit=1001", -1130),
        (f"{AGG}?symbol=NOPE", -1121),
        (f"{AGG}", -1102),
        (f"{AGG}?symbol=BTCUSDT&startTime=1700000000000&endTime={1700000000000 + HOUR_MS + 1}", -1127),
        (f"{AGG}?symbol=BTCUSDT&fromId=5&startTime=1700000000000", -1128),
    ],
)
def test_parameter_errors_use_binance_codes(emulator, emulator_control, query, code):
    status, headers, body = get(emulator.base_url, query)
    assert status == 400
    assert json.loads(body)["code"] == code
    assert "X-MBX-USED-WEIGHT-1M" in headers


def test_agg_trades_window_of_exactly_one_hour_is_allowed(emulator, emulator_control):
    start = 1700000000000
    status, _, body = get(emulator.base_url, f"{AGG}?symbol=BTCUSDT&startTime={start}&endTime={start + HOUR_MS}")
    assert status == 200
    assert len(json.loads(body)) == len(emulator.market.trades("BTCUSDT", start, start + HOUR_MS + 1))


def test_weight_budget_returns_429_with_retry_after(emulator, emulator_control):
    emulator_control.set_weight_limit(10)
    statuses = []
    for _ in range(40):
        status, headers, body = get(emulator.base_url, f"{KLINES}?symbol=BTCUSDT&interval=1m&limit=1")
        statuses.append(status)
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= 60
            assert json.loads(body)["code"] == -1003
            assert int(headers["X-MBX-USED-WEIGHT-1M"]) > 10
            break
    assert statuses[-1] == 429 and statuses.count(200) >= 5
    assert emulator_control.requests(KLINES)[-1]["status"] == 429


def test_faults_are_served_once_then_normal(emulator, emulator_control):
    ping = "/api/v3/ping"
    emulator_control.inject("503", count=2, path=ping)
    emulator_control.inject("418", retry_after=120)
    s1, _, body = get(emulator.base_url, ping)
    assert s1 == 503 and body.startswith(b"<html>")
    s2, h2, _ = get(emulator.base_url, "/api/v3/time")  # the 503 rule is for ping only
    assert s2 == 418 and h2["Retry-After"] == "120"
    assert get(emulator.base_url, ping)[0] == 503
    assert get(emulator.base_url, ping)[0] == 200
    assert emulator_control.faults() == []
    log = emulator_control.requests()
    assert [(r["path"], r["status"], r["fault"], r["weight"]) for r in log] == [
        (ping, 503, "503", 0),
        ("/api/v3/time", 418, "418", 0),
        (ping, 503, "503", 0),
        (ping, 200, None, 1),
    ]


@pytest.mark.parametrize("kind", ["empty_page", "duplicate_rows", "out_of_order_rows", "truncated_json"])
def test_data_faults_mangle_a_normal_page(emulator, emulator_control, kind):
    emulator_control.freeze_clock(NOW)
    q = f"{KLINES}?symbol=BTCUSDT&interval=1m&limit=20"
    _, _, clean = get(emulator.base_url, q)
    emulator_control.inject(kind)
    status, _, body = get(emulator.base_url, q)
    assert status == 200
    rows = json.loads(clean)
    if kind == "truncated_json":
        assert clean.startswith(body) and len(body) < len(clean)
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        return
    got = json.loads(body)
    if kind == "empty_page":
        assert got == []
    elif kind == "duplicate_rows":
        assert len(got) == 22 and sorted({r[0] for r in got}) == [r[0] for r in rows]
    else:
        assert got != rows and sorted(got) == sorted(rows)


def test_delay_and_drop_connection(emulator, emulator_control):
    emulator_control.inject("delay", delay_s=0.3)
    t0 = time.monotonic()
    assert get(emulator.base_url, "/api/v3/ping")[0] == 200
    assert time.monotonic() - t0 >= 0.3
    emulator_control.inject("drop_connection")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(emulator.base_url + "/api/v3/ping", timeout=5).read()
    assert emulator_control.requests()[-1]["fault"] == "drop_connection"


def test_control_clock_and_reset(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    assert json.loads(get(emulator.base_url, "/api/v3/time")[2]) == {"serverTime": NOW}
    emulator_control.set_clock_offset(-HOUR_MS)
    assert abs(emulator_control.now_ms() - (time.time() * 1000 - HOUR_MS)) < 5_000
    emulator_control.set_weight_limit(50)
    emulator_control.inject("500")
    emulator_control.reset()
    assert emulator_control.config()["weight_limit"] == 6000 and emulator_control.used_weight() == 0
    assert emulator_control.faults() == [] and emulator_control.requests() == []
    assert emulator_control.clock()["frozen_ms"] is None and emulator_control.clock()["offset_ms"] == 0
    assert get(emulator.base_url, "/_emulator/nope")[0] == 404
    assert emulator_control.count() == 0  # control routes are never logged
    market = emulator_control.market()
    assert [m["ccxt_symbol"] for m in market] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def test_threaded_emulator_serves_the_same_data(emulator):
    with ThreadedEmulator() as threaded:
        threaded.control.freeze_clock(NOW)
        q = f"{KLINES}?symbol=SOLUSDT&interval=1h&endTime={NOW - 5 * HOUR_MS}&limit=5"
        emulator.control.freeze_clock(NOW)
        try:
            assert get(threaded.base_url, q)[2] == get(emulator.base_url, q)[2]
        finally:
            emulator.control.reset()
        assert threaded.state.requests(KLINES)[0]["params"]["symbol"] == "SOLUSDT"


def test_rows_of_closed_bars_are_written_once_and_the_open_bar_never_kept():
    day = 86_400_000
    with ThreadedEmulator() as threaded:
        pages = threaded.state.pages
        threaded.control.freeze_clock(NOW)
        since = NOW - NOW % day - 3 * day - 10 * MINUTE_MS  # from 23:50 three days ago, across midnight
        closed = f"{KLINES}?symbol=BTCUSDT&interval=1m&startTime={since}&limit=60"
        first = json.loads(get(threaded.base_url, closed)[2])
        truth = threaded.state.market.candles("BTCUSDT", "1m", since, since + 60 * MINUTE_MS)
        assert len(first) == 60 and [r[0] for r in first] == [c[0] for c in truth]
        assert len(pages) == 2  # the two days it spans, kept whole
        inner = f"{KLINES}?symbol=BTCUSDT&interval=1m&startTime={since + 5 * MINUTE_MS}&limit=20"
        assert json.loads(get(threaded.base_url, inner)[2]) == first[5:25] and len(pages) == 2  # from the kept rows
        fresh = json.loads(get(threaded.base_url, f"{KLINES}?symbol=BTCUSDT&interval=1m&startTime={since}")[2])
        assert fresh[:60] == first  # longer pages agree with the kept rows
        recent = f"{KLINES}?symbol=BTCUSDT&interval=1m&startTime={NOW - 10 * MINUTE_MS}"
        with_open_bar = json.loads(get(threaded.base_url, recent)[2])
        assert len(with_open_bar) == 10 and len(pages) == 2  # today is still open: nothing of it kept
        threaded.control.freeze_clock(NOW + 2 * MINUTE_MS)
        now_closed = json.loads(get(threaded.base_url, recent)[2])
        assert now_closed[:9] == with_open_bar[:9] and now_closed[9] != with_open_bar[9]  # the bar went on
        threaded.control.inject("duplicate_rows")
        assert len(json.loads(get(threaded.base_url, closed)[2])) == 62  # a mangled copy of the kept rows ...
        assert json.loads(get(threaded.base_url, closed)[2]) == first  # ... which stay as written
        threaded.control.reset()
        assert len(threaded.state.pages) == 0


def test_cli_serve_prints_base_url_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccxt_questdb_assets.cli", "emulator", "serve", "--port", "0", "--weight-limit", "77"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        info = json.loads(get(url, "/api/v3/exchangeInfo")[2])
        assert info["rateLimits"][0]["limit"] == 77
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0

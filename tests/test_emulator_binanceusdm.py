"""Real ccxt (``binanceusdm``, and ``binance`` with linear markets) against the emulator's USD-M futures dialect."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import ccxt
import pytest
from ccxt_support import burst_start

from ccxt_questdb_assets.emulator.market import DAY_MS, HOUR_MS, MINUTE_MS
from ccxt_questdb_assets.exchange.client import build_exchange

INFO = "/fapi/v1/exchangeInfo"
KLINES = "/fapi/v1/klines"
AGG = "/fapi/v1/aggTrades"
NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000) + 42_424
BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"


def usdm(emulator, *, load: bool = True, **kwargs: Any) -> Any:
    ex = build_exchange(
        "binanceusdm",
        base_url=emulator.base_url,
        async_=False,
        enable_rate_limit=False,
        timeout_ms=kwargs.pop("timeout_ms", 10_000),
        **kwargs,
    )
    if load:
        ex.load_markets()
    return ex


def get(emulator, path: str) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(emulator.base_url + path, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, dict(exc.headers), json.loads(body) if body.startswith(b"{") else body


def set_budget(control, limit: int) -> None:
    control._call("POST", "config", {"dialect": "binanceusdm", "weight_limit": limit, "reset_weight": True})


def usdm_used(control) -> int:
    return int(control._call("GET", "config", query={"dialect": "binanceusdm"})["used_weight"])


def as_tuples(trades: list[dict[str, Any]]) -> list[tuple]:
    return [(int(t["id"]), t["timestamp"], t["price"], t["amount"], t["side"]) for t in trades]


# ----------------------------------------------------------------------------- markets


def test_load_markets_makes_one_request_even_with_api_keys(emulator, emulator_control):
    markets = usdm(emulator, api_key="KEY", secret="SECRET").markets  # DEFAULT_OPTIONS: no sapi currency calls
    assert [(r["method"], r["path"], r["params"]) for r in emulator_control.requests()] == [("GET", INFO, {})]
    assert sorted(markets) == [BTC, ETH, SOL]
    btc = markets[BTC]
    assert (btc["id"], btc["type"], btc["swap"], btc["linear"], btc["settle"], btc["contractSize"]) == (
        "BTCUSDT",
        "swap",
        True,
        True,
        "USDT",
        1.0,
    )
    assert btc["active"] and btc["expiry"] is None
    assert btc["created"] == emulator.market.listing_ms("BTCUSDT")
    assert btc["precision"] == {"amount": 1e-05, "price": 0.01, "base": 1e-08, "quote": 1e-08}
    assert btc["limits"]["cost"]["min"] == 5.0
    assert markets[SOL]["created"] == emulator.market.listing_ms("SOLUSDT")


def test_binance_linear_markets_and_async_load(emulator, emulator_control):
    ex = build_exchange(
        "binance", base_url=emulator.base_url, async_=False, options={"fetchMarkets": {"types": ["linear"]}}
    )
    assert sorted(ex.load_markets()) == [BTC, ETH, SOL]

    async def run() -> list[str]:
        aex = build_exchange("binanceusdm", base_url=emulator.base_url)
        try:
            return sorted(await aex.load_markets())
        finally:
            await aex.close()

    assert asyncio.run(run()) == [BTC, ETH, SOL]
    assert [r["path"] for r in emulator_control.requests()] == [INFO, INFO]


def test_runtime_markets_and_statuses(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    emulator_control.list_market("NEW", "USDT", listing_ms=NOW - 2 * HOUR_MS)
    emulator_control.list_market("HLT", "USDT", listing_ms=NOW - 2 * HOUR_MS, status="HALT")
    emulator_control.list_market("SOON", "USDT", listing_ms=NOW + 5 * HOUR_MS)
    _, _, info = get(emulator, INFO)
    status = {s["symbol"]: s["status"] for s in info["symbols"]}
    assert (status["NEWUSDT"], status["HLTUSDT"], status["SOONUSDT"]) == ("TRADING", "SETTLING", "PENDING_TRADING")
    assert info["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 2400,
    }
    markets = usdm(emulator).markets
    assert markets["NEW/USDT:USDT"]["active"] and not markets["HLT/USDT:USDT"]["active"]
    assert markets["SOON/USDT:USDT"]["created"] == NOW + 5 * HOUR_MS - (NOW + 5 * HOUR_MS) % HOUR_MS


# ----------------------------------------------------------------------------- candles


def test_klines_wire_format_and_weight_by_limit(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    start = NOW - 10 * MINUTE_MS
    status, headers, rows = get(emulator, f"{KLINES}?symbol=BTCUSDT&interval=1m&startTime={start}&limit=99")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "1"
    truth = emulator.market.candles("BTCUSDT", "1m", start, NOW + 1, now_ms=NOW)
    assert len(rows) == len(truth) == 10
    for row, want in zip(rows, truth, strict=True):
        assert len(row) == 12 and all(isinstance(row[i], int) for i in (0, 6, 8))
        assert row[6] == row[0] + MINUTE_MS - 1 and [row[0], *map(float, row[1:6])] == want
        assert [len(row[i].split(".")[1]) for i in (1, 5, 7)] == [2, 5, 7]  # exactly the precision, not 8
    used = 1
    for limit, weight in [(100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10), (1500, 10), (None, 5)]:
        query = f"?symbol=ETHUSDT&interval=1h&endTime={NOW}" + (f"&limit={limit}" if limit else "")
        status, headers, rows = get(emulator, KLINES + query)
        used += weight
        assert status == 200 and len(rows) == (limit or 500), limit
        assert headers["X-MBX-USED-WEIGHT-1M"] == str(used), limit
        assert emulator_control.requests(KLINES)[-1]["weight"] == weight  # the request log charges the same
    assert emulator_control.used_weight() == 0  # the spot budget is another one
    assert emulator_control.config()["limits"]["binanceusdm"] == 2400


def test_two_days_of_1m_paged_with_ccxt_equal_ground_truth(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    end = NOW - NOW % DAY_MS
    start = end - 2 * DAY_MS
    ex = usdm(emulator)
    got, cursor = [], start
    while cursor < end:
        page = ex.fetch_ohlcv(BTC, "1m", since=cursor, limit=1000, params={"until": end - 1})
        if not page:
            break
        got += page
        cursor = page[-1][0] + MINUTE_MS
    assert got == emulator.market.candles("BTCUSDT", "1m", start, end, now_ms=NOW)
    reqs = emulator_control.requests(KLINES)
    assert [len(got)] == [2880] and len(reqs) == 3
    assert reqs[1]["params"] == {
        "interval": "1m",
        "limit": "1000",
        "symbol": "BTCUSDT",
        "startTime": str(start + 1000 * MINUTE_MS),
        "endTime": str(end - 1),
    }
    assert usdm_used(emulator_control) == 1 + 3 * 5  # exchangeInfo + three klines of limit 1000


def test_klines_cursors_caps_open_bar_and_listing(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = usdm(emulator)
    t = NOW - 3 * HOUR_MS - NOW % HOUR_MS  # an hour open
    assert ex.fetch_ohlcv(ETH, "1h", since=t, limit=2)[0][0] == t  # startTime inclusive
    assert ex.fetch_ohlcv(ETH, "1h", since=t + 1, limit=2)[0][0] == t + HOUR_MS  # open times >= startTime
    assert [r[0] for r in ex.fetch_ohlcv(ETH, "1h", since=t, params={"until": t + HOUR_MS})] == [t, t + HOUR_MS]
    assert emulator_control.requests(KLINES)[-1]["params"]["limit"] == "1000"  # since+until: ccxt asks 1000
    # ccxt caps fetch_ohlcv at 1000 rows; the exchange serves up to 1500 (raw call) and refuses more
    assert len(ex.fetch_ohlcv(BTC, "1m", since=NOW - 2 * DAY_MS, limit=1500)) == 1000
    assert (
        len(
            ex.fapiPublicGetKlines(
                {"symbol": "BTCUSDT", "interval": "1m", "limit": 1500, "startTime": NOW - 2 * DAY_MS}
            )
        )
        == 1500
    )
    with pytest.raises(ccxt.BadRequest):
        ex.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "limit": 1501})
    # the open bar holds the trades up to now and grows with the clock
    last = ex.fetch_ohlcv(BTC, "1h", limit=2)[-1]
    assert last[0] == NOW - NOW % HOUR_MS
    assert last == emulator.market.candles("BTCUSDT", "1h", last[0], NOW + 1, now_ms=NOW)[0]
    emulator_control.freeze_clock(NOW + 20 * MINUTE_MS)
    later = ex.fetch_ohlcv(BTC, "1h", limit=1)[-1]
    assert later[0] == last[0] and later[5] > last[5]
    # nothing before listing; a page reaching into listing starts at it
    listing = emulator.market.listing_ms("SOLUSDT")
    assert ex.fetch_ohlcv(SOL, "1h", since=listing - 30 * DAY_MS, params={"until": listing - 1}) == []
    first = ex.fetch_ohlcv(SOL, "1m", since=listing - 30 * DAY_MS, limit=5)
    assert first == emulator.market.candles("SOLUSDT", "1m", listing, listing + 5 * MINUTE_MS)


# ----------------------------------------------------------------------------- trades


def test_agg_trades_wire_format(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    status, headers, rows = get(emulator, f"{AGG}?symbol=ETHUSDT")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "20" and len(rows) == 500  # default limit
    assert [sorted(r) for r in rows[:3]] == [sorted("apqflTm")] * 3  # futures rows have no "M"
    assert rows[-1]["T"] <= NOW and len(rows[0]["p"].split(".")[1]) == 2 and len(rows[0]["q"].split(".")[1]) == 4
    truth = emulator.market.trades("ETHUSDT", rows[0]["T"], NOW + 1, now_ms=NOW)
    assert [r["a"] for r in rows] == [t.id for t in truth][-500:]


def test_trades_paged_by_from_id_through_bursts(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    market = emulator.market
    start_id = burst_start(market, "BTCUSDT", NOW - 5 * HOUR_MS)
    want = market.trades_from_id("BTCUSDT", start_id, 60, now_ms=NOW)
    ex = usdm(emulator)
    got, nxt = [], start_id
    while len(got) < 60:
        page = ex.fetch_trades(BTC, limit=7, params={"fromId": nxt})
        got += page
        nxt = int(page[-1]["id"]) + 1
    assert as_tuples(got[:60]) == [tuple(t) for t in want]
    assert len({t["timestamp"] for t in got[:60]}) < 60 and all(t["symbol"] == BTC for t in got)
    assert {r["params"]["limit"] for r in emulator_control.requests(AGG)} == {"7"}
    # the page cap: 1000, even when more is asked (ccxt lowers it for swaps)
    assert len(ex.fetch_trades(BTC, limit=5000, params={"fromId": start_id - 5000})) == 1000
    assert emulator_control.requests(AGG)[-1]["params"]["limit"] == "1000"


def test_trades_since_uses_an_inclusive_one_hour_window(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ((out_start, _),) = emulator.market.outages("SOLUSDT")
    since = out_start - 30 * MINUTE_MS
    ex = usdm(emulator)
    got = ex.fetch_trades(SOL, since=since, limit=1000)
    assert as_tuples(got) == [tuple(t) for t in emulator.market.trades("SOLUSDT", since, since + HOUR_MS + 1)]
    assert max(t["timestamp"] for t in got) < out_start
    (req,) = emulator_control.requests(AGG)
    assert int(req["params"]["endTime"]) - int(req["params"]["startTime"]) == HOUR_MS
    listing = emulator.market.listing_ms("SOLUSDT")
    assert ex.fetch_trades(SOL, since=listing - 2 * HOUR_MS) == []  # before listing
    # fromId with a time window is accepted on USD-M: both filters apply
    t0 = NOW - 2 * HOUR_MS
    window = emulator.market.trades("BTCUSDT", t0, t0 + HOUR_MS + 1)
    from_id = window[10].id
    status, _, rows = get(emulator, f"{AGG}?symbol=BTCUSDT&fromId={from_id}&startTime={t0}&endTime={t0 + HOUR_MS}")
    assert status == 200 and [r["a"] for r in rows] == [t.id for t in window[10:]]
    status, _, rows = get(emulator, f"{AGG}?symbol=BTCUSDT&fromId={window[0].id - 50}&startTime={t0}&limit=5")
    assert [r["a"] for r in rows] == [t.id for t in window[:5]]


# ----------------------------------------------------------------------------- errors


PARAM_ERRORS: list[tuple[str, Any, int, type[Exception]]] = [
    ("bad symbol", lambda ex: ex.fapiPublicGetKlines({"symbol": "NOPEUSDT", "interval": "1m"}), -1121, ccxt.BadSymbol),
    ("no symbol", lambda ex: ex.fapiPublicGetAggTrades({}), -1102, ccxt.BadRequest),
    ("1s interval", lambda ex: ex.fetch_ohlcv(BTC, "1s"), -1120, ccxt.BadRequest),
    ("illegal long", lambda ex: ex.fetch_trades(BTC, params={"fromId": "x1"}), -1100, ccxt.BadRequest),
    ("agg limit", lambda ex: ex.fapiPublicGetAggTrades({"symbol": "BTCUSDT", "limit": 1001}), -1130, ccxt.BadRequest),
    (
        "agg > 1h",
        lambda ex: ex.fetch_trades(BTC, since=NOW - 3 * HOUR_MS, params={"until": NOW - HOUR_MS}),
        -1127,
        ccxt.BadRequest,
    ),
]


@pytest.mark.parametrize(("name", "fn", "code", "exc"), PARAM_ERRORS, ids=[e[0] for e in PARAM_ERRORS])
def test_parameter_errors_map_to_ccxt(emulator, emulator_control, name, fn, code, exc):
    emulator_control.freeze_clock(NOW)
    with pytest.raises(exc) as info:
        fn(usdm(emulator))
    assert type(info.value) is exc
    last = emulator_control.requests()[-1]
    assert last["status"] == 400 and f'"code":{code},' in str(info.value)


def test_start_after_end_is_minus_1023(emulator, emulator_control):
    """-1023 is in ccxt's USD-M table, which ccxt applies by host (fapi.binance.com): through the emulator's
    host it is a plain ExchangeError; the same body from the real host is BadRequest."""
    emulator_control.freeze_clock(NOW)
    ex = usdm(emulator)
    for call in (
        lambda: ex.fetch_ohlcv(BTC, "1m", since=NOW - HOUR_MS, params={"until": NOW - 2 * HOUR_MS}),
        lambda: ex.fetch_trades(BTC, since=NOW - HOUR_MS, params={"until": NOW - 2 * HOUR_MS}),
    ):
        with pytest.raises(ccxt.ExchangeError) as info:
            call()
        assert type(info.value) is ccxt.ExchangeError
    status, _, body = get(emulator, f"{KLINES}?symbol=BTCUSDT&interval=1m&startTime=5&endTime=4")
    assert status == 400 and body == {"code": -1023, "msg": "Start time is greater than end time."}
    with pytest.raises(ccxt.BadRequest):
        ex.handle_errors(
            400, "Bad Request", "https://fapi.binance.com/fapi/v1/klines", "GET", {}, json.dumps(body), body, None, None
        )


def test_weight_budget_answers_futures_429(emulator, emulator_control):
    set_budget(emulator_control, 10)
    ex = usdm(emulator)  # exchangeInfo: 1
    ex.fetch_ohlcv(BTC, "1m", limit=1000)  # 1 + 4 = 6
    with pytest.raises(ccxt.DDoSProtection) as info:
        ex.fetch_ohlcv(BTC, "1m", limit=1000)  # 11 > 10
    assert "current limit of IP(127.0.0.1) is 10 requests per minute" in str(info.value)
    assert ex.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "11" and "Retry-After" not in ex.last_response_headers
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_trades(BTC, limit=5)  # refused before the handler
    assert [r["status"] for r in emulator_control.requests()] == [200, 200, 429, 429]
    # the spot dialect's budget is its own
    spot = build_exchange("binance", base_url=emulator.base_url, async_=False, enable_rate_limit=False)
    assert len(spot.fetch_ohlcv("BTC/USDT", "1m", limit=3)) == 3


FAULTS: list[tuple[str, type[Exception]]] = [
    ("429", ccxt.DDoSProtection),
    ("418", ccxt.DDoSProtection),
    ("403", ccxt.RateLimitExceeded),
    ("500", ccxt.OperationFailed),
    ("502", ccxt.ExchangeNotAvailable),
    ("503", ccxt.ExchangeNotAvailable),
    ("504", ccxt.RequestTimeout),
]


def test_error_faults_raise_the_expected_ccxt_exception(emulator, emulator_control):
    ex = usdm(emulator, timeout_ms=2000)
    for kind, exc in FAULTS:
        emulator_control.inject(kind, path=KLINES)
        with pytest.raises(exc) as info:
            ex.fetch_ohlcv(BTC, "1m", limit=5)
        assert not (kind in ("429", "418") and isinstance(info.value, ccxt.RateLimitExceeded)), kind
        if kind == "500":
            assert type(info.value) is ccxt.OperationFailed
        if kind == "429":  # USD-M documents no Retry-After; the emulator sends one only when the fault sets it
            assert "Retry-After" not in ex.last_response_headers and info.value.args[0].count("-1003") == 1
    emulator_control.inject("418", path=AGG, retry_after=30)
    with pytest.raises(ccxt.DDoSProtection, match=r"IP\(127.0.0.1\) banned until \d+"):
        ex.fetch_trades(BTC, limit=5)
    assert ex.last_response_headers["Retry-After"] == "30"


def test_data_faults_apply_to_futures_rows(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = usdm(emulator)
    since = NOW - DAY_MS
    clean = ex.fetch_ohlcv(BTC, "1m", since=since, limit=10)
    emulator_control.inject("empty_page", path=KLINES)
    assert ex.fetch_ohlcv(BTC, "1m", since=since, limit=10) == []
    emulator_control.inject("out_of_order_rows", path=KLINES)
    assert ex.fetch_ohlcv(BTC, "1m", since=since, limit=10) == clean
    emulator_control.inject("duplicate_rows", path=AGG)
    ids = [int(t["id"]) for t in ex.fetch_trades(BTC, limit=10, params={"fromId": 1000})]
    assert ids == [1002, 1003, 1004, 1005, 1005, 1006, 1007, 1008, 1009, 1009]
    row = [since, "1.00", "2.00", "0.50", "1.50", "3.000", since + MINUTE_MS - 1, "4.5", 1, "1.0", "1.5", "0"]
    emulator_control.inject("rows", path=KLINES, rows=[row])
    assert ex.fetch_ohlcv(BTC, "1m", since=since, limit=10) == [[since, 1.0, 2.0, 0.5, 1.5, 3.0]]

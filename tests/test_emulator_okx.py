"""Real ccxt against the emulator's OKX v5 dialect: markets, candles, trades, cursors, errors, rate limit,
faults."""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from ccxt_questdb_assets.emulator.dialects.okx import (
    CANDLES,
    HISTORY_CANDLES,
    HISTORY_TRADES,
    INSTRUMENTS,
    TIME,
    TRADES,
)
from ccxt_questdb_assets.emulator.market import DAY_MS, HOUR_MS, MINUTE_MS, SyntheticMarket, listing_spec
from ccxt_questdb_assets.exchange.client import build_exchange

NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000) + 42_424
OPEN_1M = NOW - NOW % MINUTE_MS
HIST = "publicGetMarketHistoryTrades"


def okx(emulator, *, types: list[str] | None = None, load: bool = True) -> Any:
    options = {"fetchMarkets": {"types": types}} if types else None
    ex = build_exchange("okx", base_url=emulator.base_url, async_=False, enable_rate_limit=False, options=options)
    if load:
        ex.load_markets()
    return ex


def set_budget(emulator, limit: int) -> None:
    body = json.dumps({"dialect": "okx", "weight_limit": limit, "reset_weight": True}).encode()
    req = urllib.request.Request(
        f"{emulator.base_url}/_emulator/config", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["limits"]["okx"] == limit


def as_tuples(trades: list[dict[str, Any]]) -> list[tuple]:
    return [(int(t["id"]), t["timestamp"], t["price"], t["amount"], t["side"]) for t in trades]


def data(response: dict[str, Any]) -> list[Any]:
    assert response["code"] == "0" and response["msg"] == ""
    return response["data"]


# ----------------------------------------------------------------------------- markets


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_load_markets_makes_one_request(emulator, emulator_control, mode):
    if mode == "sync":
        markets = okx(emulator, load=False).load_markets()
    else:

        async def run():
            ex = build_exchange("okx", base_url=emulator.base_url)
            try:
                return await ex.load_markets()
            finally:
                await ex.close()

        markets = asyncio.run(run())
    reqs = emulator_control.requests()
    assert [(r["method"], r["path"], r["params"]) for r in reqs] == [("GET", INSTRUMENTS, {"instType": "SPOT"})]
    assert sorted(markets) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    btc = markets["BTC/USDT"]
    assert (btc["id"], btc["type"], btc["spot"], btc["active"]) == ("BTC-USDT", "spot", True, True)
    assert btc["created"] == emulator.market.listing_ms("BTCUSDT")
    assert btc["precision"] == {"amount": 1e-05, "price": 0.01}
    assert markets["SOL/USDT"]["created"] == emulator.market.listing_ms("SOLUSDT")


def test_spot_and_swap_markets_take_two_requests(emulator, emulator_control):
    ex = okx(emulator, types=["spot", "swap"])
    assert sorted(r["params"]["instType"] for r in emulator_control.requests()) == ["SPOT", "SWAP"]
    for base, ct_val in (("BTC", 0.01), ("ETH", 0.1), ("SOL", 1.0)):
        m = ex.market(f"{base}/USDT:USDT")
        assert (m["id"], m["swap"], m["linear"], m["settle"]) == (f"{base}-USDT-SWAP", True, True, "USDT")
        assert m["contractSize"] == ct_val and m["precision"]["amount"] == 0.001
        assert m["created"] == emulator.market.listing_ms(f"{base}USDT")


def test_ccxt_default_market_types_are_all_answered(emulator, emulator_control):
    ex = okx(emulator, types=["spot", "future", "swap", "option"])  # ccxt's own default without our options
    reqs = emulator_control.requests(INSTRUMENTS)
    assert [(r["params"]["instType"], r["status"]) for r in reqs] == [
        ("SPOT", 200),
        ("FUTURES", 200),
        ("SWAP", 200),
        ("OPTION", 200),
        ("OPTION", 200),
    ]
    assert sorted(ex.markets) == ["BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", "ETH/USDT:USDT", "SOL/USDT", "SOL/USDT:USDT"]


def test_fetch_time_is_the_emulated_clock(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    assert okx(emulator, load=False).fetch_time() == NOW
    assert [r["path"] for r in emulator_control.requests()] == [TIME]


def test_markets_listed_at_runtime(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    listing = NOW - NOW % HOUR_MS - 3 * HOUR_MS
    emulator_control.list_market("NEW", "USDT", listing_ms=listing, base_price=5.0)
    emulator_control.list_market("OLD", "USDT", listing_ms=listing, status="HALT")
    emulator_control.list_market("SOON", "USDT", listing_ms=NOW + 2 * HOUR_MS)
    ex = okx(emulator, types=["spot", "swap"])
    new, halted, soon = ex.market("NEW/USDT"), ex.market("OLD/USDT"), ex.market("SOON/USDT")
    assert (new["id"], new["active"], halted["active"], soon["active"]) == ("NEW-USDT", True, False, False)
    assert (halted["info"]["state"], soon["info"]["state"]) == ("suspend", "preopen")
    assert ex.market("NEW/USDT:USDT")["id"] == "NEW-USDT-SWAP"
    truth = SyntheticMarket([listing_spec("NEW", "USDT", listing, base_price=5.0)])
    got = ex.fetch_ohlcv("NEW/USDT", "1m", since=listing - HOUR_MS, limit=300)
    assert got == truth.candles("NEWUSDT", "1m", listing - HOUR_MS, NOW + 1, now_ms=NOW)
    assert got[0][0] == listing and len(got) == 181


# ----------------------------------------------------------------------------- candles


def test_two_days_of_1m_paged_with_ccxt_params(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator)
    start = OPEN_1M - 2 * DAY_MS
    out, cursor, sizes = [], start, []
    while cursor <= NOW:
        page = ex.fetch_ohlcv("BTC/USDT", "1m", since=cursor, limit=300)
        out += page
        sizes.append(len(page))
        cursor += 300 * MINUTE_MS
    assert out == emulator.market.candles("BTCUSDT", "1m", start, NOW + 1, now_ms=NOW)
    assert len(out) == 2 * 1440 + 1 and sizes == [300] * 9 + [181]
    reqs = emulator_control.requests(HISTORY_CANDLES)
    assert len(reqs) == 10 and not emulator_control.requests(CANDLES)
    for i, req in enumerate(reqs):  # ccxt's window: (since - 1, since + limit * tf), both exclusive
        since = start + i * 300 * MINUTE_MS
        assert req["params"] == {
            "instId": "BTC-USDT",
            "bar": "1m",
            "limit": "300",
            "before": str(since - 1),
            "after": str(since + 300 * MINUTE_MS),
        }
        assert req["weight"] == 10


def test_swap_candles_serve_the_spot_series_with_volume_in_base(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator, types=["spot", "swap"])
    since = NOW - 10 * DAY_MS
    got = ex.fetch_ohlcv("ETH/USDT:USDT", "1h", since=since, limit=50)
    assert got == emulator.market.candles("ETHUSDT", "1h", since, since + 50 * HOUR_MS)
    rows = data(ex.publicGetMarketHistoryCandles({"instId": "ETH-USDT-SWAP", "bar": "1H", "limit": 5}))
    spot = data(ex.publicGetMarketHistoryCandles({"instId": "ETH-USDT", "bar": "1H", "limit": 5}))
    for row, spot_row in zip(rows, spot, strict=True):
        assert row[:5] == spot_row[:5] and row[6] == spot_row[5]  # volCcy (base) = the spot vol
        assert Decimal(row[5]) == Decimal(row[6]) / Decimal("0.1")  # vol in contracts of 0.1 ETH
        assert row[7] == spot_row[7]


def test_cursors_are_exclusive_newest_first_and_pages_capped(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator)
    t = OPEN_1M - DAY_MS

    def ts(params: dict[str, Any], path: str = HISTORY_CANDLES) -> list[int]:
        call = ex.publicGetMarketHistoryCandles if path == HISTORY_CANDLES else ex.publicGetMarketCandles
        rows = data(call({"instId": "BTC-USDT", **params}))
        assert all(len(r) == 9 and all(isinstance(v, str) for v in r) for r in rows)
        return [int(r[0]) for r in rows]

    assert ts({"after": t, "before": t - 5 * MINUTE_MS}) == [t - k * MINUTE_MS for k in range(1, 5)]
    assert ts({"after": t + 1, "before": t - MINUTE_MS}) == [t]
    assert ts({"after": t, "before": t - MINUTE_MS}) == []
    page = ts({"after": t, "limit": 1000})  # capped at 300, the newest 300 before `after`
    assert page == [t - k * MINUTE_MS for k in range(1, 301)]
    assert len(ts({"after": t})) == 100  # default
    assert ts({"before": t - 3 * DAY_MS, "limit": 5}) == [OPEN_1M - k * MINUTE_MS for k in range(5)]  # latest
    assert ts({"after": t, "before": t - 400 * MINUTE_MS, "limit": 300})[-1] == t - 300 * MINUTE_MS  # newest 300
    # /market/candles holds only the latest 1,440 bars
    oldest = OPEN_1M - 1439 * MINUTE_MS
    assert ts({"after": OPEN_1M - 1400 * MINUTE_MS, "limit": 300}, CANDLES) == [
        OPEN_1M - k * MINUTE_MS for k in range(1401, 1440)
    ]
    assert ts({"after": oldest}, CANDLES) == []
    assert ts({"after": oldest}) == [oldest - k * MINUTE_MS for k in range(1, 101)]
    assert [r["weight"] for r in emulator_control.requests(CANDLES)] == [5, 5]


def test_the_open_bar_is_unconfirmed_and_cut_at_now(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator)
    rows = data(ex.publicGetMarketCandles({"instId": "SOL-USDT", "limit": 3}))
    assert [int(r[0]) for r in rows] == [OPEN_1M, OPEN_1M - MINUTE_MS, OPEN_1M - 2 * MINUTE_MS]
    assert [r[8] for r in rows] == ["0", "1", "1"]
    got = ex.fetch_ohlcv("SOL/USDT", "1m", limit=3)
    assert emulator_control.requests()[-1]["path"] == CANDLES
    assert got == emulator.market.candles("SOLUSDT", "1m", OPEN_1M - 2 * MINUTE_MS, NOW + 1, now_ms=NOW)
    hour = ex.fetch_ohlcv("SOL/USDT", "1h", limit=1)[-1]
    emulator_control.freeze_clock(NOW + 20 * MINUTE_MS)
    later = ex.fetch_ohlcv("SOL/USDT", "1h", limit=1)[-1]
    assert later[0] == hour[0] == NOW - NOW % HOUR_MS and later[5] > hour[5]
    assert later == emulator.market.candles("SOLUSDT", "1h", later[0], later[0] + 1, now_ms=NOW + 20 * MINUTE_MS)[0]
    day = data(ex.publicGetMarketHistoryCandles({"instId": "SOL-USDT", "bar": "1Dutc", "limit": 2}))
    assert [int(r[0]) for r in day] == [NOW - NOW % DAY_MS, NOW - NOW % DAY_MS - DAY_MS]
    assert [r[8] for r in day] == ["0", "1"]


def test_before_listing_and_outages_are_empty(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator)
    market = emulator.market
    listing = market.listing_ms("SOLUSDT")
    assert ex.fetch_ohlcv("SOL/USDT", "1m", since=listing - 400 * MINUTE_MS, limit=300) == []
    got = ex.fetch_ohlcv("SOL/USDT", "1m", since=listing - 100 * MINUTE_MS, limit=300)
    assert got[0][0] == listing and len(got) == 200
    assert got == market.candles("SOLUSDT", "1m", listing - 100 * MINUTE_MS, listing + 200 * MINUTE_MS)
    ((out_start, out_end),) = market.outages("BTCUSDT")
    got = ex.fetch_ohlcv("BTC/USDT", "1m", since=out_start - 50 * MINUTE_MS, limit=300)
    assert len(got) == 50 + 300 - 50 - (out_end - out_start) // MINUTE_MS
    assert got == market.candles("BTCUSDT", "1m", out_start - 50 * MINUTE_MS, out_start + 250 * MINUTE_MS)


# ----------------------------------------------------------------------------- trades


def _burst_window(market, symbol: str, around: int) -> tuple[int, int]:
    """[start, end) of 20 minutes starting a little before a run of >= 4 trades sharing one millisecond."""
    tr = market.trades(symbol, around, around + 2 * HOUR_MS)
    for ts, grp in itertools.groupby(tr, key=lambda t: t.timestamp):
        if len(list(grp)) >= 4:
            start = ts - ts % MINUTE_MS - 3 * MINUTE_MS
            return start, start + 20 * MINUTE_MS
    raise AssertionError("no burst found")


def test_history_trades_paged_by_trade_id_through_bursts(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator)
    market = emulator.market
    start, end = _burst_window(market, "BTCUSDT", NOW - 30 * DAY_MS)
    pages = [ex.fetch_trades("BTC/USDT", limit=7, params={"method": HIST, "type": "2", "after": end})]
    while pages[-1] and pages[-1][0]["timestamp"] >= start:
        oldest_id = min(int(t["id"]) for t in pages[-1])
        pages.append(ex.fetch_trades("BTC/USDT", limit=7, params={"method": HIST, "after": oldest_id}))
    got = sorted((t for p in pages for t in p if t["timestamp"] >= start), key=lambda t: int(t["id"]))
    want = market.trades("BTCUSDT", start, end)
    assert as_tuples(got) == [tuple(t) for t in want]
    assert all(isinstance(t["id"], str) for t in got)
    assert all(len(p) == 7 for p in pages)
    # same-millisecond trades were split by page edges and still none was lost
    assert any(a[0]["timestamp"] == b[-1]["timestamp"] for a, b in itertools.pairwise(pages))
    reqs = emulator_control.requests(HISTORY_TRADES)
    assert reqs[0]["params"] == {"instId": "BTC-USDT", "limit": "7", "type": "2", "after": str(end)}
    assert all("type" not in r["params"] for r in reqs[1:])
    assert all(r["weight"] == 10 for r in reqs)


def test_history_trades_cursors_and_caps(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator)
    market = emulator.market
    start, _ = _burst_window(market, "ETHUSDT", NOW - 10 * DAY_MS)
    tr = market.trades("ETHUSDT", start, start + 10 * MINUTE_MS)
    burst_ts = next(ts for ts, g in itertools.groupby(tr, key=lambda t: t.timestamp) if len(list(g)) >= 4)
    x = tr[len(tr) // 2].id

    def rows(params: dict[str, Any]) -> list[dict[str, str]]:
        out = data(ex.publicGetMarketHistoryTrades({"instId": "ETH-USDT", **params}))
        assert all(list(r) == ["instId", "side", "sz", "px", "source", "tradeId", "ts"] for r in out)
        return out

    by_id = rows({"after": x, "limit": 5})
    assert [int(r["tradeId"]) for r in by_id] == [x - k for k in range(1, 6)]  # exclusive, newest first
    by_ts = rows({"type": "2", "after": burst_ts, "limit": 5})
    assert [int(r["ts"]) for r in by_ts] == [t.timestamp for t in tr if t.timestamp < burst_ts][::-1][:5]
    assert [int(r["tradeId"]) for r in rows({"after": x, "before": x - 4})] == [x - 1, x - 2, x - 3]
    latest = rows({"before": x, "limit": 3})  # `before` alone: the newest trades
    assert [int(r["tradeId"]) for r in latest] == [
        t.id for t in market.trades("ETHUSDT", NOW - HOUR_MS, NOW + 1, now_ms=NOW)
    ][::-1][:3]
    assert len(rows({"after": x, "limit": 1000})) == 100 and len(rows({"after": x})) == 100
    old = market.trades("ETHUSDT", NOW - 100 * DAY_MS, NOW - 100 * DAY_MS + HOUR_MS)[0].id
    assert rows({"after": old}) == []  # history-trades holds the last 3 months
    assert rows({"type": "2", "after": NOW - 91 * DAY_MS}) == []


def test_recent_trades_endpoint_and_swap_sizes(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator, types=["spot", "swap"])
    market = emulator.market
    truth = market.trades("ETHUSDT", NOW - 4 * HOUR_MS, NOW + 1, now_ms=NOW)
    got = ex.fetch_trades("ETH/USDT", limit=600)
    assert as_tuples(got) == [tuple(t) for t in truth[-500:]]  # capped at 500, the latest
    assert emulator_control.requests()[-1]["path"] == TRADES and emulator_control.requests()[-1]["weight"] == 2
    assert len(ex.fetch_trades("ETH/USDT")) == 100
    swap = ex.fetch_trades("ETH/USDT:USDT", limit=50)
    spec = market.spec("ETHUSDT")
    lots = market.trades_array("ETHUSDT", NOW - 4 * HOUR_MS, NOW + 1, now_ms=NOW).qty[-50:]
    assert [t["amount"] for t in swap] == [float(Decimal(int(q)) / 10 ** (spec.qty_decimals - 1)) for q in lots]
    assert [(int(t["id"]), t["price"]) for t in swap] == [(t.id, t.price) for t in truth[-50:]]


# ----------------------------------------------------------------------------- errors, rate limit, faults

ERRORS: list[tuple[str, str, dict[str, Any], type[Exception], int, str]] = [
    ("unknown instId", "publicGetMarketHistoryCandles", {"instId": "NOPE-USDT"}, ccxt.BadSymbol, 200, "51001"),
    ("missing instId", "publicGetMarketCandles", {}, ccxt.BadRequest, 400, "50014"),
    ("bad bar", "publicGetMarketHistoryCandles", {"instId": "BTC-USDT", "bar": "7m"}, ccxt.BadRequest, 400, "51000"),
    ("UTC+8 bar", "publicGetMarketHistoryCandles", {"instId": "BTC-USDT", "bar": "1D"}, ccxt.BadRequest, 400, "51000"),
    (
        "bad after",
        "publicGetMarketHistoryCandles",
        {"instId": "BTC-USDT", "after": "abc"},
        ccxt.BadRequest,
        400,
        "51000",
    ),
    ("limit 0", "publicGetMarketHistoryTrades", {"instId": "BTC-USDT", "limit": 0}, ccxt.BadRequest, 400, "51000"),
    ("bad type", "publicGetMarketHistoryTrades", {"instId": "BTC-USDT", "type": "3"}, ccxt.BadRequest, 400, "51000"),
    ("unknown swap", "publicGetMarketTrades", {"instId": "BTC-USDC-SWAP"}, ccxt.BadSymbol, 200, "51001"),
    ("no instType", "publicGetPublicInstruments", {}, ccxt.BadRequest, 400, "50014"),
    ("bad instType", "publicGetPublicInstruments", {"instType": "FOO"}, ccxt.BadRequest, 400, "51000"),
]


@pytest.mark.parametrize(("name", "method", "params", "exc", "status", "code"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_map_to_ccxt_exceptions(emulator, emulator_control, name, method, params, exc, status, code):
    ex = okx(emulator, load=False)
    with pytest.raises(exc) as info:
        getattr(ex, method)(params)
    assert type(info.value) is exc
    assert emulator_control.requests()[-1]["status"] == status
    assert json.loads(ex.last_http_response)["code"] == code


def test_budget_exhausted_answers_429_with_code_50011(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator)
    set_budget(emulator, 30)  # three history-candles requests (weight 10) per 2 s
    with pytest.raises(ccxt.RateLimitExceeded) as info:
        for _ in range(60):
            ex.fetch_ohlcv("BTC/USDT", "1m", since=NOW - DAY_MS, limit=5)
    assert type(info.value) is ccxt.RateLimitExceeded and isinstance(info.value, ccxt.NetworkError)
    last = emulator_control.requests(HISTORY_CANDLES)[-1]
    assert last["status"] == 429 and len(emulator_control.requests(HISTORY_CANDLES)) >= 4
    assert json.loads(ex.last_http_response) == {"msg": "Too Many Requests", "code": "50011"}
    assert "retry-after" not in {k.lower() for k in ex.last_response_headers}


FAULTS: list[tuple[str, type[Exception]]] = [
    ("429", ccxt.RateLimitExceeded),
    ("418", ccxt.RateLimitExceeded),
    ("403", ccxt.ExchangeNotAvailable),
    ("500", ccxt.ExchangeNotAvailable),
    ("502", ccxt.ExchangeNotAvailable),
    ("503", ccxt.OnMaintenance),
    ("504", ccxt.RequestTimeout),
]


@pytest.mark.parametrize(("kind", "exc"), FAULTS, ids=[f[0] for f in FAULTS])
def test_error_faults_raise_the_expected_ccxt_exception(emulator, emulator_control, kind, exc):
    ex = okx(emulator)
    emulator_control.inject(kind, path=HISTORY_TRADES, retry_after=3)
    with pytest.raises(exc) as info:
        ex.fetch_trades("BTC/USDT", params={"method": HIST})
    assert type(info.value) is exc
    assert emulator_control.requests(HISTORY_TRADES)[-1]["status"] == int(kind)
    if kind == "429":
        assert "retry-after" not in {k.lower() for k in ex.last_response_headers}


def test_data_faults_apply_to_the_rows(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    ex = okx(emulator)
    since = NOW - DAY_MS

    def candles():
        return ex.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=10)

    clean = candles()
    emulator_control.inject("empty_page", path=HISTORY_CANDLES)
    assert candles() == []
    emulator_control.inject("out_of_order_rows", path=HISTORY_CANDLES)
    assert candles() == clean
    emulator_control.inject("duplicate_rows", path=HISTORY_CANDLES)
    dup = candles()  # newest first: the 6th newest and the oldest row doubled; ccxt sorts, keeps the first 10
    assert dup == [clean[0], *clean[:5], clean[4], *clean[5:8]]

    def trade_ids():
        return [
            int(t["id"])
            for t in ex.fetch_trades("BTC/USDT", limit=10, params={"method": HIST, "type": "2", "after": since})
        ]

    a = trade_ids()
    emulator_control.inject("duplicate_rows", path=HISTORY_TRADES)
    assert trade_ids() == [*a[1:5], a[4], *a[5:]]  # duplicates kept; without since ccxt keeps the last 10
    row = ["1717200000000", "1", "2", "0.5", "1.5", "3", "4.5", "4.5", "1"]
    emulator_control.inject("rows", path=HISTORY_CANDLES, rows={"code": "0", "data": [row], "msg": ""})
    assert candles() == [[1717200000000, 1.0, 2.0, 0.5, 1.5, 3.0]]  # the whole answer replaced
    assert candles() == clean

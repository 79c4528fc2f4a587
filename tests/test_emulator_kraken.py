"""Real ccxt against the emulator's Kraken spot dialect: markets, OHLC window, trades cursor, errors,
rate limits and faults (see docs/exchanges/kraken.md)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import ccxt
import pytest

from ccxt_questdb_assets.emulator.market import DAY_MS, HOUR_MS, MINUTE_MS, SyntheticMarket, listing_spec
from ccxt_questdb_assets.exchange.client import build_exchange

ASSETS, PAIRS, OHLC, TRADES, TIME = (f"/0/public/{p}" for p in ("Assets", "AssetPairs", "OHLC", "Trades", "Time"))
NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000) + 42_424
OPEN_1M = NOW - NOW % MINUTE_MS


def raw(emulator, path: str, **loads: Any) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(emulator.base_url + path, timeout=10) as resp:
            return resp.status, json.loads(resp.read(), **loads)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def kraken_budget(emulator, limit: int) -> None:
    body = json.dumps({"dialect": "kraken", "weight_limit": limit, "reset_weight": True}).encode()
    req = urllib.request.Request(
        emulator.base_url + "/_emulator/config", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["weight_limit"] == limit


@pytest.fixture
def kraken(emulator, emulator_control) -> Iterator[Any]:
    """A sync ccxt kraken on the emulator with markets loaded, the clock frozen at NOW, a large budget."""
    emulator_control.freeze_clock(NOW)
    kraken_budget(emulator, 10_000)
    ex = build_exchange("kraken", base_url=emulator.base_url, async_=False, enable_rate_limit=False)
    ex.load_markets()
    emulator_control.clear_requests()
    yield ex


def tuples(trades: list[dict[str, Any]]) -> list[tuple]:
    return [(int(t["id"]), t["timestamp"], t["price"], t["amount"], t["side"]) for t in trades]


# ----------------------------------------------------------------------------- markets


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_load_markets_asks_assets_then_pairs(emulator, emulator_control, mode):
    ex = build_exchange(
        "kraken",
        base_url=emulator.base_url,
        async_=(mode == "async"),
        enable_rate_limit=False,
        config={"has": {"fetchCurrencies": True}},
    )  # ccxt's own default (the project's is off)
    if mode == "sync":
        markets = ex.load_markets()
    else:

        async def run() -> Any:
            try:
                return await ex.load_markets()
            finally:
                await ex.close()

        markets = asyncio.run(run())
    assert [(r["path"], r["params"]) for r in emulator_control.requests()] == [(ASSETS, {}), (PAIRS, {})]
    assert sorted(markets) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert [markets[s]["id"] for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")] == ["XBTUSDT", "ETHUSDT", "SOLUSDT"]
    btc = markets["BTC/USDT"]
    assert (btc["altname"], btc["wsId"], btc["info"]["base"], btc["info"]["quote"]) == (
        "XBTUSDT",
        "XBT/USDT",
        "XXBT",
        "USDT",
    )
    assert btc["active"] and btc["spot"] and btc["margin"] and btc["taker"] == 0.004 and btc["maker"] == 0.0025
    for symbol, market in markets.items():
        spec = emulator.market.spec(symbol)
        assert market["precision"] == {"amount": 10.0**-spec.qty_decimals, "price": 10.0**-spec.price_decimals}
    assert ex.currencies["BTC"]["id"] == "XXBT" and ex.options["marketsByAltname"]["XBTUSDT"]["symbol"] == "BTC/USDT"


def test_markets_without_currencies_take_one_request(emulator, emulator_control):
    ex = build_exchange("kraken", base_url=emulator.base_url, async_=False)  # the project's default
    assert sorted(ex.load_markets()) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert [r["path"] for r in emulator_control.requests()] == [PAIRS]
    assert ex.markets["BTC/USDT"]["precision"]["amount"] == 1e-05


def test_runtime_markets_get_kraken_names(emulator, emulator_control):
    emulator_control.list_market("NEW", "USDT")
    emulator_control.list_market("DOGE", "EUR", status="HALT")
    ex = build_exchange("kraken", base_url=emulator.base_url, async_=False, enable_rate_limit=False)
    markets = ex.load_markets()
    assert (markets["NEW/USDT"]["id"], markets["NEW/USDT"]["wsId"], markets["NEW/USDT"]["active"]) == (
        "NEWUSDT",
        "NEW/USDT",
        True,
    )
    doge = markets["DOGE/EUR"]
    assert (doge["id"], doge["altname"], doge["wsId"], doge["active"]) == ("XXDGZEUR", "XDGEUR", "XDG/EUR", False)
    assert doge["info"]["status"] == "cancel_only"
    status, body = raw(emulator, f"{PAIRS}?pair=XDGEUR,XBTUSDT&info=leverage")
    assert status == 200 and list(body["result"]) == ["XXDGZEUR", "XBTUSDT"]
    assert body["result"]["XBTUSDT"] == {"leverage_buy": [2, 3, 4, 5], "leverage_sell": [2, 3, 4, 5]}
    status, body = raw(emulator, f"{ASSETS}?asset=XBT,ZEUR,DOGE,NEW")
    assert status == 200 and list(body["result"]) == ["XXBT", "ZEUR", "XXDG", "NEW"]
    assert body["result"]["XXDG"]["altname"] == "XDG" and body["result"]["NEW"]["decimals"] >= 3
    status, body = raw(emulator, f"{OHLC}?pair=XDGEUR&interval=60")  # an altname; the answer keys the pair id
    assert status == 200 and list(body["result"]) == ["XXDGZEUR", "last"] and body["result"]["XXDGZEUR"]


def test_server_time(kraken):
    assert kraken.fetch_time() == NOW // 1000 * 1000


# ----------------------------------------------------------------------------- OHLC


def test_ohlc_serves_the_latest_720_bars_with_the_open_bar(kraken, emulator, emulator_control):
    first = OPEN_1M - 719 * MINUTE_MS
    truth = emulator.market.candles("BTCUSDT", "1m", first, NOW + 1, now_ms=NOW)
    assert len(truth) == 720
    page = kraken.fetch_ohlcv("BTC/USDT", "1m", since=first)
    assert page == truth
    assert page[-1][0] == OPEN_1M  # the open bar, cut at now
    first_trade = emulator.market.trades("BTCUSDT", OPEN_1M, OPEN_1M + MINUTE_MS)[0]
    emulator_control.freeze_clock(first_trade.timestamp)  # the open bar holds the trades up to now only
    assert kraken.fetch_ohlcv("BTC/USDT", "1m", since=OPEN_1M) == [
        [OPEN_1M, *[first_trade.price] * 4, first_trade.amount]
    ]
    emulator_control.freeze_clock(NOW)
    # two days back: still the same 720 bars, older ones cannot be had
    assert kraken.fetch_ohlcv("BTC/USDT", "1m", since=NOW - 2 * DAY_MS) == truth
    assert kraken.fetch_ohlcv("BTC/USDT", "1m") == truth
    params = [r["params"] for r in emulator_control.requests(OHLC)]
    assert params == [
        {"pair": "XBTUSDT", "interval": "1", "since": str(first // 1000 - 60)},
        {"pair": "XBTUSDT", "interval": "1", "since": str(OPEN_1M // 1000 - 60)},
        {"pair": "XBTUSDT", "interval": "1", "since": str((NOW - 2 * DAY_MS) // 1000 - 60)},
        {"pair": "XBTUSDT", "interval": "1"},
    ]


@pytest.mark.parametrize(("timeframe", "minutes"), [("5m", 5), ("15m", 15), ("1h", 60), ("4h", 240)])
def test_ohlc_two_days_in_one_request(kraken, emulator, emulator_control, timeframe, minutes):
    start = NOW - 2 * DAY_MS
    start -= start % (minutes * MINUTE_MS)
    truth = emulator.market.candles("BTCUSDT", timeframe, start, NOW + 1, now_ms=NOW)
    assert kraken.fetch_ohlcv("BTC/USDT", timeframe, since=start) == truth
    assert len(emulator_control.requests(OHLC)) == 1


def test_ohlc_since_is_exclusive_and_last_is_the_last_committed_bar(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    t = OPEN_1M - 10 * MINUTE_MS
    status, body = raw(emulator, f"{OHLC}?pair=XBTUSDT&interval=1&since={t // 1000}")
    rows = body["result"]["XBTUSDT"]
    assert status == 200 and rows[0][0] * 1000 == t + MINUTE_MS and len(rows) == 10
    assert body["result"]["last"] * 1000 == OPEN_1M - MINUTE_MS
    _, body = raw(emulator, f"{OHLC}?pair=XBTUSDT&interval=1&since={t // 1000 - 1}")
    assert body["result"]["XBTUSDT"][0][0] * 1000 == t
    _, body = raw(emulator, f"{OHLC}?pair=XBTUSDT&interval=1&since={NOW // 1000 + 3600}")
    assert [r[0] * 1000 for r in body["result"]["XBTUSDT"]] == [OPEN_1M]  # the open bar whatever since says
    row = rows[0]
    assert isinstance(row[0], int) and isinstance(row[7], int) and all(isinstance(v, str) for v in row[1:7])
    assert len(row[6].split(".")[1]) == 8 and len(row[1].split(".")[1]) == 2
    assert float(row[3]) <= float(row[5]) <= float(row[2])  # vwap within the bar


def test_ohlc_weeks_are_epoch_aligned_aggregates_of_days(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    status, body = raw(emulator, f"{OHLC}?pair=SOLUSDT&interval=10080")
    rows = body["result"]["SOLUSDT"]
    week, listing = 7 * DAY_MS, emulator.market.listing_ms("SOLUSDT")
    assert status == 200 and all(r[0] * 1000 % week == 0 for r in rows)  # Thursdays 00:00 UTC
    first, last = listing - listing % week, NOW - NOW % week
    assert rows[0][0] * 1000 == first and len(rows) == (last - first) // week + 1 < 720
    days = emulator.market.candles("SOLUSDT", "1d", rows[-3][0] * 1000, rows[-2][0] * 1000 + week, now_ms=NOW)
    assert len(days) == 14
    for row, chunk in ((rows[-3], days[:7]), (rows[-2], days[7:])):
        assert [float(v) for v in row[1:5]] == [
            chunk[0][1],
            max(d[2] for d in chunk),
            min(d[3] for d in chunk),
            chunk[-1][4],
        ]
    assert rows[-1][0] * 1000 == NOW - NOW % week


def test_ohlc_and_trades_start_at_listing(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    listing = NOW - NOW % HOUR_MS - 2 * HOUR_MS
    emulator_control.list_market("NEW", "USDT", listing_ms=listing)
    truth = SyntheticMarket([listing_spec("NEW", "USDT", listing)])
    ex = build_exchange("kraken", base_url=emulator.base_url, async_=False, enable_rate_limit=False)
    candles = ex.fetch_ohlcv("NEW/USDT", "1m", since=listing - DAY_MS)
    assert candles == truth.candles("NEWUSDT", "1m", listing, NOW + 1, now_ms=NOW) and candles[0][0] == listing
    trades = ex.fetch_trades("NEW/USDT", since=0, limit=5)
    assert tuples(trades) == list(truth.trades("NEWUSDT", listing, NOW + 1, now_ms=NOW))[:5]
    assert trades[0]["id"] == "0" and trades[0]["timestamp"] >= listing
    emulator_control.list_market("LATE", "USDT", listing_ms=NOW + 2 * HOUR_MS)  # nothing before listing
    ex.load_markets(reload=True)
    assert ex.fetch_ohlcv("LATE/USDT", "1m", since=NOW - HOUR_MS) == [] and ex.fetch_trades("LATE/USDT") == []
    assert raw(emulator, f"{TRADES}?pair=LATEUSDT&since=0")[1]["result"] == {"LATEUSDT": [], "last": "0"}


# ----------------------------------------------------------------------------- trades


def page_trades(ex, symbol: str, start: int, end: int) -> tuple[list[dict[str, Any]], int]:
    """[start, end) by Kraken's cursor alone: since=start_ms*1e6-1 (ns, exclusive), then the ``last`` of each
    page; ccxt is given no since, so it drops nothing and a page of fewer than 1000 trades is the last."""
    out: list[dict[str, Any]] = []
    cursor, requests = str(start * 1_000_000 - 1), 0
    while True:
        page = ex.fetch_trades(symbol, None, 1000, {"since": cursor})
        requests += 1
        out += [t for t in page if t["timestamp"] < end]
        if len(page) < 1000 or page[-1]["timestamp"] >= end:
            return out, requests
        cursor = next(t["info"][7] for t in page if len(t["info"]) == 8)  # ccxt appended result.last to it


def test_trades_cursor_pages_two_days_into_exact_1m_candles(kraken, emulator, emulator_control):
    end = OPEN_1M - 2 * HOUR_MS
    start = end - 2 * DAY_MS
    got, requests = page_trades(kraken, "BTC/USDT", start, end)
    truth = emulator.market.trades("BTCUSDT", start, end, now_ms=NOW)
    assert tuples(got) == list(truth) and requests == -(-len(truth) // 1000)
    stamps = [t.timestamp for t in truth]
    assert len(stamps) - len(set(stamps)) > 100  # many trades share a millisecond
    # Kraken's 1m candles end 720 bars back: older 1m history is rebuilt from the trades
    bars: dict[int, list[Any]] = {}
    for t in got:
        lots = round(t["amount"] * 1e5)
        b = bars.setdefault(t["timestamp"] - t["timestamp"] % MINUTE_MS, [t["price"], t["price"], t["price"], 0, 0])
        b[1], b[2], b[3], b[4] = max(b[1], t["price"]), min(b[2], t["price"]), t["price"], b[4] + lots
    rebuilt = [[ts, o, h, lo, c, v / 1e5] for ts, (o, h, lo, c, v) in sorted(bars.items())]
    assert rebuilt == emulator.market.candles("BTCUSDT", "1m", start, end)
    assert emulator_control.requests(TRADES)[0]["params"] == {
        "pair": "XBTUSDT",
        "count": "1000",
        "since": str(start * 1_000_000 - 1),
    }
    # ccxt's own since is sent in whole seconds (and filtered by ccxt): the same first page here
    assert tuples(kraken.fetch_trades("BTC/USDT", since=start, limit=1000)) == tuples(got[:1000])
    assert emulator_control.requests(TRADES)[-1]["params"] == {
        "pair": "XBTUSDT",
        "since": str(start // 1000),
        "count": "1000",
    }


def test_trades_cursor_is_exclusive_inside_one_millisecond(kraken, emulator):
    truth = emulator.market.trades("BTCUSDT", NOW - DAY_MS, NOW - HOUR_MS, now_ms=NOW)
    burst = next(i for i in range(len(truth) - 3) if truth[i].timestamp == truth[i + 3].timestamp)
    ms = truth[burst].timestamp
    while truth[burst - 1].timestamp == ms:
        burst -= 1
    first = kraken.fetch_trades("BTC/USDT", None, 1, {"since": str(ms * 1_000_000)})  # a cursor at the ms itself
    assert tuples(first) == [truth[burst]]
    seen = list(first)
    for _ in range(5):  # one trade a page, by cursor, through the burst
        seen += kraken.fetch_trades("BTC/USDT", None, 1, {"since": seen[-1]["info"][7]})
    assert tuples(seen) == list(truth[burst : burst + 6])
    cursors = [int(t["info"][7]) for t in seen]
    assert cursors == sorted(set(cursors)) and cursors[0] == ms * 1_000_000 + 500_000
    assert [c - ms * 1_000_000 for c in cursors[:4]] == [500_000, 500_100, 500_200, 500_300]
    # a seconds since covers its whole second, the cursor of a trade excludes it
    assert kraken.fetch_trades("BTC/USDT", None, 1, {"since": str(cursors[1])})[0]["id"] == seen[2]["id"]
    second = ms - ms % 1000
    want = next(t for t in truth if t.timestamp >= second)
    assert tuples(kraken.fetch_trades("BTC/USDT", None, 1, {"since": str(second // 1000)})) == [want]


def test_trades_without_since_are_the_latest_and_share_cursors(kraken, emulator, emulator_control):
    latest = kraken.fetch_trades("BTC/USDT", limit=50)
    truth = emulator.market.trades("BTCUSDT", NOW - DAY_MS, NOW + 1, now_ms=NOW)
    assert tuples(latest) == list(truth[-50:]) and latest[-1]["timestamp"] <= NOW
    status, body = raw(emulator, f"{TRADES}?pair=XBTUSDT&count=7", parse_float=str)
    rows = body["result"]["XBTUSDT"]
    assert status == 200 and len(rows) == 7 and body["result"]["last"] == rows[-1][2].replace(".", "") + "00"
    assert [len(r[2].split(".")[1]) for r in rows] == [7] * 7
    since = rows[0][2].split(".")[0]
    forward = raw(emulator, f"{TRADES}?pair=XBTUSDT&since={since}", parse_float=str)[1]["result"]["XBTUSDT"]
    assert forward[-7:] == rows  # the same rows and times, whichever way they are paged
    assert [type(v) for v in rows[0]] == [str, str, str, str, str, str, int] and rows[0][3] in "bs"
    assert len(rows[0][0].split(".")[1]) == 5 and len(rows[0][1].split(".")[1]) == 8
    assert raw(emulator, f"{TRADES}?pair=XBTUSDT&since={NOW // 1000 + 60}")[1] == {
        "error": [],
        "result": {"XBTUSDT": [], "last": str((NOW // 1000 + 60) * 10**9)},
    }


def test_trades_since_of_eleven_digits_or_more_is_nanoseconds(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    rows = raw(emulator, f"{TRADES}?pair=SOLUSDT&count=2&since={NOW}")[1]["result"]["SOLUSDT"]  # ms: read as ns
    assert [r[6] for r in rows] == [0, 1]  # 1970 + 29 minutes: the pair's first trades
    rows = raw(emulator, f"{TRADES}?pair=SOLUSDT&count=2&since={NOW // 1000 - 60}.5")[1]["result"]["SOLUSDT"]
    assert [int(float(r[2]) * 1000) for r in rows] == [
        t.timestamp for t in emulator.market.trades("SOLUSDT", NOW - NOW % 1000 - 59_500, NOW, now_ms=NOW)[:2]
    ]


def test_trades_count_caps_at_1000(kraken, emulator, emulator_control):
    assert len(kraken.fetch_trades("SOL/USDT", since=NOW - DAY_MS, limit=5000)) == 1000
    assert len(kraken.fetch_trades("SOL/USDT", since=NOW - DAY_MS)) == 1000
    params = [r["params"] for r in emulator_control.requests(TRADES)]
    assert params[0]["count"] == "5000" and "count" not in params[1]


# ----------------------------------------------------------------------------- errors, limits, faults


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (lambda ex: ex.publicGetOHLC({"pair": "NOPE"}), ccxt.ExchangeError),
        (lambda ex: ex.publicGetTrades({"pair": "NOPE"}), ccxt.ExchangeError),
        (lambda ex: ex.publicGetOHLC({}), ccxt.BadRequest),
        (lambda ex: ex.publicGetOHLC({"pair": "XBTUSDT", "interval": 2}), ccxt.BadRequest),
        (lambda ex: ex.publicGetTrades({"pair": "XBTUSDT", "since": "abc"}), ccxt.BadRequest),
        (lambda ex: ex.publicGetTrades({"pair": "XBTUSDT", "count": 0}), ccxt.BadRequest),
        (lambda ex: ex.publicGetAssets({"asset": "NOPE"}), ccxt.BadSymbol),
        (lambda ex: ex.publicGetAssetPairs({"pair": "NOPE"}), ccxt.ExchangeError),
    ],
)
def test_errors_map_to_ccxt_classes(kraken, emulator_control, call, exc):
    with pytest.raises(exc) as info:
        call(kraken)
    if exc is ccxt.ExchangeError:  # "EQuery:Unknown asset pair" is not in ccxt's table: plain ExchangeError
        assert type(info.value) is ccxt.ExchangeError and "EQuery:Unknown asset pair" in str(info.value)
    assert [r["status"] for r in emulator_control.requests()] == [200]


def test_budget_answers_too_many_requests(kraken, emulator, emulator_control):
    kraken_budget(emulator, 2)
    kraken.fetch_time()
    kraken.fetch_time()
    with pytest.raises(ccxt.DDoSProtection, match="EGeneral:Too many requests"):
        kraken.fetch_ohlcv("BTC/USDT", "1h")
    assert [r["status"] for r in emulator_control.requests()] == [200, 200, 200]
    assert kraken.last_response_headers.get("Retry-After") is None
    status, body = raw(emulator, f"{TIME}")
    assert (status, body) == (200, {"error": ["EGeneral:Too many requests"], "result": {}})


@pytest.mark.parametrize(
    ("kind", "exc"),
    [
        ("429", ccxt.DDoSProtection),
        ("418", ccxt.DDoSProtection),
        ("403", ccxt.ExchangeNotAvailable),
        ("500", ccxt.ExchangeNotAvailable),
        ("502", ccxt.ExchangeNotAvailable),
        ("503", ccxt.ExchangeNotAvailable),
        ("504", ccxt.RequestTimeout),
    ],
)
def test_error_faults(kraken, emulator_control, kind, exc):
    emulator_control.inject(kind, path=TRADES)
    with pytest.raises(exc):
        kraken.fetch_trades("BTC/USDT", since=NOW - HOUR_MS, limit=10)
    assert [(r["status"], r["fault"]) for r in emulator_control.requests()] == [(int(kind), kind)]
    assert len(kraken.fetch_trades("BTC/USDT", since=NOW - HOUR_MS, limit=10)) == 10


def test_data_faults_apply_to_the_rows(kraken, emulator, emulator_control):
    since = NOW - HOUR_MS
    emulator_control.inject("empty_page", path=OHLC)
    assert kraken.fetch_ohlcv("BTC/USDT", "1m", since=since) == []
    ids = [t["id"] for t in kraken.fetch_trades("BTC/USDT", since=since, limit=12)]
    emulator_control.inject("duplicate_rows", path=TRADES)
    dup = kraken.fetch_trades("BTC/USDT", since=since, limit=12)  # 14 rows served, ccxt keeps the first 12
    assert [t["id"] for t in dup] == ids[:7] + [ids[6]] + ids[7:11]
    candles = kraken.fetch_ohlcv("BTC/USDT", "1m", since=since)
    emulator_control.inject("duplicate_rows", path=OHLC)
    doubled = kraken.fetch_ohlcv("BTC/USDT", "1m", since=since)
    assert len(doubled) == len(candles) + 2 and sorted(set(map(tuple, doubled))) == sorted(map(tuple, candles))
    bad = {"error": [], "result": {"XBTUSDT": [["1", "1", 1717243200.5, "b", "m", "", 1]], "last": "5"}}
    emulator_control.inject("rows", path=TRADES, rows=bad)
    assert tuples(kraken.fetch_trades("BTC/USDT", limit=1)) == [(1, 1717243200500, 1.0, 1.0, "buy")]

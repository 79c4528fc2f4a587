"""The emulator lists a new market at runtime (control API), as an exchange's new listing looks to ccxt."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from ccxt_questdb_assets.emulator.market import HOUR_MS, MINUTE_MS, SyntheticMarket, listing_spec
from ccxt_questdb_assets.exchange.client import build_exchange

NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000) + 30_123


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def ccxt_markets(base_url: str) -> dict:
    ex = build_exchange("binance", base_url=base_url, async_=False)
    return ex.load_markets(reload=True)


def test_listed_market_appears_in_exchange_info_and_ccxt_then_reset_delists_it(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    entry = emulator_control.list_market("NEW", "USDT", base_price=3.5)
    assert entry["symbol"] == "NEWUSDT" and entry["ccxt_symbol"] == "NEW/USDT" and entry["status"] == "TRADING"
    assert entry["listing_ms"] == NOW - NOW % HOUR_MS  # listed from the current hour
    emulator_control.list_market("OLD", "USDT", listing_ms=NOW - 48 * HOUR_MS, status="BREAK")

    info = get_json(f"{emulator.base_url}/api/v3/exchangeInfo")
    by_symbol = {s["symbol"]: s for s in info["symbols"]}
    assert set(by_symbol) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "NEWUSDT", "OLDUSDT"}
    assert by_symbol["NEWUSDT"]["status"] == "TRADING" and by_symbol["OLDUSDT"]["status"] == "BREAK"

    markets = ccxt_markets(emulator.base_url)
    assert markets["NEW/USDT"]["active"] is True and markets["NEW/USDT"]["spot"] is True
    assert markets["OLD/USDT"]["active"] is False

    # it trades from its listing hour on, with the same data a local SyntheticMarket computes
    start = NOW - NOW % HOUR_MS
    rows = get_json(f"{emulator.base_url}/api/v3/klines?symbol=NEWUSDT&interval=1m&startTime={start - HOUR_MS}")
    truth = SyntheticMarket([listing_spec("NEW", "USDT", NOW, base_price=3.5)]).candles(
        "NEW/USDT", "1m", start - HOUR_MS, NOW + 1, now_ms=NOW
    )
    assert len(rows) == len(truth) == (NOW - start) // MINUTE_MS + 1
    assert rows[0][0] == start and [[r[0], *map(float, r[1:6])] for r in rows] == truth

    with pytest.raises(RuntimeError, match="already listed"):
        emulator_control.list_market("NEW", "USDT")
    with pytest.raises(RuntimeError, match="status"):
        emulator_control.list_market("ODD", "USDT", status="OPEN")
    with pytest.raises(RuntimeError, match="upper-case"):
        emulator_control.list_market("new/x", "USDT")

    emulator_control.reset()
    assert [m["ccxt_symbol"] for m in emulator_control.market()] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert "NEW/USDT" not in ccxt_markets(emulator.base_url)
    with pytest.raises(urllib.error.HTTPError) as err:
        get_json(f"{emulator.base_url}/api/v3/klines?symbol=NEWUSDT&interval=1m")
    assert err.value.code == 400 and json.loads(err.value.read())["code"] == -1121

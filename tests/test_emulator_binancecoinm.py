"""Binance COIN-M's markets through the emulator: what ccxt's ``binance`` with its default market types
(spot, linear, inverse; freqtrade keeps them) asks before anything else."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime

import ccxt

from ccxt_questdb_assets.exchange.client import rewrite_api_urls

NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000) + 42_424
INFOS = ["/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"]


def get(emulator, path: str) -> tuple[int, dict[str, str], object]:
    with urllib.request.urlopen(emulator.base_url + path, timeout=10) as resp:
        return resp.status, dict(resp.headers), json.loads(resp.read())


def test_binance_with_every_default_market_type_loads(emulator, emulator_control):
    plain = ccxt.binance()  # not build_exchange: ccxt's own options, as any ccxt user has them
    assert plain.options["fetchMarkets"]["types"] == ["spot", "linear", "inverse"]
    urls = rewrite_api_urls(plain.urls["api"], emulator.base_url)
    ex = ccxt.binance({"enableRateLimit": False, "urls": {"api": urls}})
    markets = ex.load_markets()
    assert sorted(r["path"] for r in emulator_control.requests()) == sorted(INFOS)
    assert sorted(markets) == sorted(
        ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
    )
    assert not any(m["inverse"] for m in markets.values())  # no coin-margined contract is listed


def test_coinm_exchange_info_ping_time_and_budget(emulator, emulator_control):
    emulator_control.freeze_clock(NOW)
    status, headers, info = get(emulator, "/dapi/v1/exchangeInfo")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "1"
    assert info["symbols"] == [] and info["timezone"] == "UTC" and info["serverTime"] == NOW
    assert info["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 2400,
    }
    assert get(emulator, "/dapi/v1/ping")[2] == {}
    status, headers, answer = get(emulator, "/dapi/v1/time")
    assert answer == {"serverTime": NOW} and headers["X-MBX-USED-WEIGHT-1M"] == "3"
    assert [r["dialect"] for r in emulator_control.requests()] == ["binancecoinm"] * 3
    config = emulator_control.config()
    assert config["limits"]["binancecoinm"] == 2400
    assert emulator_control.used_weight() == 0  # the spot budget is another one

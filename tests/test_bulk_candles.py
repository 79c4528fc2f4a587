"""Candle answers read in bulk equal ccxt's own parser, row for row, on each dialect's real answers
(real ccxt against the emulator): sorted, cut by since and limit the same way; junk and inverse
markets left to ccxt."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ccxt_questdb_assets.exchange.bulk_candles import _since_limit, bulk_rows, layout_for
from ccxt_questdb_assets.exchange.client import build_exchange, market_type_options

D0 = 1_709_251_200_000  # 2024-03-01
MIN = 60_000
CASES = {
    "binance": ["BTC/USDT"],
    "binanceusdm": ["BTC/USDT:USDT"],
    "okx": ["BTC/USDT", "BTC/USDT:USDT"],
    "bybit": ["BTC/USDT", "BTC/USDT:USDT"],
    "kraken": ["BTC/USDT"],
}


async def both(exchange_id: str, base_url: str, symbol: str, **kw):
    options = market_type_options(exchange_id, [symbol])
    ex = build_exchange(exchange_id, base_url=base_url, async_=True, options=options)
    try:
        await ex.load_markets()
        reference = await ex.fetch_ohlcv(symbol, "1m", **kw)
        with bulk_rows():
            bulk = await ex.fetch_ohlcv(symbol, "1m", **kw)
        return reference, bulk
    finally:
        await ex.close()


@pytest.mark.parametrize(("exchange_id", "symbol"), [(e, s) for e, symbols in CASES.items() for s in symbols])
def test_bulk_rows_equal_ccxts_parser(emulator, emulator_control, exchange_id, symbol):
    emulator_control.freeze_clock(D0 + 2 * 86_400_000)
    asks = [{"since": D0, "limit": 300}, {"since": None, "limit": 5}]
    if exchange_id != "kraken":  # kraken serves its latest bars whatever since says
        asks.append({"since": D0 + 7 * MIN, "limit": 100, "params": {"until": D0 + 50 * MIN}})
    for kw in asks:
        reference, bulk = asyncio.run(both(exchange_id, emulator.base_url, symbol, **kw))
        assert isinstance(reference, list) and isinstance(bulk, np.ndarray)
        assert len(reference) > 0, kw
        np.testing.assert_array_equal(bulk, np.array(reference, dtype=np.float64), err_msg=f"{exchange_id} {kw}")


def test_cut_by_since_and_limit_as_ccxt_does():
    rows = np.array([[3, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1], [2, 1, 1, 1, 1, 1]], dtype=float)
    assert _since_limit(rows, None, None, False)[:, 0].tolist() == [0, 1, 2, 3]
    assert _since_limit(rows, None, 2, False)[:, 0].tolist() == [2, 3]  # no since: the newest
    assert _since_limit(rows, 0, 2, False)[:, 0].tolist() == [1, 2]  # since: from the start; time 0 dropped
    assert _since_limit(rows, 1, 2, True)[:, 0].tolist() == [2, 3]


def test_junk_and_inverse_markets_are_left_to_ccxt():
    assert layout_for("binance", {"inverse": True}) is None
    assert layout_for("okx", {"type": "swap", "inverse": False}).volume == 6
    assert layout_for("coinbase", {"type": "spot"}) is None
    ex = build_exchange("binance", async_=False)
    with bulk_rows():
        parsed = ex.parse_ohlcvs([[None, "1", "1", "1", "1", "1"]], None, "1m", None, None)
    assert parsed == [[None, 1.0, 1.0, 1.0, 1.0, 1.0]]  # ccxt's reading: the page check refuses it

"""Every proven dialect through ``CcxtQuestDBProvider``: real QuestDB, real ccxt, the emulator's dialect.

For each exchange: a cold window equals the ground truth with the fewest requests its dialect
allows, a warm rerun asks nothing, a missing day alone is refetched, the time before listing is
remembered as empty, and a rate-limit answer mid-run ends exact. Trades are exact where the
exchange keeps them (by trade id, or by time, price, amount, side and order where it has none);
where it cannot give what is asked, the error says so before any request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from ccxt_support import provider_config

from ccxt_questdb_assets import CcxtQuestDBProvider
from ccxt_questdb_assets.core.errors import UnprovenExchangeError, UnsupportedHistoryError
from ccxt_questdb_assets.emulator.dialects.bybit import IP_WINDOW_S as BYBIT_WINDOW_S
from ccxt_questdb_assets.emulator.dialects.kraken import BUDGET_WINDOW_S as KRAKEN_WINDOW_S
from ccxt_questdb_assets.exchange.dialects import CandlePaging
from ccxt_questdb_assets.history.config import ProviderConfig
from ccxt_questdb_assets.testing.candles import assert_candles_exact, truth_candles

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
D0 = 1_709_251_200_000  # 2024-03-01T00:00Z


@dataclass(frozen=True)
class Dialect:
    exchange: str
    candle_page: int
    is_candles: Callable[[str], bool]
    trade_page: int | None = None
    is_trades: Callable[[str], bool] = lambda path: False
    backward_trades: bool = False


DIALECTS = {
    "binance": Dialect("binance", 1000, lambda p: p == "/api/v3/klines", 1000, lambda p: p == "/api/v3/aggTrades"),
    "okx": Dialect(
        "okx",
        300,
        lambda p: p.startswith("/api/v5/market/") and p.endswith("candles"),
        100,
        lambda p: p == "/api/v5/market/history-trades",
        backward_trades=True,
    ),
    "bybit": Dialect("bybit", 1000, lambda p: p == "/v5/market/kline"),
    "coinbase": Dialect(
        "coinbase", 300, lambda p: p.endswith("/candles"), 1000, lambda p: p.endswith("/ticker"), backward_trades=True
    ),
    "kraken": Dialect("kraken", 720, lambda p: p == "/0/public/OHLC", 1000, lambda p: p == "/0/public/Trades"),
}
FULL_HISTORY_CANDLES = ["binance", "okx", "bybit", "coinbase"]
TRADE_HISTORY = ["binance", "okx", "coinbase", "kraken"]


def provider_for(questdb, emulator, exchange: str, *, mode="ohlcv", symbols=("BTC/USDT",), clock=None, **extra):
    cfg = provider_config(questdb, emulator, exchange, mode=mode, symbols=symbols, prefix="d_", **extra)
    return CcxtQuestDBProvider.from_config(cfg, **({"clock": clock} if clock else {}))


def truth(emulator, symbol: str, start: int, end: int) -> np.ndarray:
    """The ground truth of ``symbol``'s 1m candles (a swap follows its spot market's series)."""
    return truth_candles(emulator, symbol.split(":")[0], start, end)


def calls(control, dialect: Dialect, test: Callable[[str], bool]) -> list[dict]:
    return [r for r in control.requests() if r.get("dialect") == dialect.exchange and test(r["path"])]


def candle_calls(control, dialect: Dialect) -> list[dict]:
    return calls(control, dialect, dialect.is_candles)


@pytest.mark.parametrize("exchange", FULL_HISTORY_CANDLES)
def test_cold_two_days_exact_at_the_fewest_requests_then_warm_free(questdb, emulator, emulator_control, exchange):
    dialect = DIALECTS[exchange]
    provider = provider_for(questdb, emulator, exchange)
    node = f"ohlcv:{exchange}:BTC/USDT:1m"
    frame = provider.fetch_sync(D0 / 1000, (D0 + 2 * DAY) / 1000, node_id=node)
    assert_candles_exact(frame, truth(emulator, "BTC/USDT", D0, D0 + 2 * DAY))
    assert len(candle_calls(emulator_control, dialect)) == math.ceil(2880 / dialect.candle_page)

    emulator_control.clear_requests()
    again = provider.fetch_sync(D0 / 1000, (D0 + 2 * DAY) / 1000, node_id=node)
    assert emulator_control.requests() == []
    assert_candles_exact(again, truth(emulator, "BTC/USDT", D0, D0 + 2 * DAY))


@pytest.mark.parametrize("exchange", FULL_HISTORY_CANDLES)
def test_only_the_missing_day_is_asked(questdb, emulator, emulator_control, exchange):
    dialect = DIALECTS[exchange]
    provider = provider_for(questdb, emulator, exchange, symbols=("ETH/USDT",))
    node = f"ohlcv:{exchange}:ETH/USDT:1m"
    provider.ensure_range_sync(D0 / 1000, (D0 + DAY) / 1000, node_id=node)
    provider.ensure_range_sync((D0 + 2 * DAY) / 1000, (D0 + 3 * DAY) / 1000, node_id=node)
    emulator_control.clear_requests()
    frame = provider.fetch_sync(D0 / 1000, (D0 + 3 * DAY) / 1000, node_id=node)
    assert_candles_exact(frame, truth(emulator, "ETH/USDT", D0, D0 + 3 * DAY))
    asked = candle_calls(emulator_control, dialect)
    assert len(asked) == math.ceil(1440 / dialect.candle_page), [r["params"] for r in asked]
    assert len(emulator_control.requests()) == len(asked)  # markets came from the process cache


@pytest.mark.parametrize("exchange", FULL_HISTORY_CANDLES)
def test_before_listing_is_remembered_as_empty(questdb, emulator, emulator_control, exchange):
    dialect = DIALECTS[exchange]
    listing = emulator.market.listing_ms("SOLUSDT")
    provider = provider_for(questdb, emulator, exchange, symbols=("SOL/USDT",))
    node = f"ohlcv:{exchange}:SOL/USDT:1m"
    start, end = listing - DAY, listing + 2 * HOUR
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id=node)
    assert_candles_exact(frame, truth(emulator, "SOL/USDT", start, end))
    emulator_control.clear_requests()
    provider.fetch_sync(start / 1000, end / 1000, node_id=node)
    assert candle_calls(emulator_control, dialect) == []
    empties = asyncio.run(provider.backend.load_coverage(provider.fetcher.node(node))).empty_windows()
    assert any(w.start_ms <= start and w.end_ms >= listing for w in empties), [str(w) for w in empties]


@pytest.mark.parametrize("exchange", FULL_HISTORY_CANDLES)
def test_a_rate_limit_answer_mid_run_ends_exact(questdb, emulator, emulator_control, exchange):
    dialect = DIALECTS[exchange]
    provider = provider_for(questdb, emulator, exchange, symbols=("ETH/USDT",))
    node = f"ohlcv:{exchange}:ETH/USDT:1m"
    provider.fetch_sync(D0 / 1000, (D0 + HOUR) / 1000, node_id=node)  # markets loaded
    path = candle_calls(emulator_control, dialect)[-1]["path"]
    emulator_control.clear_requests()
    emulator_control.inject("429", count=1, path=path, after=1, retry_after=1)
    start, end = D0 + DAY, D0 + 2 * DAY
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id=node)
    assert_candles_exact(frame, truth(emulator, "ETH/USDT", start, end))
    asked = candle_calls(emulator_control, dialect)
    assert [r["status"] for r in asked].count(429) == 1
    assert len(asked) == math.ceil(1440 / dialect.candle_page) + 1
    assert provider.fetcher.session.stats.rate_limited == 1


@pytest.mark.parametrize("exchange", ["okx", "bybit", "coinbase", "kraken"])
def test_the_open_bar_is_never_covered_and_is_replaced_once_closed(questdb, emulator, emulator_control, exchange):
    dialect = DIALECTS[exchange]
    now = {"ms": D0 + 5 * DAY + 12 * HOUR + 30 * MIN + 25_000}
    emulator_control.freeze_clock(now["ms"])
    provider = provider_for(questdb, emulator, exchange, clock=lambda: now["ms"], final_lag_ms=0)
    node = f"ohlcv:{exchange}:BTC/USDT:1m"
    start = now["ms"] - 25_000 - 30 * MIN
    frame = provider.fetch_sync(start / 1000, (now["ms"] + MIN) / 1000, node_id=node)
    assert len(frame) == 31  # 30 closed bars and the open one, provisionally
    open_volume = frame.iloc[-1]["volume"]
    assert provider.coverage_sync(node_id=node)[-1][1] * 1000 == start + 29 * MIN  # the last closed bar

    now["ms"] += MIN  # the bar that was open has closed
    emulator_control.freeze_clock(now["ms"])
    emulator_control.clear_requests()
    closed_end = start + 31 * MIN
    again = provider.fetch_sync(start / 1000, closed_end / 1000, node_id=node)
    assert_candles_exact(again, truth(emulator, "BTC/USDT", start, closed_end))
    assert again.iloc[-1]["volume"] >= open_volume
    assert len(candle_calls(emulator_control, dialect)) == 1
    assert provider.coverage_sync(node_id=node)[-1][1] * 1000 == start + 30 * MIN


@pytest.mark.parametrize("exchange", ["okx", "bybit", "coinbase", "kraken"])
def test_the_dialects_own_rate_limit_answer_is_waited_out_and_the_data_is_exact(
    questdb, emulator, emulator_control, exchange
):
    """The exchange's budget runs out mid-run: its own answer (OKX 50011, Bybit 403 'access too
    frequent', Coinbase 429, Kraken 'EGeneral:Too many requests' in a 200) starts the cooldown."""
    mode, node = (
        ("trades", f"trades:{exchange}:BTC/USDT")
        if exchange == "kraken"
        else ("ohlcv", f"ohlcv:{exchange}:BTC/USDT:1m")
    )
    now = D0 + 5 * DAY
    emulator_control.freeze_clock(now)
    provider = provider_for(
        questdb, emulator, exchange, mode=mode, clock=lambda: now, retry_backoff_s=0.2, max_retries=8
    )
    start, end = D0 + DAY, D0 + DAY + (3 * HOUR if exchange == "kraken" else DAY)
    provider.fetch_sync(start / 1000, (start + MIN) / 1000, node_id=node)  # markets loaded
    budget = {"okx": 20, "bybit": 1, "coinbase": 1, "kraken": 1}[exchange]  # OKX: history-candles weigh 10
    window_s = {"bybit": BYBIT_WINDOW_S, "kraken": KRAKEN_WINDOW_S}.get(exchange)
    if window_s is not None:  # a few paced requests: start them in one budget window, not across two
        time.sleep(window_s - time.time() % window_s + 0.05)  # the emulator's windows follow the wall clock
    emulator_control.set_weight_limit(budget, dialect=exchange)
    emulator_control.clear_requests()
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id=node)
    assert provider.fetcher.session.stats.rate_limited >= 1
    if mode == "ohlcv":
        assert_candles_exact(frame, truth(emulator, "BTC/USDT", start, end))
    else:
        want = emulator.market.trades("BTCUSDT", start, end)
        assert sorted(frame["trade_id"].astype("int64")) == sorted(t.id for t in want)


def truth_trades(emulator, symbol: str, start: int, end: int) -> pd.DataFrame:
    trades = emulator.market.trades(symbol.replace("/", ""), start, end)
    return pd.DataFrame(
        {
            "ts": [t.timestamp for t in trades],
            "trade_id": [str(t.id) for t in trades],
            "price": [t.price for t in trades],
            "amount": [t.amount for t in trades],
            "side": [t.side for t in trades],
        }
    )


def burst_hour(emulator, symbol: str) -> int:
    """An hour (after D0) holding trades that share a millisecond."""
    for h in range(48):
        tr = emulator.market.trades_array(symbol.replace("/", ""), D0 + h * HOUR, D0 + (h + 1) * HOUR)
        if len(tr) > 1 and (np.diff(tr.ts) == 0).any():
            return D0 + h * HOUR
    raise AssertionError("the synthetic market has no same-millisecond burst in its first 48 hours after D0")


@pytest.mark.parametrize("exchange", TRADE_HISTORY)
def test_trades_exact_with_same_millisecond_bursts(questdb, emulator, emulator_control, exchange):
    dialect = DIALECTS[exchange]
    start = burst_hour(emulator, "BTC/USDT")
    end = start + 2 * HOUR
    now = D0 + 5 * DAY  # the exchange's and the provider's "now": OKX serves the last 90 days of trades
    emulator_control.freeze_clock(now)
    provider = provider_for(questdb, emulator, exchange, mode="trades", clock=lambda: now)
    node = f"trades:{exchange}:BTC/USDT"
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id=node)
    want = truth_trades(emulator, "BTC/USDT", start, end)
    got = frame.assign(ts=frame["ts"].dt.as_unit("ms").astype("int64")).sort_values(["ts", "trade_id"], kind="stable")
    cols = ["ts", "trade_id", "price", "amount", "side"]
    key = {"key": lambda col: col.astype("int64")}  # ids in numeric order within a millisecond
    got, want = got.sort_values(["ts", "trade_id"], **key), want.sort_values(["ts", "trade_id"], **key)
    pd.testing.assert_frame_equal(
        got[cols].reset_index(drop=True), want[cols].reset_index(drop=True), check_dtype=False
    )
    n = len(want)
    asked = calls(emulator_control, dialect, dialect.is_trades)
    if exchange == "coinbase":  # the oldest second of a full page is asked again
        assert len(asked) <= math.ceil(n / (dialect.trade_page // 2)) + 1
    elif exchange == "binance":  # the first hour by time, then by id: one page reaching past the window
        assert len(asked) == 2 and n < 2 * dialect.trade_page
    else:
        assert len(asked) == math.ceil((n + 1) / dialect.trade_page), len(asked)
    emulator_control.clear_requests()
    provider.fetch_sync(start / 1000, end / 1000, node_id=node)
    assert calls(emulator_control, dialect, dialect.is_trades) == []


def test_okx_trades_older_than_90_days_are_refused_before_any_request(questdb, emulator, emulator_control):
    provider = provider_for(questdb, emulator, "okx", mode="trades")  # the clock is today's: D0 is long gone
    with pytest.raises(UnsupportedHistoryError, match=r"last 90 days.*candles"):
        provider.fetch_sync(D0 / 1000, (D0 + HOUR) / 1000, node_id="trades:okx:BTC/USDT")
    assert [r for r in emulator_control.requests() if "trades" in r["path"]] == []


def test_bybit_trades_are_refused_before_any_request(questdb, emulator, emulator_control):
    provider = provider_for(questdb, emulator, "bybit", mode="trades")
    with pytest.raises(UnsupportedHistoryError, match=r"bybit keeps no public trade history.*candles"):
        provider.fetch_sync(D0 / 1000, (D0 + HOUR) / 1000, node_id="trades:bybit:BTC/USDT")
    assert [r for r in emulator_control.requests() if "recent-trade" in r["path"]] == []
    coverage = asyncio.run(provider.backend.load_coverage(provider.fetcher.node("trades:bybit:BTC/USDT")))
    assert (
        coverage.covered_ms(
            provider.fetcher.align(provider.fetcher.node("trades:bybit:BTC/USDT"), _window(D0, D0 + HOUR)), D0 + 2 * DAY
        )
        == 0
    )


def _window(start: int, end: int):
    from ccxt_questdb_assets.core.windows import TimeWindow

    return TimeWindow(start, end)


def test_kraken_old_candles_are_refused_and_recent_ones_exact_in_one_request(questdb, emulator, emulator_control):
    dialect = DIALECTS["kraken"]
    provider = provider_for(questdb, emulator, "kraken")
    node = "ohlcv:kraken:BTC/USDT:1m"
    with pytest.raises(UnsupportedHistoryError, match=r"latest 720 1m candles.*trade_bars"):
        provider.fetch_sync(D0 / 1000, (D0 + 2 * DAY) / 1000, node_id=node)
    assert candle_calls(emulator_control, dialect) == []

    now = emulator_control.now_ms()
    start = (now // MIN - 600) * MIN
    end = (now // MIN - 1) * MIN  # closed bars only: the clock is live
    frame = provider.fetch_sync(start / 1000, end / 1000, node_id=node)
    assert_candles_exact(frame, truth(emulator, "BTC/USDT", start, end))
    assert len(candle_calls(emulator_control, dialect)) == 1


def test_an_unproven_exchange_is_refused_unless_opted_in(questdb, emulator):
    with pytest.raises(UnprovenExchangeError, match=r"'gate'.*allow_unproven_exchange: true"):
        provider_for(questdb, emulator, "gate")
    config = ProviderConfig.from_mapping({"exchange": "gate", "symbols": ["BTC/USDT"], "allow_unproven_exchange": True})
    assert config.backfill.dialect.proven is False
    assert config.backfill.dialect.candles is CandlePaging.BOUNDED_RANGES


@pytest.mark.parametrize("exchange", ["binanceusdm", "okx", "bybit"])
def test_perpetual_swap_candles_exact(questdb, emulator, emulator_control, exchange):
    symbol = "BTC/USDT:USDT"
    provider = provider_for(questdb, emulator, exchange, symbols=(symbol,))
    node = f"ohlcv:{exchange}:{symbol}:1m"
    frame = provider.fetch_sync(D0 / 1000, (D0 + DAY) / 1000, node_id=node)
    assert_candles_exact(frame, truth(emulator, symbol, D0, D0 + DAY))
    emulator_control.clear_requests()
    provider.fetch_sync(D0 / 1000, (D0 + DAY) / 1000, node_id=node)
    assert emulator_control.requests() == []


class _ClassicKraken:
    """A fetcher stand-in answering Kraken's classic 6-field trade rows (no trade id) as ccxt parses
    them: ``id`` None but on the page's last trade, which gets the appended ``last`` cursor."""

    def __init__(self, trades: list[tuple[int, float]], page: int) -> None:
        import dataclasses
        import types

        from ccxt_questdb_assets.exchange.dialects import dialect_for

        self.config = types.SimpleNamespace(
            exchange_id="kraken", dialect=dataclasses.replace(dialect_for("kraken"), trade_page=page)
        )
        self.trades = trades  # (ts_ms, price) in order; cursor of trade i: ts*1e6 + i
        self.page = page
        self.asked: list[str] = []

    def clock(self) -> int:
        return 10**13

    def final_until(self) -> int:
        return self.clock()

    async def call(self, method, symbol, since, limit, params):
        self.asked.append(params["since"])
        after = int(params["since"])
        rows = [(i, t) for i, t in enumerate(self.trades) if t[0] * 1_000_000 + i > after][:limit]
        out = []
        for n, (i, (ts, price)) in enumerate(rows):
            info = [str(price), "1.0", ts / 1000, "b", "l", ""]
            last = n == len(rows) - 1
            if last:
                info.append(str(ts * 1_000_000 + i))
            out.append(
                {
                    "id": info[-1] if last else None,
                    "timestamp": ts,
                    "price": price,
                    "amount": 1.0,
                    "side": "buy",
                    "info": info,
                }
            )
        return out


def test_classic_kraken_rows_get_ids_by_millisecond_and_order_across_pages():
    from ccxt_questdb_assets.core.node_ids import NodeId
    from ccxt_questdb_assets.core.windows import TimeWindow
    from ccxt_questdb_assets.exchange.trade_pages import dialect_trade_pages

    # a burst of 5 trades in one millisecond, cut by pages of 3
    trades = [(1000, 1.0), (1001, 2.0), (1001, 3.0), (1001, 4.0), (1001, 5.0), (1001, 6.0), (1005, 7.0)]
    fake = _ClassicKraken(trades, page=3)

    async def collect():
        return [
            p async for p in dialect_trade_pages(fake, NodeId("trades", "kraken", "BTC/USDT"), TimeWindow(1000, 2000))
        ]

    pages = asyncio.run(collect())
    rows = pd.concat([p.rows for p in pages], ignore_index=True)
    assert rows["trade_id"].tolist() == ["1000-0", "1001-0", "1001-1", "1001-2", "1001-3", "1001-4", "1005-0"]
    assert rows["price"].tolist() == [t[1] for t in trades]
    # claims never cover a millisecond before all its trades are held, and join up to the end
    claims = [(p.claim.start_ms, p.claim.end_ms) for p in pages if p.claim]
    assert claims == [(1000, 1001), (1001, 2000)]
    assert fake.asked[0] == str(1000 * 1_000_000 - 1)  # the window's first millisecond, cursor exclusive
    # a refetch from the claim boundary numbers the burst the same way
    again = _ClassicKraken(trades, page=3)

    async def refetch():
        return [
            p async for p in dialect_trade_pages(again, NodeId("trades", "kraken", "BTC/USDT"), TimeWindow(1001, 2000))
        ]

    ids = pd.concat([p.rows for p in asyncio.run(refetch())])["trade_id"].tolist()
    assert ids == ["1001-0", "1001-1", "1001-2", "1001-3", "1001-4", "1005-0"]

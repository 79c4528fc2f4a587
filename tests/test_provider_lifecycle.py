"""A provider's lifecycle across event loops, through real ccxt, the emulator, QuestDB and Redis.

Every ``asyncio.run`` is a new event loop. The provider builds a ccxt exchange per loop and
releases it when that loop shuts down; ``async with`` and ``close()`` release it earlier. Nothing
may be left open: no aiohttp session alive and unclosed, no ResourceWarning, no ccxt or asyncio
complaint about unreleased resources.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import pytest
from test_history_backfill import INFO, assert_candles_equal, klines_requests, make_provider, truth_candles, utc_ms

from ccxt_questdb_assets import CcxtQuestDBProvider
from ccxt_questdb_assets.exchange.client import build_exchange, clear_markets_cache
from ccxt_questdb_assets.exchange.loops import EventLoopError

NODE = "ohlcv:binance:BTC/USDT:1m"
DAY1 = (utc_ms(2024, 5, 1), utc_ms(2024, 5, 2))
DAY2 = (utc_ms(2024, 5, 2), utc_ms(2024, 5, 3))
PAGES_PER_DAY = 2  # 1440 one-minute bars, 1000 per request
LEAK_SIGNS = ("nclosed", "release all resources", "destroyed but it is pending", "Event loop is closed")


def open_sessions() -> list[aiohttp.ClientSession]:
    return [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed]


@contextmanager
def nothing_left_open(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail unless, after a full garbage collection, the block left no aiohttp session open and
    nothing warned of an unreleased resource (ResourceWarning, or a ccxt/aiohttp/asyncio log line)."""
    before = {id(s) for s in open_sessions()}
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        yield
        gc.collect()
    left_open = [repr(s) for s in open_sessions() if id(s) not in before]
    resource_warnings = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    complaints = [r.getMessage()[:200] for r in caplog.records if any(s in r.getMessage() for s in LEAK_SIGNS)]
    assert not left_open, f"aiohttp sessions left open: {left_open}"
    assert not resource_warnings, f"ResourceWarnings: {resource_warnings}"
    assert not complaints, f"logged: {complaints}"


def fetch(provider, window):
    return provider.fetch(window[0] / 1000, window[1] / 1000, node_id=NODE)


def test_the_leak_check_sees_an_exchange_left_open(emulator, caplog):
    """The check the other tests rely on fails on the very leak of the original bug."""

    async def open_and_forget():
        exchange = build_exchange("binance", base_url=emulator.base_url)
        await exchange.load_markets()

    with pytest.raises(AssertionError, match="left open|ResourceWarning|logged"):
        with nothing_left_open(caplog):
            asyncio.run(open_and_forget())


@pytest.mark.parametrize("scope", ["process", "cluster"])
def test_one_provider_serves_successive_event_loops(questdb, emulator, emulator_control, request, caplog, scope):
    """``asyncio.run(provider.fetch(...))`` twice: the second loop gets a fresh exchange (the first
    was closed when its loop shut down), the exact data, the same shared limiter, and markets from
    the process cache. In each loop two tasks ask for the same day at once: the series lock (taken
    by both loops) lets one fetch it and the other read it."""
    limiter = {"scope": scope, "key_suffix": uuid.uuid4().hex[:8], "max_concurrency": 4}
    if scope == "cluster":
        limiter["redis_dsn"] = request.getfixturevalue("redis_url")
    clear_markets_cache()
    exchanges = []

    async def fetch_twice_noting_exchange(provider, window):
        frames = await asyncio.gather(fetch(provider, window), fetch(provider, window))
        exchanges.append(provider.fetcher.session.exchange)
        return frames

    with nothing_left_open(caplog):
        provider = make_provider(questdb, emulator, rate_limiter=limiter)
        for window in (DAY1, DAY2):
            for frame in asyncio.run(fetch_twice_noting_exchange(provider, window)):
                assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", *window))
        stats = provider.fetcher.session.limiter.stats  # the key's one limiter, whichever loop asks
        asyncio.run(provider.close())  # the QuestDB connections; the exchanges went with their loops
        del provider
    assert exchanges[0] is not exchanges[1]
    assert [ex.session for ex in exchanges] == [None, None]  # each closed by its loop's shutdown
    assert len(klines_requests(emulator_control)) == 2 * PAGES_PER_DAY
    assert emulator_control.count(INFO) == 1  # from_config's check; then the process cache
    assert stats.requests == 1 + 2 * PAGES_PER_DAY
    if scope == "cluster":
        assert (stats.redis_errors, stats.fallback_requests) == (0, 0)


def test_async_with_closes_the_exchange(questdb, emulator, emulator_control, caplog):
    async def main():
        async with make_provider(questdb, emulator) as provider:
            frame = await fetch(provider, DAY1)
            exchange = provider.fetcher.session.exchange
            assert exchange.session is not None
        assert exchange.session is None and exchange.closed_by_user  # before the loop ends
        return frame

    with nothing_left_open(caplog):
        frame = asyncio.run(main())
    assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", *DAY1))


def test_close_twice_is_fine_and_the_provider_stays_usable(questdb, emulator, emulator_control, caplog):
    async def main():
        provider = make_provider(questdb, emulator)
        await provider.close()  # nothing opened yet
        first = await fetch(provider, DAY1)
        exchange = provider.fetcher.session.exchange
        await provider.close()
        await provider.close()
        assert exchange.session is None
        emulator_control.clear_requests()
        again = await fetch(provider, DAY1)  # a new exchange; the day is stored, markets are cached
        assert provider.fetcher.session.exchange is not exchange
        assert emulator_control.requests() == []
        await provider.close()
        return first, again

    with nothing_left_open(caplog):
        first, again = asyncio.run(main())
    assert_candles_equal(first, truth_candles(emulator, "BTC/USDT", *DAY1))
    assert_candles_equal(again, first)


def test_sync_helpers_share_one_provider(questdb, emulator, emulator_control, caplog):
    start_s, end_s = DAY1[0] // 1000, DAY1[1] // 1000
    with nothing_left_open(caplog):
        provider = make_provider(questdb, emulator)
        frame = provider.fetch_sync(start_s, end_s, node_id=NODE)
        assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", *DAY1))
        assert provider.coverage_sync(node_id=NODE) == [(start_s, end_s - 60)]
        report = provider.ensure_range_sync(start_s, end_s, node_id=NODE, force=True)
        assert (report.requests, report.rows_written) == (PAGES_PER_DAY, 1440)
        emulator_control.clear_requests()
        assert_candles_equal(provider.fetch_sync(start_s, end_s, node_id=NODE), frame)
        assert emulator_control.requests() == []
        provider.close_sync()
        del provider


def test_a_loop_left_open_is_named_and_closing_on_it_frees_the_provider(questdb, emulator, emulator_control):
    provider = make_provider(questdb, emulator)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(fetch(provider, DAY1))
        with pytest.raises(
            EventLoopError, match=r"another event loop that is still open; await close\(\) on that loop"
        ):
            asyncio.run(fetch(provider, DAY2))
        loop.run_until_complete(provider.close())
    finally:
        loop.close()
    frame = asyncio.run(fetch(provider, DAY2))
    asyncio.run(provider.close())
    assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", *DAY2))


def test_a_loop_closed_without_shutdown_is_left_behind_with_a_warning(questdb, emulator, emulator_control, caplog):
    """``loop.close()`` without ``shutdown_asyncgens()``: the next loop still gets a fresh exchange
    and the data; the old connections die with that loop's sockets (their only complaint)."""
    provider = make_provider(questdb, emulator)
    before = {id(s) for s in open_sessions()}
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        loop = asyncio.new_event_loop()
        loop.run_until_complete(fetch(provider, DAY1))
        loop.close()
        frame = asyncio.run(fetch(provider, DAY2))
        provider.close_sync()
        del loop, provider
        gc.collect()
    assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", *DAY2))
    assert "closed without loop.shutdown_asyncgens()" in caplog.text
    assert [s for s in open_sessions() if id(s) not in before] == []
    assert {str(w.message).split(" <")[0] for w in caught if issubclass(w.category, ResourceWarning)} <= {
        "unclosed transport"
    }


def test_a_provider_in_use_on_a_loop_of_another_thread_is_refused(questdb, emulator, emulator_control):
    provider = make_provider(questdb, emulator)
    holding, done = threading.Event(), threading.Event()

    async def hold_it_open():
        await fetch(provider, DAY1)
        holding.set()
        await asyncio.to_thread(done.wait, 60)
        await provider.close()

    other = threading.Thread(target=asyncio.run, args=(hold_it_open(),))
    other.start()
    try:
        assert holding.wait(60)
        with pytest.raises(EventLoopError, match="in use on another event loop that is still running"):
            asyncio.run(fetch(provider, DAY2))
    finally:
        done.set()
        other.join(60)
    frame = asyncio.run(fetch(provider, DAY2))
    asyncio.run(provider.close())
    assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", *DAY2))


def test_a_passed_in_exchange_stays_the_callers(questdb, emulator, emulator_control):
    """``exchange=``: used on the loop it belongs to, never closed by the provider, refused on another loop."""
    loop = asyncio.new_event_loop()
    try:
        exchange = build_exchange("binance", base_url=emulator.base_url)
        provider = CcxtQuestDBProvider(make_provider(questdb, emulator).config, exchange=exchange)
        frame = loop.run_until_complete(fetch(provider, DAY1))
        assert_candles_equal(frame, truth_candles(emulator, "BTC/USDT", *DAY1))
        with pytest.raises(EventLoopError, match="passed as exchange= belongs to the event loop"):
            asyncio.run(fetch(provider, DAY2))
        loop.run_until_complete(provider.close())
        assert exchange.session is not None  # still open: the caller closes it
        loop.run_until_complete(exchange.close())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

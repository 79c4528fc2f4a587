"""ExchangeSession: what it asks the limiter for, and how it reads the exchange's rate-limit answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import ccxt
import pytest

from ccxt_questdb_assets.exchange.client import clear_markets_cache
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.exchange.retry import rate_limit_status, retry_after_seconds
from ccxt_questdb_assets.exchange.session import ExchangeSession
from ccxt_questdb_assets.ratelimit import RateLimiterConfig

INFO = "/api/v3/exchangeInfo"
KLINES = "/api/v3/klines"
T0 = 1_717_200_000_000  # 2024-06-01 00:00 UTC


def test_retry_after_reads_seconds_and_http_dates_and_ignores_junk():
    assert retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "0"}) == 0.0
    in_30_s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 27 <= retry_after_seconds({"Retry-After": in_30_s}) <= 30
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({"Retry-After": "-5"}) == 0.0
    assert retry_after_seconds({}) is None
    assert retry_after_seconds(None) is None


def test_rate_limit_status_tells_429_from_418():
    assert rate_limit_status(ccxt.RateLimitExceeded("x")) == 429
    assert rate_limit_status(ccxt.DDoSProtection("x")) == 418
    assert rate_limit_status(ccxt.ExchangeNotAvailable("x")) is None
    assert rate_limit_status(ValueError("x")) is None


def test_markets_from_the_process_cache_take_no_limiter_admission(emulator, emulator_control):
    """A second session on a warm markets cache neither asks the exchange nor spends the weight-20
    admission of ``exchangeInfo``: only the first load is paid for."""
    clear_markets_cache()
    config = CcxtBackfillConfig(
        "binance",
        base_url=emulator.base_url,
        rate_limiter=RateLimiterConfig.from_mapping({"scope": "process", "key_suffix": "session-cache"}),
    )

    async def load_twice() -> tuple[float, float]:
        first, second = ExchangeSession(config), ExchangeSession(config)
        try:
            before = first.limiter.stats
            assert "BTC/USDT" in await first.markets()
            after_first = first.limiter.stats
            assert "BTC/USDT" in await second.markets()
            after_second = second.limiter.stats
        finally:
            await first.close()
            await second.close()
        return (after_first - before).tokens, (after_second - after_first).tokens

    first_tokens, second_tokens = asyncio.run(load_twice())
    assert first_tokens >= 1
    assert second_tokens == 0
    assert emulator_control.count(INFO) == 1


@pytest.mark.parametrize("status", [429, 418])
def test_a_rate_limit_answer_penalizes_the_key_with_its_own_status_and_retry_after(emulator, emulator_control, status):
    """ccxt raises DDoSProtection for both of Binance's statuses: the penalty names the status the
    emulator really answered, and lasts its Retry-After."""
    config = CcxtBackfillConfig(
        "binance",
        base_url=emulator.base_url,
        max_retries=1,
        retry_backoff_s=0,
        rate_limiter=RateLimiterConfig.from_mapping({"scope": "local", "penalty_backoff_ms": 50}),
    )
    events: list = []

    async def hit() -> list:
        session = ExchangeSession(config)
        session.limiter.add_listener(events.append)
        try:
            await session.markets()
            emulator_control.inject(str(status), count=1, path=KLINES, retry_after=1)
            return await session.call("fetch_ohlcv", "BTC/USDT", "1m", since=T0, limit=5)
        finally:
            await session.close()

    rows = asyncio.run(hit())
    assert len(rows) == 5
    assert [r["status"] for r in emulator_control.requests(KLINES)] == [status, 200]
    penalties = [e for e in events if e.kind == "penalty"]
    assert [e.info["status"] for e in penalties] == [status]
    assert penalties[0].seconds == pytest.approx(1.0)


def test_rate_limit_status_prefers_the_answers_status():
    assert rate_limit_status(ccxt.DDoSProtection("x"), 429) == 429
    assert rate_limit_status(ccxt.DDoSProtection("x"), 403) == 403
    assert rate_limit_status(ccxt.ExchangeNotAvailable("x"), 503) is None
    # a rate-limit error in a 200 body (Bybit retCode 10006, Kraken EGeneral:Too many requests): slow down
    assert rate_limit_status(ccxt.DDoSProtection("x"), 200) == 429
    assert rate_limit_status(ccxt.RateLimitExceeded("x"), 200) == 429

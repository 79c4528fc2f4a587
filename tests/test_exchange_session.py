"""ExchangeSession: what it asks the limiter for, and how it reads the exchange's rate-limit answers."""

from __future__ import annotations

import asyncio
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import ccxt
import pytest

from ccxt_questdb_assets.exchange.client import clear_markets_cache
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.exchange.retry import rate_limit_status, retry_after_seconds
from ccxt_questdb_assets.exchange.session import ExchangeSession
from ccxt_questdb_assets.ratelimit import RateLimiterConfig

INFO = "/api/v3/exchangeInfo"


def test_retry_after_reads_seconds_and_http_dates_and_ignores_junk():
    assert retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "0"}) == 0.0
    in_30_s = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
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
        "binance", base_url=emulator.base_url,
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


@pytest.mark.parametrize("status,error", [(429, ccxt.RateLimitExceeded), (418, ccxt.DDoSProtection)])
def test_a_rate_limit_answer_penalizes_the_key_with_its_status(emulator, status, error):
    """The shared cooldown is started with the status the exchange answered (429 or 418)."""
    config = CcxtBackfillConfig(
        "binance", base_url=emulator.base_url, max_retries=0,
        rate_limiter=RateLimiterConfig.from_mapping({"scope": "local", "penalty_backoff_ms": 50}),
    )
    events: list = []

    async def hit() -> None:
        session = ExchangeSession(config)
        session.limiter.add_listener(events.append)

        async def refuse():
            raise error("slow down")

        try:
            with pytest.raises(Exception):
                await session._call_raw("fetch_ohlcv", refuse)
        finally:
            await session.close()

    asyncio.run(hit())
    penalties = [e for e in events if e.kind == "penalty"]
    assert [e.info["status"] for e in penalties] == [status]

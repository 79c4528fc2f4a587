"""Helpers the exchange tests share: a call on a sync or async ccxt exchange, a provider config."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from typing import Any


def run_on(ex: Any, fn: Callable[[Any], Any], *, load: bool = True) -> Any:
    """``fn(ex)`` on a sync ccxt exchange, or awaited on an async one (closed after); markets loaded
    first unless ``load`` is false."""
    if not asyncio.iscoroutinefunction(ex.fetch_ohlcv):
        if load:
            ex.load_markets()
        return fn(ex)

    async def go() -> Any:
        try:
            if load:
                await ex.load_markets()
            return await fn(ex)
        finally:
            await ex.close()

    return asyncio.run(go())


def provider_config(
    questdb: Any,
    emulator: Any,
    exchange: str,
    *,
    mode: str = "ohlcv",
    symbols=("BTC/USDT",),
    prefix: str = "t_",
    **extra: Any,
) -> dict[str, Any]:
    """A ``from_config`` mapping on the test QuestDB (a fresh table prefix) and the emulator."""
    conn = questdb.connection
    cfg = {
        "mode": mode,
        "exchange": exchange,
        "symbols": list(symbols),
        "questdb": {
            "host": conn.host,
            "port": conn.port,
            "http_port": conn.http_port,
            "table_prefix": prefix + uuid.uuid4().hex[:10],
        },
        "base_url": emulator.base_url,
        "rate_limiter": {"scope": "local", "max_concurrency": 4},
        "retry_backoff_s": 0.01,
        **extra,
    }
    if mode == "ohlcv":
        cfg.setdefault("timeframe", "1m")
    return cfg


def burst_start(market: Any, symbol: str, around: int) -> int:
    """A trade id a few trades before a run of >= 3 trades sharing one millisecond, within the hour
    from ``around``."""
    trades = market.trades(symbol, around, around + 3_600_000)
    for _, group in itertools.groupby(trades, key=lambda t: t.timestamp):
        run = list(group)
        if len(run) >= 3:
            return run[0].id - 3
    raise AssertionError(f"no burst of 3 trades in one millisecond in {symbol}'s hour from {around}")

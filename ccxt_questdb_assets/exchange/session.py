"""One exchange connection used by the fetchers: every call goes through the shared rate
limiter and the retry policy, and is counted.

On a 429/418 the session reports the ``Retry-After`` to the limiter, which starts a cooldown
shared by every holder of the key (in this process, and across the cluster with Redis).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

from ccxt_questdb_assets.core.errors import PermanentExchangeError, TransientExchangeError
from ccxt_questdb_assets.exchange.client import (
    build_exchange,
    forget_last_answer,
    last_answer,
    load_markets_cached_async,
    require_symbol,
    require_timeframe,
    restore_cached_markets,
)
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.exchange.retry import (
    is_transient,
    rate_limit_status,
    retry_after_seconds,
)
from ccxt_questdb_assets.ratelimit import get_rate_limiter

log = logging.getLogger(__name__)


@dataclass
class SessionStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    by_method: dict[str, int] = field(default_factory=dict)


class ExchangeSession:
    """A lazily built ``ccxt.async_support`` exchange with limiter, retries and counters."""

    def __init__(self, config: CcxtBackfillConfig, *, exchange: Any | None = None) -> None:
        self.config = config
        self._exchange = exchange
        self._owns_exchange = exchange is None
        self._limiter = get_rate_limiter(config.rate_limiter, exchange_id=config.exchange_id)
        self._markets_lock = asyncio.Lock()
        self.stats = SessionStats()

    @property
    def limiter(self):
        return self._limiter

    @property
    def exchange(self) -> Any:
        if self._exchange is None:
            self._exchange = build_exchange(
                self.config.exchange_id,
                base_url=self.config.base_url,
                options=self.config.ccxt_options,
                async_=True,
                timeout_ms=self.config.timeout_ms,
                # ccxt's own throttle paces only when our limiter sets no rate; never both.
                enable_rate_limit=not _limiter_sets_rate(self.config),
                **_credential_kwargs(self.config.credentials()),
            )
        return self._exchange

    async def markets(self) -> dict[str, Any]:
        """Markets, loaded once per process and exchange (through the limiter)."""
        async with self._markets_lock:
            ex = self.exchange
            if not ex.markets and not restore_cached_markets(ex):
                await self._call_raw("load_markets", lambda: load_markets_cached_async(ex))
            return ex.markets

    async def require_symbol(self, symbol: str) -> dict[str, Any]:
        await self.markets()
        return require_symbol(self.exchange, symbol)

    async def check_instruments(self, symbols: list[str], timeframes: tuple[str, ...] = ()) -> None:
        """Raise ConfigError unless the exchange knows every timeframe and symbol."""
        for tf in timeframes:
            require_timeframe(self.exchange, tf)
        for symbol in symbols:
            await self.require_symbol(symbol)

    def page_limit(self, method: str) -> int:
        """Rows per request: the config's window size capped by ccxt's metadata for ``method``."""
        features = getattr(self.exchange, "features", None) or {}
        limit = None
        for market_type in ("spot", "swap", "future"):
            section = features.get(market_type) or {}
            info = section.get(method) if isinstance(section, dict) else None
            if isinstance(info, dict) and isinstance(info.get("limit"), int):
                limit = info["limit"]
                break
        return min(self.config.window_size, limit) if limit else self.config.window_size

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``exchange.method(*args, **kwargs)`` through limiter and retries."""
        fn = getattr(self.exchange, method)
        return await self._call_raw(method, lambda: fn(*args, **kwargs), limit=kwargs.get("limit"))

    async def _call_raw(self, method: str, make_call, *, limit: int | None = None) -> Any:
        policy = self.config.retry_policy
        weight = self._limiter.weights_for(self.config.exchange_id).for_call(method, limit=limit)
        retry = 0
        while True:
            try:
                async with self._limiter.acquire(weight=weight):
                    forget_last_answer()
                    self.stats.requests += 1
                    self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1
                    return await make_call()
            except Exception as exc:
                if not is_transient(exc):
                    if isinstance(exc, _ccxt_base_error()):
                        raise PermanentExchangeError(
                            f"{self.config.exchange_id} refused {method}: {type(exc).__name__}: {_brief(exc)}"
                        ) from None
                    raise
                answer = last_answer()
                headers = answer[1] if answer else getattr(self.exchange, "last_response_headers", None)
                retry_after = retry_after_seconds(headers)
                status = rate_limit_status(exc, answer[0] if answer else None)
                if status is not None:
                    self.stats.rate_limited += 1
                    await self._limiter.penalize(retry_after_s=retry_after, status=status)
                retry += 1
                if retry > policy.max_retries:
                    raise TransientExchangeError(
                        f"{self.config.exchange_id} {method} failed after {retry} attempts "
                        f"(max_retries={policy.max_retries}): {type(exc).__name__}: {_brief(exc)}"
                    ) from None
                self.stats.retries += 1
                delay = policy.delay(retry, retry_after_s=retry_after)
                log.warning(
                    "%s %s: %s; retry %d/%d in %.2fs",
                    self.config.exchange_id, method, type(exc).__name__, retry, policy.max_retries, delay,
                )
                await asyncio.sleep(delay)

    async def close(self) -> None:
        if self._exchange is not None and self._owns_exchange:
            try:
                await self._exchange.close()
            finally:
                self._exchange = None


def check_instruments_blocking(config: CcxtBackfillConfig, symbols: list[str], timeframes: tuple[str, ...] = ()) -> None:
    """``check_instruments`` from synchronous code, through the limiter and retries.

    Constructors such as ``from_config`` are synchronous yet often called inside a running event
    loop; there the check runs on a private loop in a worker thread (one markets load, cached
    process-wide, so later sessions reuse it without a request).
    """

    async def check() -> None:
        session = ExchangeSession(config)
        try:
            await session.check_instruments(symbols, timeframes)
        finally:
            await session.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(check())
        return
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ccxt-markets") as pool:
        # Carry the caller's context (e.g. an active ``ratelimit.track`` scope) into the thread.
        pool.submit(contextvars.copy_context().run, asyncio.run, check()).result()


def _limiter_sets_rate(config: CcxtBackfillConfig) -> bool:
    limiter = config.rate_limiter
    return limiter.min_interval_s is not None or limiter.tokens_per_interval is not None


def _credential_kwargs(creds: dict[str, str]) -> dict[str, str]:
    return {"api_key": creds["apiKey"], "secret": creds.get("secret")} if creds else {}


def _brief(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) < 300 else text[:297] + "..."


def _ccxt_base_error() -> type[BaseException]:
    import ccxt  # lazily: the exchange is built (and ccxt imported) on first use

    return ccxt.BaseError

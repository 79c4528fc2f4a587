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

from ccxt_questdb_assets.core import ccxt_modules
from ccxt_questdb_assets.core.errors import PermanentExchangeError, TransientExchangeError
from ccxt_questdb_assets.exchange.client import (
    build_exchange,
    forget_last_answer,
    last_answer,
    load_markets_cached_async,
    market_type_options,
    require_symbol,
    require_timeframe,
    restore_cached_markets,
)
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.exchange.loops import EventLoopError, LoopBinding
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
    """A ``ccxt.async_support`` exchange per event loop, with limiter, retries and counters.

    The exchange is built on first use in a loop and closed when that loop shuts down (see
    ``exchange/loops.py``) or on ``close()``; a later loop gets a fresh one, whose markets come from
    the process cache without a request. An exchange passed in is used on one loop only and never
    closed here.
    """

    def __init__(self, config: CcxtBackfillConfig, *, exchange: Any | None = None) -> None:
        self.config = config
        self._given = exchange
        self._binding: LoopBinding | None = None
        self._limiter = get_rate_limiter(config.rate_limiter, exchange_id=config.exchange_id)
        self.stats = SessionStats()

    @property
    def limiter(self):
        return self._limiter

    @property
    def exchange(self) -> Any:
        """The ccxt exchange of the running event loop, built on its first use there."""
        return self._bound().exchange

    def _bound(self) -> LoopBinding:
        loop = asyncio.get_running_loop()
        binding = self._binding
        if binding is None:
            exchange = self._given if self._given is not None else self._build()
            binding = self._binding = LoopBinding(exchange, owned=self._given is None, on_release=self._forget)
        elif binding.loop is not loop:
            raise EventLoopError(self._elsewhere(binding))
        return binding

    async def _ready(self) -> LoopBinding:
        """``_bound()``, after releasing an exchange left by a loop that closed without shutting down."""
        binding = self._binding
        if binding is not None and binding.owned and binding.loop.is_closed():
            log.warning(
                "%s: the exchange's event loop was closed without loop.shutdown_asyncgens(); its connections "
                "close with that loop's sockets. Run loops with asyncio.run or asyncio.Runner, or await "
                "close() before closing a loop by hand",
                self.config.exchange_id,
            )
            await binding.release()
        return self._bound()

    def _build(self) -> Any:
        return build_exchange(
            self.config.exchange_id,
            base_url=self.config.base_url,
            options={**market_type_options(self.config.exchange_id, self.config.symbols), **self.config.ccxt_options},
            async_=True,
            timeout_ms=self.config.timeout_ms,
            # ccxt's own throttle paces only when our limiter sets no rate; never both.
            enable_rate_limit=not _limiter_sets_rate(self.config),
            **_credential_kwargs(self.config.credentials()),
        )

    def _forget(self, binding: LoopBinding) -> None:
        if self._binding is binding:
            self._binding = None

    def _elsewhere(self, binding: LoopBinding) -> str:
        name = self.config.exchange_id
        if not binding.owned:
            return (
                f"{name}: the ccxt exchange passed as exchange= belongs to the event loop it was first used on, "
                "and this is another loop; pass one exchange per event loop, or omit exchange= so that one is "
                "built (and rebuilt) for each loop"
            )
        if binding.loop.is_running():
            return (
                f"{name}: this exchange session is in use on another event loop that is still running (another "
                "thread); give each thread or event loop its own provider (the rate limiter is shared anyway)"
            )
        return (
            f"{name}: this exchange session was opened on another event loop that is still open; await close() "
            "on that loop first, or run each loop with asyncio.run or asyncio.Runner (they release it)"
        )

    async def markets(self) -> dict[str, Any]:
        """Markets, loaded once per process and exchange (through the limiter)."""
        binding = await self._ready()
        async with binding.markets_lock:
            ex = binding.exchange
            if not ex.markets and not restore_cached_markets(ex):
                await self._call_raw("load_markets", lambda: load_markets_cached_async(ex))
            return ex.markets

    async def require_symbol(self, symbol: str) -> dict[str, Any]:
        await self.markets()
        return require_symbol(self.exchange, symbol)

    async def check_instruments(self, symbols: list[str], timeframes: tuple[str, ...] = ()) -> None:
        """Raise ConfigError unless the exchange knows every timeframe and symbol."""
        exchange = (await self._ready()).exchange
        for tf in timeframes:
            require_timeframe(exchange, tf)
        for symbol in symbols:
            await self.require_symbol(symbol)

    def page_limit(self, method: str, market: dict[str, Any] | None = None) -> int:
        """Rows per request: the config's window size capped by ccxt's ``features`` limit for ``method``
        on the market's type (spot, or swap/future by linear/inverse: Binance USD-M candles 500)."""
        features = getattr(self.exchange, "features", None) or {}
        market_type = (market or {}).get("type") or "spot"
        section = features.get(market_type) or features.get("spot") or {}
        if isinstance(section, dict) and method not in section and market is not None:
            sub = "linear" if market.get("linear") else "inverse" if market.get("inverse") else None
            section = section.get(sub) or {} if sub else {}
        info = section.get(method) if isinstance(section, dict) else None
        limit = info.get("limit") if isinstance(info, dict) else None
        return min(self.config.window_size, limit) if isinstance(limit, int) else self.config.window_size

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``exchange.method(*args, **kwargs)`` through limiter and retries."""
        fn = getattr((await self._ready()).exchange, method)
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
                answer = last_answer()
                # a 5xx is the server's trouble whatever class ccxt gives it (Bybit's retCode 10016: ExchangeError)
                if not is_transient(exc) and not (answer and answer[0] >= 500):
                    if isinstance(exc, _ccxt_base_error()):
                        raise PermanentExchangeError(
                            f"{self.config.exchange_id} refused {method}: {type(exc).__name__}: {_brief(exc)}"
                        ) from None
                    raise
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
                    self.config.exchange_id,
                    method,
                    type(exc).__name__,
                    retry,
                    policy.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)

    async def close(self) -> None:
        """Release the exchange (closing it unless it was passed in). Idempotent; the session stays
        usable: the next call builds a new exchange."""
        binding = self._binding
        if binding is None:
            return
        if binding.owned and binding.loop is not asyncio.get_running_loop() and not binding.loop.is_closed():
            raise EventLoopError(self._elsewhere(binding))
        await binding.release()


def check_instruments_blocking(
    config: CcxtBackfillConfig, symbols: list[str], timeframes: tuple[str, ...] = ()
) -> None:
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
    return ccxt_modules.errors().BaseError

"""Event-loop affinity: what belongs to the loop it was made on, and how it is let go.

asyncio primitives and ccxt's async exchanges (their aiohttp session, their throttler) belong to
the event loop they first ran on, yet a provider outlives a loop whenever a caller runs it with
``asyncio.run`` more than once. So:

* :class:`PerLoop` keeps one value per running loop (e.g. a dict of ``asyncio.Lock``) and forgets
  the values of closed loops.
* :class:`LoopBinding` holds one ccxt exchange on the loop it was built on. It registers an async
  generator with that loop: ``asyncio.run``, ``asyncio.Runner`` and Dagster's step loop close every
  async generator (``loop.shutdown_asyncgens()``) before they close the loop, and closing this one
  closes the exchange while its loop can still close the connections. The next loop builds a fresh
  exchange.
* :func:`run_sync` is the one bridge from synchronous code to a coroutine: its own loop, or
  (``in_running_loop="thread"``) a worker thread's loop when the caller already runs one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, Generic, Literal, TypeVar

from ccxt_questdb_assets.core.errors import CcxtQuestDBError

__all__ = ["EventLoopError", "LoopBinding", "PerLoop", "run_sync"]

T = TypeVar("T")


class EventLoopError(CcxtQuestDBError, RuntimeError):
    """Something bound to one event loop was used from another loop it cannot move to."""


def run_sync(make: Callable[[], Coroutine[Any, Any, T]], *, in_running_loop: Literal["raise", "thread"] = "raise") -> T:
    """Run the coroutine ``make()`` to completion from synchronous code, on a loop of its own.

    Called where an event loop already runs (a notebook, an async framework), blocking it would
    deadlock: ``"raise"`` says to await the async method instead; ``"thread"`` runs the coroutine
    on a worker thread's loop (context variables copied) and waits for it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    if in_running_loop == "raise":
        raise RuntimeError("a *_sync method was called inside a running event loop: await the async method instead")
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ccxt-questdb-sync") as pool:
        return pool.submit(contextvars.copy_context().run, lambda: asyncio.run(make())).result()


class PerLoop(Generic[T]):
    """One ``factory()`` value per running event loop; values of closed loops are forgotten."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()
        self._guard = threading.Lock()

    def get(self) -> T:
        """The running loop's value, made on the loop's first call."""
        loop = asyncio.get_running_loop()
        with self._guard:
            value = self._values.get(loop)
            if value is None:
                # An asyncio.Lock a loop waited on refers to that loop: drop closed loops' values.
                for closed in [other for other in self._values if other.is_closed()]:
                    del self._values[closed]
                value = self._values[loop] = self._factory()
            return value

    def clear(self) -> None:
        with self._guard:
            self._values.clear()


class LoopBinding:
    """A ccxt exchange and the asyncio state that goes with it, on the running loop.

    ``owned``: the binding closes the exchange when released, and when its loop shuts down.
    An exchange the caller passed in is never closed here. ``on_release(binding)`` is called first
    thing on release, so the holder stops handing out the exchange before it is closed.
    """

    def __init__(self, exchange: Any, *, owned: bool, on_release: Callable[[LoopBinding], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.exchange = exchange
        self.owned = owned
        self.markets_lock = asyncio.Lock()
        self._on_release = on_release
        self._keeper: AsyncGenerator[None, None] | None = None
        if owned:
            self._keeper = self._keep()
            _start(self._keeper)

    async def _keep(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._on_release(self)
            await self.exchange.close()

    async def release(self) -> None:
        """Forget the exchange and, when owned, close it. Idempotent."""
        if self._keeper is not None:
            await self._keeper.aclose()
        else:
            self._on_release(self)


def _start(keeper: AsyncGenerator[None, None]) -> None:
    """Run ``keeper`` to its first ``yield`` from synchronous code inside the running loop.

    Asking for the first step calls the loop's first-iteration hook, which registers the generator
    with the loop (so ``loop.shutdown_asyncgens()`` closes it); the body awaits nothing before that
    ``yield``, so a single ``send`` completes the step.
    """
    step = keeper.asend(None)
    with contextlib.suppress(StopIteration):
        step.send(None)

"""A FIFO semaphore usable at once from threads and from any number of asyncio event loops.

``asyncio.Semaphore`` is bound to one loop and ``threading.Semaphore`` blocks the loop, yet one
process-wide limiter is shared by Dagster steps that run in threads, each with its own loop.
Here the state sits behind a ``threading.Lock`` held only for a few instructions; async waiters
park on a future of their own loop (woken with ``call_soon_threadsafe``), sync waiters on a
``threading.Event``. A release hands the permit directly to the oldest waiter, so there is no
barging and a cancelled or timed-out waiter that was just handed a permit passes it on: no leak.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


class _Waiter:
    __slots__ = ("event", "future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.future: asyncio.Future[bool] | None = loop.create_future() if loop is not None else None
        self.event: threading.Event | None = threading.Event() if loop is None else None
        self.granted = False

    def wake(self) -> bool:
        """Wake the waiter; False when its event loop is gone (the permit must go to someone else)."""
        if self.event is not None:
            self.event.set()
            return True
        assert self.loop is not None and self.future is not None
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:  # loop closed
            return False
        return True


def _resolve(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


class HybridSemaphore:
    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError("semaphore value must be >= 1")
        self._capacity = value
        self._value = value
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def available(self) -> int:
        with self._lock:
            return self._value

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def _try_or_enqueue(self, loop: asyncio.AbstractEventLoop | None) -> _Waiter | None:
        with self._lock:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return None
            waiter = _Waiter(loop)
            self._waiters.append(waiter)
            return waiter

    def _abandon(self, waiter: _Waiter) -> bool:
        """Called when a waiter gives up. True if it had been granted the permit meanwhile."""
        with self._lock:
            if waiter.granted:
                return True
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
            return False

    async def acquire(self, timeout: float | None = None) -> None:
        """Take a permit; raises TimeoutError after ``timeout`` seconds (nothing is held then)."""
        waiter = self._try_or_enqueue(asyncio.get_running_loop())
        if waiter is None:
            return
        assert waiter.future is not None
        try:
            if timeout is None:
                await waiter.future
            else:
                async with asyncio.timeout(max(0.0, timeout)):
                    await waiter.future
        except BaseException:
            if self._abandon(waiter):
                self.release()
            raise

    def acquire_sync(self, timeout: float | None = None) -> bool:
        """Take a permit, blocking the thread; False after ``timeout`` seconds (nothing held)."""
        waiter = self._try_or_enqueue(None)
        if waiter is None:
            return True
        assert waiter.event is not None
        try:
            ok = waiter.event.wait(None if timeout is None else max(0.0, timeout))
        except BaseException:
            if self._abandon(waiter):
                self.release()
            raise
        # on a timeout, a permit granted between the timeout and now is kept
        return ok or self._abandon(waiter)

    def release(self) -> None:
        while True:
            with self._lock:
                if not self._waiters:
                    if self._value >= self._capacity:
                        raise RuntimeError("semaphore released more often than acquired")
                    self._value += 1
                    return
                waiter = self._waiters.popleft()
                waiter.granted = True
            if waiter.wake():
                return
            # its loop is closed: nobody will use or return this permit, hand it to the next one

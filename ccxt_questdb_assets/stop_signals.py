"""Ctrl-C and SIGTERM stop a command the same way, and its shutdown is not cut short.

Python turns SIGINT (a terminal's Ctrl-C) into ``KeyboardInterrupt`` but dies on SIGTERM without
unwinding anything, and leaves SIGINT ignored when the command was started so (a script's
background job); :func:`sigterm_as_interrupt` makes both raise ``KeyboardInterrupt``, so every
``with`` block that started a service stops it. :func:`signals_ignored` holds both off while
those services stop (a second Ctrl-C would otherwise leave them half-stopped); the stops are
bounded by their own SIGKILL fallbacks. Both only act in the main thread, where signals arrive.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType

__all__ = ["signals_ignored", "sigterm_as_interrupt"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextmanager
def _handlers(handlers: dict[signal.Signals, object]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def sigterm_as_interrupt() -> AbstractContextManager[None]:
    """Within the block, SIGTERM and SIGINT (even one inherited as ignored) raise ``KeyboardInterrupt``."""
    return _handlers({signal.SIGTERM: _interrupt, signal.SIGINT: _interrupt})


def signals_ignored() -> AbstractContextManager[None]:
    """Within the block, SIGINT and SIGTERM are ignored."""
    return _handlers({signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN})

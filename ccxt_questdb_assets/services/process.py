"""Child-process helpers shared by the local services."""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["parent_death_preexec"]

_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None = None


def parent_death_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux SIGKILL the child when its parent dies, or None.

    Only from the main thread: the kernel signals when the *thread* that forked exits, so a child
    started from a worker thread would die with that thread. ``prctl`` is looked up here, in the
    parent, so the child runs no loader code between fork and exec.
    """
    global _prctl
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    if _prctl is None:
        try:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            return None
    prctl = _prctl

    def _preexec() -> None:  # pragma: no cover - runs in the child
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return _preexec

"""Child-process helpers shared by the local services."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Self

__all__ = ["ChildProcess", "parent_death_preexec"]

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


class ChildProcess:
    """A service run as a child of this process (``process`` while started, else None); as a
    context manager it is started on entry and stopped on exit."""

    process: subprocess.Popen[bytes] | None

    def start(self) -> Self:
        raise NotImplementedError(f"{type(self).__name__} must say how it starts")

    def stop(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must say how it stops")

    def restart(self) -> Self:
        """Stop, then start again with the same settings and ports."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _state(self) -> str:
        """``pid N`` while running, else ``stopped`` (for a repr)."""
        return f"pid {self.pid}" if self.is_running() else "stopped"

    def _take_running(self) -> subprocess.Popen[bytes] | None:
        """The process if it still runs, to be stopped by the caller; this object forgets it either way."""
        proc, self.process = self.process, None
        return proc if proc is not None and proc.poll() is None else None

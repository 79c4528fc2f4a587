"""How a process serving the project's definitions ends: without CPython's last collection.

A Dagster run worker, code server or ``dagster dev`` process has imported Dagster, pandas and (to
fetch) ccxt: hundreds of modules whose objects refer to one another. At exit CPython runs the
atexit handlers, flushes the standard streams, then takes the modules apart and has its garbage
collector walk every cycle among their objects: 0.4 to 0.6 s on the 2-core reference machine, after
the run has already ended (docs/benchmarks.md). :func:`exit_without_final_collection` makes
``gc.freeze()`` the first handler to run, so that last walk skips those objects (0.05 s); their
memory goes back to the OS with the process, as it would have.

What it does not skip: every other atexit handler (logging's flush, Dagster's, the libraries'),
the flush of ``stdout`` and ``stderr``, and objects freed by reference counting. What it does: a
``__del__`` of an object left in a reference cycle does not run at exit. Nothing of the project
relies on one: QuestDB senders and connections, exchange sessions and event loops are closed
explicitly where they are used.
"""

from __future__ import annotations

import atexit
import gc

__all__ = ["exit_without_final_collection"]

_registered = False


def exit_without_final_collection() -> None:
    """Freeze the garbage collector when this process exits (once however often it is called)."""
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True

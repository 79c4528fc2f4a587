"""What lives as long as a process serving the project's definitions, kept out of the garbage collector's walks.

A Dagster run worker, code server or ``dagster dev`` process imports Dagster, pandas and the
project (and ccxt to fetch): about a million objects that refer to one another and stay for the
process's life. CPython's collector walks all of them in every full collection: seven walks of
0.02 to 0.15 s in a 92-day run that fetches, 0.6 s in all, then once more at exit (0.4 to 0.6 s,
after the run has ended; docs/benchmarks.md). :func:`freeze_long_lived` moves every object alive
once the definitions are first built into the collector's permanent generation (``gc.freeze()``),
so later walks skip them, and does it again as the first exit handler, so the last walk has nothing
left to do. The libraries a run loads only when it needs them (pandas for frames, an exchange's
ccxt module, the engine a run's body imports) come in through :func:`import_long_lived`: no
collection runs during the import (it would walk the half-built modules, 0.02 to 0.05 s each),
and in such a process what the import built is frozen as well, else every full collection of a
92-day run would walk those modules again (six walks, 0.28 s in all).

What it does not change: objects are still freed by reference counting; the objects a run makes
are collected as before; every other exit handler (logging's flush, Dagster's, the libraries')
runs and the standard streams are flushed. What it does: a cycle already garbage at that moment
(a few hundred objects the imports left) is never freed, and a ``__del__`` of an object in a cycle
does not run at exit. Nothing of the project relies on one: QuestDB senders and connections,
exchange sessions and event loops are closed explicitly where they are used.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import sys
from types import ModuleType

__all__ = ["freeze_long_lived", "import_long_lived"]

_frozen = False


def freeze_long_lived() -> None:
    """Freeze what is alive now, and again at exit; once per process however often it is called."""
    global _frozen
    if not _frozen:
        gc.freeze()
        atexit.register(gc.freeze)
        _frozen = True


def import_long_lived(name: str) -> ModuleType:
    """The module ``name``, imported now if it is not yet: with the collector paused, and, in a
    process that froze its long-lived objects, frozen with them (a library outside Dagster gets
    the pause alone)."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    paused = gc.isenabled()
    gc.disable()
    try:
        module = importlib.import_module(name)
    finally:
        if paused:
            gc.enable()
    if _frozen:
        gc.freeze()
    return module

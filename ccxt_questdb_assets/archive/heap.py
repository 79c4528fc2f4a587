"""Freed large blocks go back to the operating system (glibc), so an archive backfill's memory
stays flat with its span.

A month file passes through blocks of megabytes (the zip, its CSV's columns, the frame). glibc
serves a block above its mmap threshold (128 KiB at start) with its own mapping, returned when
freed, but raises the threshold to the size of each such block freed: after the first month
file, blocks of a few megabytes come from the heap and stay there, fragmented, once freed. A year
of month files then peaked 35 to 45 MiB above a month of day files. :func:`return_large_blocks`
fixes the threshold at 128 KiB for the process (glibc's own start, without the raising); a
process that sets ``MALLOC_MMAP_THRESHOLD_`` itself keeps its choice. Elsewhere (not Linux, or a
C library without ``mallopt``) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
THRESHOLD_BYTES = 128 * 1024
_lock = threading.Lock()
_fixed = False


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold at :data:`THRESHOLD_BYTES` (once a process); True if it is."""
    global _fixed
    with _lock:
        if _fixed:
            return True
        if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
            return False
        try:
            mallopt = ctypes.CDLL(ctypes.util.find_library("c") or None).mallopt
        except (OSError, AttributeError):  # no C library to ask, or one without mallopt
            return False
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        if mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) != 1:
            log.debug("mallopt(M_MMAP_THRESHOLD) refused: large blocks stay on glibc's defaults")
            return False
        _fixed = True
        return True

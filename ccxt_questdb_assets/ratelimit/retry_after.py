"""The ``Retry-After`` an exchange sends with a 429/418, as seconds."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any

__all__ = ["parse_retry_after"]


def parse_retry_after(value: Any, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: a number, delta-seconds text or an HTTP date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value)) if math.isfinite(value) else None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return max(0.0, seconds) if math.isfinite(seconds) else None

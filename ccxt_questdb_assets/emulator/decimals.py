"""Exchange decimals from the market's integer units (ticks, lots): Python formatters and
%-templates, as the dialects' JSON and the archive's CSV write them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def dec_formatter(decimals: int, width: int = 8) -> Callable[[int], str]:
    """Formatter of integer units of 10**-decimals as a decimal with at least ``width`` places
    (spot pads to 8; USD-M futures print exactly ``decimals``: ``width=0``)."""
    pad = "0" * max(0, width - decimals)
    scale = 10**decimals
    if decimals == 0:
        return (lambda x: f"{x}.{pad}") if pad else (lambda x: f"{x}")
    fmt = "{}.{:0" + str(decimals) + "d}" + pad
    return lambda x: fmt.format(*divmod(x, scale))


def dec_template(decimals: int, width: int = 8) -> str:
    """%-template of a quoted decimal with at least ``width`` places from (integer part, fraction) arguments."""
    pad = "0" * max(0, width - decimals)
    if decimals:
        return f'"%d.%0{decimals}d{pad}"'
    return f'"%d.{pad}"' if pad else '"%d"'


def split_units(units: np.ndarray, decimals: int) -> list[list[int]]:
    if decimals == 0:
        return [units.tolist()]
    q, r = np.divmod(units, 10**decimals)
    return [q.tolist(), r.tolist()]

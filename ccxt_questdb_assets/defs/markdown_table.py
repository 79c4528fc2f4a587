"""Rows as a markdown table for the metadata the UI shows (a partition's preview, a check's
examples), every value written as stored: a price is never rounded for display."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from numbers import Integral, Number, Real
from typing import Any

import numpy as np


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header, its rule (numbers right-aligned), then one line per row, columns padded."""
    raw = [tuple(row) for row in rows]
    cells = [[_cell(v) for v in row] for row in raw]
    widths = [max([len(str(c)), 3, *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    numeric = [bool(raw) and all(_is_number(row[i]) for row in raw) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        padded = (v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if n else (":" + "-" * (w + 1)) for w, n in zip(widths, numeric, strict=True))
        + "|"
    )
    return "\n".join([line([str(c) for c in columns]), rule, *(line(c) for c in cells)])


def _is_number(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, (bool, np.bool_))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        number = float(value)
        return "nan" if math.isnan(number) else repr(number)  # the shortest text that reads back exactly
    return str(value).replace("|", "\\|").replace("\n", " ")

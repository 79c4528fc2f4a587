"""The markdown tables of the metadata the UI shows (defs.markdown_table)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ccxt_questdb_assets.defs.markdown_table import markdown_table


def test_values_are_written_as_stored_and_numbers_right_aligned():
    text = markdown_table(
        ["symbol", "ts", "open", "trades", "note"],
        [
            ("BTC/USDT", "2024-01-02 00:00:00", 36777.98, np.int64(12), None),
            ("BTC/USDT", "2024-01-02 00:01:00", np.float64(0.30447), 3, "a|b\nc"),
            ("BTC/USDT", "2024-01-02 00:02:00", float("nan"), True, "x"),
        ],
    )
    header, rule, *lines = text.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == ["symbol", "ts", "open", "trades", "note"]
    # text columns left, number columns right; a column holding a bool is not numbers
    assert rule.split("|")[1:-1] == [":" + "-" * 9, ":" + "-" * 20, "-" * 9 + ":", ":" + "-" * 7, ":" + "-" * 7]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in (lines[0], lines[2])]
    assert cells[0] == ["BTC/USDT", "2024-01-02 00:00:00", "36777.98", "12", ""]
    assert cells[1] == ["BTC/USDT", "2024-01-02 00:02:00", "nan", "True", "x"]
    assert "a\\|b c" in lines[1] and "0.30447" in lines[1]  # a pipe or a line break cannot break the table
    assert len({len(line) for line in text.splitlines()}) == 1  # every line padded to the same width


def test_a_preview_shows_its_utc_times_as_pandas_wrote_them_and_a_header_alone_without_rows():
    """A partition's preview rows: ``ts`` a UTC datetime (``SeriesStore.period_heads``), written as a
    pandas Timestamp of the same instant was, which the previews showed before they came as rows."""
    times = [datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 0, 1, 0, 123000, tzinfo=UTC)]
    lines = markdown_table(["ts", "close"], zip(times, [42000.01, 42000.5], strict=True)).splitlines()
    assert len(lines) == 4
    assert lines[2] == "| 1970-01-01 00:00:00+00:00        | 42000.01 |"
    assert [str(pd.Timestamp(t)) for t in times] == [line.split("|")[1].strip() for line in lines[2:]]
    assert markdown_table(["ts", "close"], []).splitlines()[1] == "|:----|:------|"  # no rows: a header alone

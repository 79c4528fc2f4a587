"""The candle checks' names and tolerance: what their declaration (``checks``) and their
evaluation (``check_evaluations``) share."""

NO_GAPS = "no_gaps"
UNIQUE_TIMESTAMPS = "unique_increasing_timestamps"
OHLC_SANITY = "ohlc_sanity"
AGREES_WITH_EXCHANGE = "agrees_with_exchange_candles"

VOLUME_REL_TOL = 1e-9
"""Relative tolerance of a trade bar's volume against the exchange's candle (sums of floats)."""

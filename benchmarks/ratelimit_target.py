"""Target 5: a backfill under a configured limiter rate uses at least 95 % of it and never more.

The referee is the emulator's request log (arrival times at the exchange), not the limiter's own
bookkeeping. A backfill (``CcxtQuestDBProvider.ensure_range``: fetch, write, wait for WAL,
record coverage, page after page) runs against the emulator; then

* utilisation = achieved rate over the run / configured rate, where the achieved rate counts
  the tokens of every klines request after the first over the time from the first to the last;
* exceeded = the most tokens that arrived in any one-second window, against what a token
  bucket may admit in one second (capacity + rate x 1 s).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from benchmarks.harness import Bench, log, median, target
from ccxt_questdb_assets import CcxtQuestDBProvider

KLINES = "/api/v3/klines"
KLINES_WEIGHT = 2
START = datetime(2021, 1, 1, tzinfo=UTC)
NODE = "ohlcv:binance:BTC/USDT:1m"

# name -> (limiter options, tokens per klines request, rate in tokens/s, bucket capacity)
CONFIGS: dict[str, tuple[dict[str, Any], float, float, float]] = {
    "min_interval_s=0.1": ({"min_interval_s": 0.1, "burst": 1}, 1, 10.0, 1),
    "tokens_per_interval=20/1000ms": (
        {"tokens_per_interval": 20, "interval_ms": 1000, "burst": 2},
        KLINES_WEIGHT,
        20.0,
        2,
    ),
}


def _one_run(bench: Bench, limiter: dict[str, Any], pages: int) -> list[int]:
    emulator = bench.emulator
    conn = bench.connection
    provider = CcxtQuestDBProvider.from_config(
        {
            "exchange": "binance",
            "symbols": ["BTC/USDT"],
            "timeframe": "1m",
            "questdb": {
                "host": conn.host,
                "port": conn.port,
                "http_port": conn.http_port,
                "table_prefix": bench.table_prefix("rl"),
            },
            "base_url": emulator.base_url,
            "rate_limiter": {"scope": "local", "max_concurrency": 1, **limiter},
        }
    )
    emulator.control.clear_requests()
    start_s = START.timestamp()
    report = provider.ensure_range_sync(start_s, start_s + pages * 1000 * 60, node_id=NODE)
    assert report.requests == pages, (report.requests, pages)
    return [r["time_ms"] for r in emulator.control.requests(path=KLINES)]


def _peak_per_second(times_ms: list[int], tokens: float) -> float:
    """The most tokens whose requests arrived within any window of one second."""
    best, j = 0, 0
    for i in range(len(times_ms)):
        while times_ms[i] - times_ms[j] >= 1000:
            j += 1
        best = max(best, i - j + 1)
    return best * tokens


@target(
    "ratelimit", number=5, title="limiter utilisation against the emulator's request log", needs=("questdb", "emulator")
)
def ratelimit_target(bench: Bench) -> None:
    runs = bench.runs(3, 3)
    pages = bench.size(40, 150)
    configs = list(CONFIGS.items())[: bench.size(1, len(CONFIGS))]
    for name, (limiter, tokens, rate, capacity) in configs:
        log(f"ratelimit {name}: {runs} backfills of {pages} pages (~{pages * tokens / rate:.0f} s each)")
        achieved, peaks = [], []
        for _ in range(runs):
            times = _one_run(bench, limiter, pages)
            span_s = (times[-1] - times[0]) / 1000
            achieved.append((len(times) - 1) * tokens / span_s)
            peaks.append(_peak_per_second(times, tokens))
        allowed_1s = capacity + rate
        bench.record(
            "5 rate limit",
            f"{name}: achieved vs configured rate",
            value=median(achieved),
            baseline=rate,
            unit="tokens/s",
            op=">=",
            limit=0.95,
            runs=runs,
            samples={"achieved": achieved},
            note=f"{pages} klines pages a run, each fetched, written, made visible and covered",
        )
        bench.record(
            "5 rate limit",
            f"{name}: worst 1 s window vs bucket bound",
            value=max(peaks),
            baseline=allowed_1s,
            unit="tokens",
            op="<=",
            limit=1.0,
            runs=runs,
            samples={"peak": peaks},
            note=f"bound = capacity {capacity:g} + rate {rate:g}/s x 1 s; value is the max over runs",
        )

"""``python -m benchmarks``: run the library benchmarks and print every figure as a ratio.

    uv run python -m benchmarks                  # the full pass (about 25 min on 2 cores)
    uv run python -m benchmarks --quick          # fewer runs, smaller secondary sizes (about 11 min)
    uv run python -m benchmarks --targets peer   # one target (each target's --quick pass is under 5 min)
    uv run python -m benchmarks --targets read,coverage --runs 7
    uv run python -m benchmarks --questdb-dsn postgresql://admin:quest@db:8812/qdb --questdb-http db:9000

Without ``--questdb-dsn`` a private QuestDB is started in a temporary directory (and deleted
afterwards); the exchange emulator always runs as a local subprocess.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from benchmarks import TARGET_MODULES
from benchmarks.harness import TARGETS, Bench, log, render_table


def _load_targets() -> None:
    for module in TARGET_MODULES:
        importlib.import_module(module)


def _select(spec: str | None) -> list[str]:
    ordered = sorted(TARGETS.values(), key=lambda t: t.number)
    if not spec:
        return [t.name for t in ordered]
    chosen = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        match = [t.name for t in ordered if t.name == item or str(t.number) == item]
        if not match:
            valid = ", ".join(f"{t.number}/{t.name}" for t in ordered)
            raise SystemExit(f"unknown target {item!r}; valid: {valid}")
        chosen += [m for m in match if m not in chosen]
    return chosen


def main(argv: list[str] | None = None) -> int:
    _load_targets()
    argv = sys.argv[1:] if argv is None else argv
    ordered = sorted(TARGETS.values(), key=lambda t: t.number)
    listing = "\n".join(f"  {t.number}  {t.name:<10} {t.title}" for t in ordered)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Library benchmarks against a local QuestDB and the exchange emulator. Every figure is "
        "the median of several runs, shown as a ratio against a baseline measured in the same invocation.",
        epilog="targets:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller secondary sizes")
    parser.add_argument("--targets", metavar="LIST", help="comma-separated names or numbers (default: all)")
    parser.add_argument("--runs", type=int, metavar="N", help="runs per figure (default: 3 quick, 5 full)")
    parser.add_argument("--questdb-dsn", metavar="DSN", help="use this QuestDB instead of starting one")
    parser.add_argument("--questdb-http", metavar="HOST:PORT", help="its HTTP address (with --questdb-dsn)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--keep-tables", action="store_true", help="do not drop the benchmark tables")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(listing)
        return 0
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    names = _select(args.targets)
    bench = Bench(
        quick=args.quick,
        runs=args.runs,
        questdb_dsn=args.questdb_dsn,
        questdb_http=args.questdb_http,
        keep_tables=args.keep_tables,
    )
    started = time.monotonic()
    failed: list[str] = []
    try:
        for name in names:
            t = TARGETS[name]
            log(f"target {t.number} ({t.name}): {t.title}")
            t0 = time.monotonic()
            try:
                t.fn(bench)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other targets
                failed.append(f"{t.number}/{t.name}: {type(exc).__name__}: {exc}")
                log(f"target {t.name} failed: {type(exc).__name__}: {exc}")
            log(f"target {t.name} took {time.monotonic() - t0:.0f} s")
    finally:
        machine = bench.machine() if bench.results else {}
        bench.close()
    print()
    print(render_table(bench.results))
    print()
    if machine:
        print(
            f"machine: {machine['cores']} cores, {machine['memory_gib']} GiB, Python {machine['python']}, "
            f"QuestDB {machine['questdb']}; {'quick' if args.quick else 'full'} pass in "
            f"{time.monotonic() - started:.0f} s; 1-min load average {machine['load_average_1m'][0]} at the start, "
            f"{machine['load_average_1m'][1]} at the end (other work on the machine skews absolute times)"
        )
    for line in failed:
        print(f"ERROR {line}")
    if args.json:
        bench.to_json(args.json, argv)
    missed = [r for r in bench.results if r.ok is False]
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    raise SystemExit(main())

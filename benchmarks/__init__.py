"""Library-level benchmarks: every figure is a ratio against a baseline timed in the same run.

Run ``uv run python -m benchmarks`` (``--quick`` for a fast pass, ``--targets write,read`` to
select, ``--help`` for the rest). See docs/benchmarks.md for the targets, the method and the
last measured table.

Adding a target: write a module
in this package with a function decorated by ``benchmarks.harness.target(...)``, taking a
``Bench`` and calling ``bench.record(...)`` for each figure, and add the module's name to
``TARGET_MODULES`` below. ``Bench`` gives a QuestDB (``bench.connection``, ``bench.client``),
the emulator (``bench.emulator``), unique table names (``bench.table_prefix()``), an event loop
(``bench.run(coro)``) and interleaved timing (``benchmarks.harness.alternate``).
"""

#: Modules whose ``@target`` functions make up the suite, in run order.
TARGET_MODULES = (
    "benchmarks.storage_targets",  # 1 write, 2 read, 3 coverage
    "benchmarks.dagster_target",  # 4 end to end through Dagster
    "benchmarks.ratelimit_target",  # 5 rate-limit utilisation
    "benchmarks.memory_target",  # 6 backfill peak RSS
    "benchmarks.launch_target",  # 7 one-partition run launched as the UI does, through dagster dev
    "benchmarks.scale_target",  # 8 a desk's scale: definitions load, partition status, backfill launch, ticks
    "benchmarks.peer_target",  # 9 freqtrade vs this project, whole processes, issue 15's workloads
    "benchmarks.archive_target",  # 10 four years from the emulated archive vs a floor script; memory
)

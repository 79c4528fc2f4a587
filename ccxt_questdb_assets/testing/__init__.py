"""Test support, installed with the ``testing`` extra (``pytest`` and its plugins): pytest fixtures
that start real services (QuestDB, Redis, the exchange emulator), Dagster runs in child processes,
``dagster dev`` for tests and benchmarks, a webhook receiver, and candle comparisons against the
emulator's ground truth.

Nothing of the product imports it; it imports the product.
"""

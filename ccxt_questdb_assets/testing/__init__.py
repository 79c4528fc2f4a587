"""Test support shipped with the package: the exchange emulator and pytest fixtures.

Never imported by the core, adapter, history or Dagster layers.
"""

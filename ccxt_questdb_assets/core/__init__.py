"""Pure domain logic: no I/O, no third-party services."""

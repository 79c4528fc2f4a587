"""History engine: the spec's provider and backfill strategy, usable without Dagster."""

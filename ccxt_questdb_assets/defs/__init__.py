"""Dagster layer: resources, IO manager, assets, checks, automation."""

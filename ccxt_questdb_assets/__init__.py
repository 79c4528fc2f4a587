"""Exchange market data as durable, auto-backfilled time series in QuestDB."""

__version__ = "0.1.0"

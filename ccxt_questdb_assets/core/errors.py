"""Typed errors. Every message names the offending value and how to fix it.

Messages never include secrets: callers pass redacted values only.
"""

from __future__ import annotations


class CcxtQuestDBError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(CcxtQuestDBError, ValueError):
    """A configuration value is missing, misspelt or out of range."""


class ServiceError(CcxtQuestDBError, RuntimeError):
    """A local service (QuestDB, Redis, the exchange emulator) could not be fetched, started or reached."""


class ExchangeError(CcxtQuestDBError):
    """The exchange answered something we cannot use."""


class PermanentExchangeError(ExchangeError):
    """Retrying cannot help (bad symbol, authentication, bad request)."""


class TransientExchangeError(ExchangeError):
    """Retries were exhausted on an error that could have passed (network, 5xx, rate limit)."""


class StorageError(CcxtQuestDBError):
    """QuestDB rejected or failed a read or write."""


class ExchangeDataError(PermanentExchangeError):
    """The exchange answered rows that break the data model (NaN, high below low, negative volume...).

    Nothing of the page is written.
    """


class InvalidFrameError(CcxtQuestDBError, ValueError):
    """A DataFrame handed to storage (an asset's output) breaks the table's data model.

    Nothing of it is written.
    """


class UnsupportedHistoryError(PermanentExchangeError):
    """The exchange cannot give the history asked for (no public trade history, candles only recent).

    Raised before any request; nothing is stored or recorded as covered. The message names the
    exchange, its limit and the alternative.
    """


class UnprovenExchangeError(ConfigError):
    """The exchange's paging dialect has not been proven exact by this project (see docs/exchanges.md)."""

"""Fetcher configuration: the spec's ``CcxtBackfillConfig`` and its trades twin."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ccxt_questdb_assets.archive.layout import ArchiveMarket
from ccxt_questdb_assets.archive.settings import ArchiveSettings
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.timeframes import Timeframe
from ccxt_questdb_assets.exchange.dialects import ExchangeDialect, dialect_for
from ccxt_questdb_assets.exchange.retry import RetryPolicy
from ccxt_questdb_assets.ratelimit import RateLimiterConfig


@dataclass(slots=True)
class CcxtBackfillConfig:
    """How to page one exchange: the spec's fields plus connection options.

    ``window_size`` is the page size asked for; it is capped by the exchange's own limit from
    ccxt's metadata. ``api_key_env``/``secret_env`` name environment variables: secrets are
    never part of the configuration itself.
    """

    exchange_id: str
    symbols: list[str] | None = None
    timeframe: str = "1m"
    window_size: int = 1000
    max_retries: int = 3
    retry_backoff_s: float = 0.5
    rate_limiter: RateLimiterConfig = field(default_factory=lambda: RateLimiterConfig.from_mapping(None))
    base_url: str | None = None
    ccxt_options: dict[str, Any] = field(default_factory=dict)
    timeout_ms: int = 10_000
    api_key_env: str | None = None
    secret_env: str | None = None
    # A bar (or trade second) counts as final this long after it closed: exchanges publish late.
    final_lag_ms: int = 2_000
    # Page an exchange whose dialect this project has not proven exact (see exchange/dialects.py).
    allow_unproven_exchange: bool = False
    # Closed history from the exchange's public archive (archive/), the rest through REST.
    archive: ArchiveSettings | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.exchange_id, str) or not self.exchange_id.strip():
            raise ConfigError(f"exchange {self.exchange_id!r} must be a ccxt exchange id such as 'binance'")
        Timeframe.parse(self.timeframe)
        if (
            isinstance(self.window_size, bool)
            or not isinstance(self.window_size, int)
            or not 1 <= self.window_size <= 100_000
        ):
            raise ConfigError(
                f"window_size {self.window_size!r} must be a whole number from 1 to 100000 (rows per request)"
            )
        if isinstance(self.timeout_ms, bool) or not isinstance(self.timeout_ms, int) or self.timeout_ms <= 0:
            raise ConfigError(f"timeout_ms {self.timeout_ms!r} must be a positive whole number of milliseconds")
        if isinstance(self.final_lag_ms, bool) or not isinstance(self.final_lag_ms, int) or self.final_lag_ms < 0:
            raise ConfigError(f"final_lag_ms {self.final_lag_ms!r} must be a whole number of milliseconds >= 0")
        if self.symbols is not None and (
            not isinstance(self.symbols, list) or not all(isinstance(s, str) and s for s in self.symbols)
        ):
            raise ConfigError(f"symbols {self.symbols!r} must be a list of symbols such as ['BTC/USDT']")
        if not isinstance(self.allow_unproven_exchange, bool):
            raise ConfigError(f"allow_unproven_exchange {self.allow_unproven_exchange!r} must be true or false")
        RetryPolicy(max_retries=self.max_retries, backoff_s=self.retry_backoff_s)  # validates
        if self.archive is not None:
            ArchiveMarket.of(self.exchange_id)  # refuses an exchange without an archive
        # refuses an exchange whose dialect is not proven, unless opted in
        dialect_for(self.exchange_id, allow_unproven=self.allow_unproven_exchange)

    @property
    def dialect(self) -> ExchangeDialect:
        return dialect_for(self.exchange_id, allow_unproven=self.allow_unproven_exchange)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries, backoff_s=self.retry_backoff_s)

    def credentials(self) -> dict[str, str]:
        """API credentials read from the environment now (never stored on the config)."""
        creds: dict[str, str] = {}
        for key, env in (("apiKey", self.api_key_env), ("secret", self.secret_env)):
            if env:
                value = os.environ.get(env)
                if not value:
                    raise ConfigError(f"environment variable {env} (named by the config) is not set")
                creds[key] = value
        return creds


# Trades need no timeframe; one config class serves both so the spec's name keeps working.
CcxtTradesConfig = CcxtBackfillConfig

"""Which exchange errors are worth retrying, and how long to wait.

Transient: network failures, timeouts, 5xx, rate limits (ccxt's ``OperationFailed`` family,
which holds ``NetworkError``, ``RequestTimeout``, ``ExchangeNotAvailable``, ``DDoSProtection``
and ``RateLimitExceeded``), and a 2xx whose body is not valid JSON (ccxt would parse the raw text into
junk rows; ``build_exchange`` makes it raise :class:`MalformedResponse` instead). Everything else
(bad symbol, authentication, bad request) is permanent: retrying cannot help and only burns the
rate limit.

``max_retries`` counts retries after the first attempt: ``max_retries=3`` means at most four
attempts. Waits grow exponentially from ``backoff_s`` up to ``max_backoff_s`` with full
jitter, and are never shorter than the exchange's ``Retry-After``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ccxt_questdb_assets.core import ccxt_modules
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.ratelimit.retry_after import parse_retry_after


class MalformedResponse(Exception):
    """The exchange answered 200 with a body that is not the JSON it promised."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (MalformedResponse, TimeoutError, ConnectionError)):
        return True
    return isinstance(exc, ccxt_modules.errors().OperationFailed)


def rate_limit_status(exc: BaseException, http_status: int | None = None) -> int | None:
    """The status of a rate-limit answer (429 slow down, 418 banned, a WAF's 403...), else None.

    ccxt maps both statuses to ``DDoSProtection`` for some exchanges (Binance), so the answer's
    own status decides when it is known; the exception class only when it is not. A rate-limit
    error in the body of a 2xx answer (Bybit's retCode 10006, Kraken's ``EGeneral:Too many
    requests``) asks to slow down: 429, never a ban.
    """
    errors = ccxt_modules.errors()
    if not isinstance(exc, (errors.RateLimitExceeded, errors.DDoSProtection)):
        return None
    if isinstance(http_status, int) and http_status >= 400:
        return http_status
    if isinstance(http_status, int) and 200 <= http_status < 300:
        return 429
    return 429 if isinstance(exc, errors.RateLimitExceeded) else 418


def retry_after_seconds(headers: object) -> float | None:
    """The ``Retry-After`` header of the last response in seconds (delta or HTTP-date form), if any."""
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            return parse_retry_after(value)
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(
                f"max_retries {self.max_retries!r} must be a whole number >= 0 (retries after the first attempt)"
            )
        if (
            not isinstance(self.backoff_s, (int, float))
            or isinstance(self.backoff_s, bool)
            or not 0 <= self.backoff_s <= 3600
        ):
            raise ConfigError(f"retry_backoff_s {self.backoff_s!r} must be a number of seconds between 0 and 3600")
        if not 0 <= self.max_backoff_s <= 3600:
            raise ConfigError(f"max_backoff_s {self.max_backoff_s!r} must be between 0 and 3600 seconds")

    def delay(
        self, retry_number: int, *, retry_after_s: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based)."""
        ceiling = min(self.max_backoff_s, self.backoff_s * (2 ** (retry_number - 1)))
        wait = (rng or random).uniform(ceiling / 2, ceiling) if ceiling > 0 else 0.0
        return max(wait, retry_after_s or 0.0)

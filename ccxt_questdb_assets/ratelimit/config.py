"""RateLimiterConfig: the spec's ``rate_limiter`` mapping, parsed and validated.

Every documented option is accepted; an unknown option, scope or placeholder is a ConfigError.
See docs/rate-limiting.md for the meaning of each option and how they map to token buckets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.redaction import redact_dsn
from ccxt_questdb_assets.ratelimit.options import (
    DEFAULT_PENALTY_BACKOFF_MS,
    RateLimiterOptions,
    check_dsn,
)

#: Config key under ``connectors`` that holds the cluster DSN (the spec's fallback).
CONNECTORS_DSN_KEY = "ccxt_rate_limiter_redis"
#: Environment variables consulted for the DSN, in order: this project's, then the spec's legacy one.
ENV_DSN_VARS = ("CCXT_QUESTDB_RATE_LIMITER_REDIS", "QMTL_CCXT_RATE_LIMITER_REDIS")

DEFAULT_INTERVAL_MS = 1000


@dataclass(frozen=True)
class Band:
    """One token bucket: ``capacity`` tokens, refilled at ``rate_per_s``.

    ``per_request`` bands charge one token per request whatever its weight (``min_interval_s``);
    the other band charges the request's weight (``tokens_per_interval``).
    """

    name: str
    rate_per_s: float
    capacity: float
    per_request: bool

    def cost(self, weight: float) -> float:
        return 1.0 if self.per_request else float(weight)


@dataclass(frozen=True)
class RateLimiterConfig:
    """Validated limiter settings. Build with :meth:`from_mapping`; defaults are the original's."""

    scope: str = "process"
    max_concurrency: int = 1
    min_interval_s: float | None = None
    tokens_per_interval: float | None = None
    interval_ms: float | None = None
    burst_tokens: float | None = None
    local_semaphore: int | None = None
    key_suffix: str | None = None
    key_template: str | None = None
    penalty_backoff_ms: float = DEFAULT_PENALTY_BACKOFF_MS
    redis_dsn: str | None = field(default=None, repr=False)
    redis_dsn_source: str | None = None
    on_redis_error: str = "fallback"
    redis_retry_s: float = 1.0
    redis_timeout_s: float = 1.0
    fallback_fraction: float = 1.0
    endpoint_weights: tuple[tuple[str, float], ...] = ()

    # ------------------------------------------------------------------ parsing
    @classmethod
    def from_mapping(
        cls,
        options: Mapping[str, Any] | RateLimiterOptions | RateLimiterConfig | None,
        *,
        connectors: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> RateLimiterConfig:
        """Parse the spec's ``rate_limiter`` dict (``None`` gives the defaults).

        ``connectors`` is the ``connectors`` config section (its ``ccxt_rate_limiter_redis`` key is
        the DSN fallback); ``environ`` defaults to ``os.environ``.
        """
        if isinstance(options, RateLimiterConfig):
            return options
        parsed = RateLimiterOptions.parse({} if options is None else options, "rate_limiter")
        return cls.from_options(parsed, connectors=connectors, environ=environ)

    @classmethod
    def from_options(
        cls,
        options: RateLimiterOptions,
        *,
        connectors: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> RateLimiterConfig:
        """The settings of validated options, the Redis DSN resolved through its fallback chain."""
        environ = os.environ if environ is None else environ
        dsn, source = cls._resolve_dsn(options.redis_dsn, connectors, environ)
        if options.scope == "cluster" and dsn is None:
            raise ConfigError(
                "rate_limiter.scope is 'cluster' but no Redis DSN is set: set rate_limiter.redis_dsn, "
                f"connectors.{CONNECTORS_DSN_KEY} or the environment variable {ENV_DSN_VARS[0]} "
                f"(or the legacy {ENV_DSN_VARS[1]})"
            )
        tpi = options.tokens_per_interval
        burst = options.burst_tokens if options.burst_tokens is not None else options.burst
        return cls(
            scope=options.scope,
            max_concurrency=options.max_concurrency,
            min_interval_s=options.interval_s,
            tokens_per_interval=tpi,
            interval_ms=options.interval_ms
            if options.interval_ms is not None
            else (DEFAULT_INTERVAL_MS if tpi else None),
            burst_tokens=burst,
            local_semaphore=options.local_semaphore,
            key_suffix=options.key_suffix,
            key_template=options.key_template,
            penalty_backoff_ms=options.penalty_backoff_ms,
            redis_dsn=dsn,
            redis_dsn_source=source,
            on_redis_error=options.on_redis_error,
            redis_retry_s=options.redis_retry_s,
            redis_timeout_s=options.redis_timeout_s,
            fallback_fraction=options.fallback_fraction,
            endpoint_weights=tuple(sorted((options.endpoint_weights or {}).items())),
        )

    @staticmethod
    def _resolve_dsn(
        given: str | None, connectors: Mapping[str, Any] | None, environ: Mapping[str, str]
    ) -> tuple[str | None, str | None]:
        if given:
            return check_dsn(str(given), "rate_limiter.redis_dsn"), "rate_limiter.redis_dsn"
        if connectors is not None:
            if not isinstance(connectors, Mapping):
                raise ConfigError(f"connectors must be a mapping, got {type(connectors).__name__}")
            value = connectors.get(CONNECTORS_DSN_KEY)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"connectors.{CONNECTORS_DSN_KEY} must be a string")
            if value and value.strip():
                src = f"connectors.{CONNECTORS_DSN_KEY}"
                return check_dsn(value.strip(), src), src
        for var in ENV_DSN_VARS:
            value = environ.get(var)
            if value and value.strip():
                return check_dsn(value.strip(), f"${var}"), f"${var}"
        return None, None

    # ------------------------------------------------------------------ derived values
    @property
    def concurrency(self) -> int:
        """Requests of the key in flight at once in this process: ``local_semaphore`` (the spec's
        "process local concurrency cap"), default ``max_concurrency``. Per fetcher in ``local`` scope."""
        return self.local_semaphore if self.local_semaphore is not None else self.max_concurrency

    @property
    def penalty_backoff_s(self) -> float:
        return self.penalty_backoff_ms / 1000.0

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.endpoint_weights)

    def bands(self, fraction: float = 1.0) -> tuple[Band, ...]:
        """The token buckets this config asks for (empty: concurrency and cooldown only).

        * ``tokens_per_interval`` / ``interval_ms`` -> band ``tok``: rate tpi / interval, capacity
          ``burst_tokens`` (default tpi), each request costs its weight.
        * ``min_interval_s`` -> band ``req``: one token per ``min_interval_s``, each request costs
          one token whatever its weight; capacity ``burst_tokens`` (default 1) when it is the only
          band, else 1 (a strict minimum spacing next to the weight bucket).
        """
        bands: list[Band] = []
        if self.tokens_per_interval is not None:
            interval_s = (self.interval_ms or DEFAULT_INTERVAL_MS) / 1000.0
            cap = self.burst_tokens if self.burst_tokens is not None else self.tokens_per_interval
            bands.append(Band("tok", self.tokens_per_interval / interval_s * fraction, cap, False))
        if self.min_interval_s is not None:
            if self.tokens_per_interval is None:
                cap = self.burst_tokens if self.burst_tokens is not None else 1.0
            else:
                cap = 1.0
            bands.append(Band("req", 1.0 / self.min_interval_s * fraction, cap, True))
        return tuple(bands)

    def budget_signature(self) -> dict[str, Any]:
        """The settings every holder of one key must agree on (they define the shared budget)."""
        sig: dict[str, Any] = {
            "scope": self.scope,
            "concurrency": self.concurrency,
            "bands": self.bands(),
            "penalty_backoff_ms": self.penalty_backoff_ms,
            "endpoint_weights": dict(self.endpoint_weights),
        }
        if self.scope == "cluster":
            sig.update(
                redis_dsn=redact_dsn(self.redis_dsn),
                on_redis_error=self.on_redis_error,
                fallback_fraction=self.fallback_fraction,
                redis_retry_s=self.redis_retry_s,
                redis_timeout_s=self.redis_timeout_s,
            )
        return sig

    def to_mapping(self) -> dict[str, Any]:
        """The options as a spec-style dict (DSN redacted), for logs and metadata."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "redis_dsn":
                value = redact_dsn(value)
            if f.name == "endpoint_weights":
                value = dict(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:  # the DSN may carry a password
        parts = ", ".join(f"{k}={v!r}" for k, v in self.to_mapping().items() if v not in (None, (), {}))
        return f"RateLimiterConfig({parts})"

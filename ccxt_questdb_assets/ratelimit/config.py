"""RateLimiterConfig: the spec's ``rate_limiter`` mapping, parsed and validated.

Every documented option is accepted; an unknown option, scope or placeholder is a ConfigError.
See docs/rate-limiting.md for the meaning of each option and how they map to token buckets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.redaction import redact_dsn
from ccxt_questdb_assets.ratelimit.keys import parse_key_template

SCOPES = ("local", "process", "cluster")
ON_REDIS_ERROR = ("fallback", "raise")

#: Config key under ``connectors`` that holds the cluster DSN (the spec's fallback).
CONNECTORS_DSN_KEY = "ccxt_rate_limiter_redis"
#: Environment variables consulted for the DSN, in order: this project's, then the spec's legacy one.
ENV_DSN_VARS = ("CCXT_QUESTDB_RATE_LIMITER_REDIS", "QMTL_CCXT_RATE_LIMITER_REDIS")

DEFAULT_PENALTY_BACKOFF_MS = 1000
DEFAULT_INTERVAL_MS = 1000

# Options of the spec, then this project's additions (documented in docs/rate-limiting.md).
_SPEC_OPTIONS = (
    "scope",
    "max_concurrency",
    "min_interval_s",
    "min_interval_ms",
    "tokens_per_interval",
    "interval_ms",
    "burst_tokens",
    "burst",
    "local_semaphore",
    "key_suffix",
    "key_template",
    "penalty_backoff_ms",
    "redis_dsn",
)
_EXTRA_OPTIONS = (
    "on_redis_error",
    "redis_retry_s",
    "redis_timeout_s",
    "fallback_fraction",
    "endpoint_weights",
)
KNOWN_OPTIONS = _SPEC_OPTIONS + _EXTRA_OPTIONS


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


def _num(
    options: Mapping[str, Any],
    name: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    exclusive: bool = False,
) -> float | int | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value) if not integer else int(value)
            except ValueError:
                raise ConfigError(f"rate_limiter.{name} must be a number, got {value!r}") from None
        else:
            raise ConfigError(f"rate_limiter.{name} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"rate_limiter.{name} must be finite, got {value!r}")
    if integer and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"rate_limiter.{name} must be a whole number, got {value!r}")
        value = int(value)
    if minimum is not None:
        bad = value <= minimum if exclusive else value < minimum
        if bad:
            rel = ">" if exclusive else ">="
            raise ConfigError(f"rate_limiter.{name} must be {rel} {minimum}, got {value!r}")
    return value


def _opt_str(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"rate_limiter.{name} must be a string, got {type(value).__name__} {value!r}")
    value = value.strip()
    return value or None


def _check_dsn(dsn: str, source: str) -> str:
    try:
        scheme = urlsplit(dsn).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"Redis DSN from {source} must start with redis://, rediss:// or unix://, got {redact_dsn(dsn)!r}"
        )
    return dsn


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
        options: Mapping[str, Any] | None,
        *,
        connectors: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> RateLimiterConfig:
        """Parse the spec's ``rate_limiter`` dict (``None`` gives the defaults).

        ``connectors`` is the ``connectors`` config section (its ``ccxt_rate_limiter_redis`` key is
        the DSN fallback); ``environ`` defaults to ``os.environ``.
        """
        if options is None:
            options = {}
        if isinstance(options, RateLimiterConfig):
            return options
        if not isinstance(options, Mapping):
            raise ConfigError(f"rate_limiter must be a mapping, got {type(options).__name__}")
        unknown = sorted(str(k) for k in options if k not in KNOWN_OPTIONS)
        if unknown:
            raise ConfigError(
                f"rate_limiter has unknown option(s) {unknown}; known options: {', '.join(KNOWN_OPTIONS)}"
            )
        environ = os.environ if environ is None else environ

        scope = options.get("scope", "process")
        if not isinstance(scope, str) or scope.strip().lower() not in SCOPES:
            raise ConfigError(f"rate_limiter.scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        scope = scope.strip().lower()

        max_concurrency = _num(options, "max_concurrency", integer=True, minimum=1)
        local_semaphore = _num(options, "local_semaphore", integer=True, minimum=1)

        min_s = _num(options, "min_interval_s", minimum=0, exclusive=True)
        min_ms = _num(options, "min_interval_ms", minimum=0, exclusive=True)
        if (
            min_s is not None
            and min_ms is not None
            and not math.isclose(min_s * 1000.0, min_ms, rel_tol=1e-9, abs_tol=1e-6)
        ):
            raise ConfigError(
                f"rate_limiter.min_interval_s ({min_s}) and min_interval_ms ({min_ms}) disagree; set only one"
            )
        if min_s is None and min_ms is not None:
            min_s = min_ms / 1000.0

        tpi = _num(options, "tokens_per_interval", minimum=0, exclusive=True)
        interval_ms = _num(options, "interval_ms", minimum=0, exclusive=True)
        if interval_ms is not None and tpi is None:
            raise ConfigError("rate_limiter.interval_ms is set without tokens_per_interval; set both or neither")

        burst = _num(options, "burst_tokens", minimum=0, exclusive=True)
        burst_alias = _num(options, "burst", minimum=0, exclusive=True)
        if burst is not None and burst_alias is not None and burst != burst_alias:
            raise ConfigError(
                f"rate_limiter.burst ({burst_alias}) and burst_tokens ({burst}) disagree; "
                "burst is an alias of burst_tokens, set only one"
            )
        if burst is None:
            burst = burst_alias
        if burst is not None and tpi is None and min_s is None:
            raise ConfigError("rate_limiter.burst_tokens/burst needs a rate: set min_interval_s or tokens_per_interval")

        penalty = _num(options, "penalty_backoff_ms", minimum=0)
        raw_suffix = options.get("key_suffix")
        if raw_suffix is None:
            key_suffix = None
        elif isinstance(raw_suffix, bool) or not isinstance(raw_suffix, (str, int)):
            raise ConfigError(f"rate_limiter.key_suffix must be a string, got {raw_suffix!r}")
        else:
            key_suffix = str(raw_suffix).strip() or None
        key_template = _opt_str(options, "key_template")
        if key_template is not None:
            parse_key_template(key_template)  # raises ConfigError on unknown placeholders / bad braces

        on_err = options.get("on_redis_error", "fallback")
        if not isinstance(on_err, str) or on_err.strip().lower() not in ON_REDIS_ERROR:
            raise ConfigError(f"rate_limiter.on_redis_error must be one of {', '.join(ON_REDIS_ERROR)}, got {on_err!r}")
        retry_s = _num(options, "redis_retry_s", minimum=0, exclusive=True)
        timeout_s = _num(options, "redis_timeout_s", minimum=0, exclusive=True)
        fraction = _num(options, "fallback_fraction", minimum=0, exclusive=True)
        if fraction is not None and fraction > 1:
            raise ConfigError(f"rate_limiter.fallback_fraction must be in (0, 1], got {fraction!r}")

        weights_raw = options.get("endpoint_weights") or {}
        if not isinstance(weights_raw, Mapping):
            raise ConfigError("rate_limiter.endpoint_weights must map endpoint names to weights")
        weights: list[tuple[str, float]] = []
        for name, w in weights_raw.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"rate_limiter.endpoint_weights has a bad endpoint name {name!r}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
                raise ConfigError(f"rate_limiter.endpoint_weights[{name!r}] must be a number > 0, got {w!r}")
            weights.append((name.strip(), float(w)))

        dsn, source = cls._resolve_dsn(options, connectors, environ)
        if scope == "cluster" and dsn is None:
            raise ConfigError(
                "rate_limiter.scope is 'cluster' but no Redis DSN is set: set rate_limiter.redis_dsn, "
                f"connectors.{CONNECTORS_DSN_KEY} or the environment variable {ENV_DSN_VARS[0]} "
                f"(or the legacy {ENV_DSN_VARS[1]})"
            )

        kwargs: dict[str, Any] = {
            "scope": scope,
            "min_interval_s": float(min_s) if min_s is not None else None,
            "tokens_per_interval": float(tpi) if tpi is not None else None,
            "interval_ms": float(interval_ms) if interval_ms is not None else (DEFAULT_INTERVAL_MS if tpi else None),
            "burst_tokens": float(burst) if burst is not None else None,
            "local_semaphore": local_semaphore,
            "key_suffix": key_suffix,
            "key_template": key_template,
            "redis_dsn": dsn,
            "redis_dsn_source": source,
            "on_redis_error": on_err.strip().lower(),
            "endpoint_weights": tuple(sorted(weights)),
        }
        if max_concurrency is not None:
            kwargs["max_concurrency"] = max_concurrency
        if penalty is not None:
            kwargs["penalty_backoff_ms"] = float(penalty)
        if retry_s is not None:
            kwargs["redis_retry_s"] = float(retry_s)
        if timeout_s is not None:
            kwargs["redis_timeout_s"] = float(timeout_s)
        if fraction is not None:
            kwargs["fallback_fraction"] = float(fraction)
        return cls(**kwargs)

    @staticmethod
    def _resolve_dsn(
        options: Mapping[str, Any], connectors: Mapping[str, Any] | None, environ: Mapping[str, str]
    ) -> tuple[str | None, str | None]:
        dsn = _opt_str(options, "redis_dsn")
        if dsn:
            return _check_dsn(dsn, "rate_limiter.redis_dsn"), "rate_limiter.redis_dsn"
        if connectors is not None:
            if not isinstance(connectors, Mapping):
                raise ConfigError(f"connectors must be a mapping, got {type(connectors).__name__}")
            value = connectors.get(CONNECTORS_DSN_KEY)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"connectors.{CONNECTORS_DSN_KEY} must be a string")
            if value and value.strip():
                src = f"connectors.{CONNECTORS_DSN_KEY}"
                return _check_dsn(value.strip(), src), src
        for var in ENV_DSN_VARS:
            value = environ.get(var)
            if value and value.strip():
                return _check_dsn(value.strip(), f"${var}"), f"${var}"
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

"""RateLimiterOptions: the spec's ``rate_limiter`` mapping as a typed model, every option documented.

The library parses ``from_config``'s ``rate_limiter`` section with it, and the Dagster resource is
built on it (its fields are these), so an option is declared once. Cross-option rules (aliases that
disagree, a burst without a rate) are checked here too; what needs the environment (the Redis DSN's
fallback chain, ``scope: cluster`` without one) is :class:`RateLimiterConfig`'s job.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ccxt_questdb_assets.core.config_model import ConfigModel, Number, Whole, invalid
from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.redaction import redact_dsn
from ccxt_questdb_assets.ratelimit.keys import parse_key_template

SCOPES = ("local", "process", "cluster")
ON_REDIS_ERROR = ("fallback", "raise")
DEFAULT_PENALTY_BACKOFF_MS = 1000
REDIS_SCHEMES = ("redis", "rediss", "unix")

Positive = Annotated[Number, Field(gt=0)]


def check_dsn(dsn: str, source: str) -> str:
    """``dsn`` if it names a Redis server; a ConfigError naming ``source`` (password hidden) if not."""
    try:
        scheme = urlsplit(dsn).scheme
    except ValueError:
        scheme = ""
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"Redis DSN from {source} must start with redis://, rediss:// or unix://, got {redact_dsn(dsn)!r}"
        )
    return dsn


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise invalid(f"must be one of {', '.join(choices)}")


class RateLimiterOptions(ConfigModel):
    """How requests to one exchange key are paced (see docs/rate-limiting.md for every option)."""

    section_name = "rate_limiter"

    scope: str = Field(default="process", description="local (per fetcher), process (default) or cluster (Redis).")
    max_concurrency: Annotated[Whole, Field(ge=1)] = Field(
        default=1, description="In-flight requests per key in this process."
    )
    min_interval_s: Positive | None = Field(default=None, description="Seconds between requests (one token each).")
    min_interval_ms: Positive | None = Field(default=None, description="Same in milliseconds (must agree if both).")
    tokens_per_interval: Positive | None = Field(default=None, description="Weight budget per interval_ms.")
    interval_ms: Positive | None = Field(default=None, description="Window of tokens_per_interval (default 1000).")
    burst_tokens: Positive | None = Field(default=None, description="Bucket capacity (burst).")
    burst: Positive | None = Field(default=None, description="Alias of burst_tokens (the spec's quick start).")
    local_semaphore: Annotated[Whole, Field(ge=1)] | None = Field(
        default=None, description="In-flight cap per fetcher."
    )
    key_suffix: str | None = Field(default=None, description="Partitions the budget (account, endpoint).")
    key_template: str | None = Field(default=None, description="Custom key, e.g. ccxt:{exchange}:{account?}.")
    penalty_backoff_ms: Annotated[Number, Field(ge=0)] = Field(
        default=DEFAULT_PENALTY_BACKOFF_MS, description="Minimum shared cooldown after a 429/418."
    )
    redis_dsn: str | None = Field(
        default=None,
        description="Redis for scope=cluster; use EnvVar(...). Unset: CCXT_QUESTDB_RATE_LIMITER_REDIS, "
        "then QMTL_CCXT_RATE_LIMITER_REDIS.",
    )
    on_redis_error: str = Field(default="fallback", description="fallback (in-process limiter) or raise.")
    redis_retry_s: Positive = Field(default=1.0, description="Seconds between Redis probes during an outage.")
    redis_timeout_s: Positive = Field(default=1.0, description="Redis connect and command timeout.")
    fallback_fraction: Annotated[Positive, Field(le=1)] = Field(
        default=1.0, description="Share of the rate each process uses in fallback."
    )
    endpoint_weights: dict[str, Positive] | None = Field(default=None, description="Weight overrides per endpoint.")

    @field_validator("scope", mode="before")
    @classmethod
    def _scope(cls, value: Any) -> str:
        return _choice(value, SCOPES)

    @field_validator("on_redis_error", mode="before")
    @classmethod
    def _on_redis_error(cls, value: Any) -> str:
        return _choice(value, ON_REDIS_ERROR)

    @field_validator("key_suffix", mode="before")
    @classmethod
    def _key_suffix(cls, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise invalid("must be a string")
        return str(value).strip() or None

    @field_validator("key_template", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid("must be a string")
        return value.strip() or None

    @field_validator("redis_dsn")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        return None if value is None else value.strip() or None

    @field_validator("key_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            parse_key_template(value)  # a ConfigError naming the unknown placeholder or bad brace
        return value

    @field_validator("redis_dsn", mode="before")
    @classmethod
    def _dsn(cls, value: Any) -> Any:
        # an EnvVar(...) given to the Dagster resource (a str naming a variable) is checked once
        # resolved, by RateLimiterConfig
        if type(value) is str and value.strip():
            check_dsn(value.strip(), "rate_limiter.redis_dsn")
        return value

    @field_validator("endpoint_weights")
    @classmethod
    def _weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if any(not name.strip() for name in value):
            raise invalid("must map endpoint names (non-empty) to weights")
        return {name.strip(): weight for name, weight in value.items()}

    @model_validator(mode="after")
    def _agree(self) -> RateLimiterOptions:
        s, ms = self.min_interval_s, self.min_interval_ms
        if s is not None and ms is not None and not math.isclose(s * 1000.0, ms, rel_tol=1e-9, abs_tol=1e-6):
            raise ConfigError(f"rate_limiter.min_interval_s ({s}) and min_interval_ms ({ms}) disagree; set only one")
        if self.interval_ms is not None and self.tokens_per_interval is None:
            raise ConfigError("rate_limiter.interval_ms is set without tokens_per_interval; set both or neither")
        if self.burst_tokens is not None and self.burst is not None and self.burst_tokens != self.burst:
            raise ConfigError(
                f"rate_limiter.burst ({self.burst}) and burst_tokens ({self.burst_tokens}) disagree; "
                "burst is an alias of burst_tokens, set only one"
            )
        if (
            (self.burst_tokens or self.burst) is not None
            and self.tokens_per_interval is None
            and self.interval_s is None
        ):
            raise ConfigError("rate_limiter.burst_tokens/burst needs a rate: set min_interval_s or tokens_per_interval")
        return self

    @property
    def interval_s(self) -> float | None:
        """``min_interval_s``, or ``min_interval_ms`` in seconds."""
        if self.min_interval_s is not None:
            return self.min_interval_s
        return None if self.min_interval_ms is None else self.min_interval_ms / 1000.0

    def given(self) -> dict[str, Any]:
        """The options as a spec-style mapping, unset ones left out."""
        return {name: getattr(self, name) for name in KNOWN_OPTIONS if getattr(self, name) is not None}


#: Every option ``rate_limiter`` accepts.
KNOWN_OPTIONS = tuple(RateLimiterOptions.model_fields)

"""Rate limiting shared by every fetcher of an exchange key: local, process-wide or cluster-wide.

No Dagster, storage or testing imports here (the Dagster resource wraps this layer). See
docs/rate-limiting.md.
"""

from ccxt_questdb_assets.ratelimit.config import (
    CONNECTORS_DSN_KEY,
    ENV_DSN_VARS,
    Band,
    RateLimiterConfig,
    redact_dsn,
)
from ccxt_questdb_assets.ratelimit.keys import PLACEHOLDERS, parse_key_template, render_key
from ccxt_questdb_assets.ratelimit.limiter import Permit, RateLimiter, RateLimitTimeout
from ccxt_questdb_assets.ratelimit.options import KNOWN_OPTIONS, SCOPES, RateLimiterOptions
from ccxt_questdb_assets.ratelimit.registry import (
    build_limiter,
    get_rate_limiter,
    limiter_key,
    reset_registry,
    shared_keys,
)
from ccxt_questdb_assets.ratelimit.reporting import LimiterEvent
from ccxt_questdb_assets.ratelimit.retry_after import parse_retry_after
from ccxt_questdb_assets.ratelimit.stats import LimiterStats, StatsScope, track
from ccxt_questdb_assets.ratelimit.weights import EndpointWeights

__all__ = [
    "CONNECTORS_DSN_KEY",
    "ENV_DSN_VARS",
    "KNOWN_OPTIONS",
    "PLACEHOLDERS",
    "SCOPES",
    "Band",
    "EndpointWeights",
    "LimiterEvent",
    "LimiterStats",
    "Permit",
    "RateLimitTimeout",
    "RateLimiter",
    "RateLimiterConfig",
    "RateLimiterOptions",
    "StatsScope",
    "build_limiter",
    "get_rate_limiter",
    "limiter_key",
    "parse_key_template",
    "parse_retry_after",
    "redact_dsn",
    "render_key",
    "reset_registry",
    "shared_keys",
    "track",
]

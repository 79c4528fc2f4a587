"""get_rate_limiter: one budget per key and process, whatever asks for it.

* ``local``: a new limiter per call (one fetcher).
* ``process``: every call with the same key in this process returns the very same limiter object.
* ``cluster``: the budget lives in Redis; the in-process part (slots, cooldown mirror, fallback
  bucket, Redis client) is one object per key too, like ``process``.

Rule for conflicting settings: the first holder of a key defines its budget (scope, rates, burst,
concurrency, ``penalty_backoff_ms``, ``endpoint_weights``, Redis settings). A later holder that
asks for a different budget for the same key gets a ConfigError naming the differences: two
budgets for one key would double the traffic. Settings that only name the key (``key_suffix``,
``key_template``) and an unused ``redis_dsn`` outside cluster scope do not count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.ratelimit.config import RateLimiterConfig
from ccxt_questdb_assets.ratelimit.keys import render_key
from ccxt_questdb_assets.ratelimit.limiter import RateLimiter
from ccxt_questdb_assets.ratelimit.local import LocalBackend

_lock = threading.Lock()
_limiters: dict[str, RateLimiter] = {}


def limiter_key(config: RateLimiterConfig, exchange_id: str | None) -> str:
    return render_key(exchange_id, key_suffix=config.key_suffix, key_template=config.key_template)


def build_limiter(config: RateLimiterConfig, exchange_id: str | None, *, key: str | None = None) -> RateLimiter:
    """A new limiter with its own in-process state, not shared through the registry.

    What ``local`` scope hands out; with ``cluster`` scope it behaves like the limiter of another
    process on the same Redis key (tests use it to stand in for other processes).
    """
    key = key if key is not None else limiter_key(config, exchange_id)
    if config.scope == "cluster":
        from ccxt_questdb_assets.ratelimit.cluster import ClusterBackend

        assert config.redis_dsn is not None
        backend: Any = ClusterBackend(
            key,
            config.bands(),
            config.redis_dsn,
            fallback=LocalBackend(config.bands(config.fallback_fraction), source="fallback"),
            on_redis_error=config.on_redis_error,
            retry_s=config.redis_retry_s,
            timeout_s=config.redis_timeout_s,
            max_workers=min(16, config.concurrency + 2),
        )
    else:
        backend = LocalBackend(config.bands(), source="local")
    limiter = RateLimiter(key, config, backend, exchange_id=exchange_id)
    if config.scope == "cluster":
        backend.set_event_handler(limiter._on_backend_event)
    return limiter


def _describe_conflict(old: dict[str, Any], new: dict[str, Any]) -> str:
    names = sorted(set(old) | set(new))
    diffs = [f"{n}: {old.get(n)!r} (first) vs {new.get(n)!r}" for n in names if old.get(n) != new.get(n)]
    return "; ".join(diffs)


def get_rate_limiter(
    config: RateLimiterConfig | Mapping[str, Any] | None = None, exchange_id: str | None = None
) -> RateLimiter:
    """The limiter of ``exchange_id``'s key (see the module doc for sharing and conflicts)."""
    if not isinstance(config, RateLimiterConfig):
        config = RateLimiterConfig.from_mapping(config)
    key = limiter_key(config, exchange_id)
    if config.scope == "local":
        return build_limiter(config, exchange_id, key=key)
    with _lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = build_limiter(config, exchange_id, key=key)
            _limiters[key] = limiter
        elif limiter.signature != config.budget_signature():
            raise ConfigError(
                f"rate limiter key {key!r} is already used in this process with other settings "
                f"({_describe_conflict(limiter.signature, config.budget_signature())}). Every fetcher of one key "
                "shares one budget: give them the same settings, or separate them with key_suffix"
            )
    return limiter


def shared_keys() -> list[str]:
    """Keys with a process-wide budget in this process."""
    with _lock:
        return sorted(_limiters)


def reset_registry() -> None:
    """Forget every shared budget (closing Redis clients). For tests and reconfiguration."""
    with _lock:
        limiters = list(_limiters.values())
        _limiters.clear()
    for limiter in limiters:
        limiter.close()


def _forget_after_fork() -> None:
    # A forked child must not share thread pools, locks or sockets with its parent.
    global _lock
    _lock = threading.Lock()
    _limiters.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)

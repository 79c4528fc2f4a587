"""get_rate_limiter: one budget per key and process, whatever asks for it.

* ``local``: a new budget per call (one fetcher).
* ``process``: every call with the same key in this process shares one budget.
* ``cluster``: the budget lives in Redis; in-process state (slots, cooldown mirror, fallback
  bucket, Redis client) is shared per key like ``process``.

Rule for conflicting settings: the first holder of a key defines its budget (scope, rates, burst,
``max_concurrency``, ``penalty_backoff_ms``, Redis settings). A later holder that asks for a
different budget for the same key gets a ConfigError naming the differences: two budgets for
one key would double the traffic. ``local_semaphore`` is per fetcher and may differ.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.ratelimit.config import RateLimiterConfig
from ccxt_questdb_assets.ratelimit.keys import render_key
from ccxt_questdb_assets.ratelimit.limiter import Listener, RateLimiter, SharedCore
from ccxt_questdb_assets.ratelimit.local import LocalBackend

_lock = threading.Lock()
_cores: dict[str, SharedCore] = {}


def limiter_key(config: RateLimiterConfig, exchange_id: str | None) -> str:
    return render_key(exchange_id, key_suffix=config.key_suffix, key_template=config.key_template)


def _build_core(key: str, config: RateLimiterConfig) -> SharedCore:
    core = SharedCore(key, config, config.scope)
    if config.scope == "cluster":
        from ccxt_questdb_assets.ratelimit.cluster import ClusterBackend

        assert config.redis_dsn is not None
        core.backend = ClusterBackend(
            key,
            config.bands(),
            config.redis_dsn,
            fallback=LocalBackend(config.bands(config.fallback_fraction), source="fallback"),
            on_redis_error=config.on_redis_error,
            retry_s=config.redis_retry_s,
            timeout_s=config.redis_timeout_s,
            max_workers=min(16, config.max_concurrency + 2),
            on_event=core.on_backend_event,
        )
    else:
        core.backend = LocalBackend(config.bands(), source="local")
    return core


def _describe_conflict(old: dict[str, Any], new: dict[str, Any]) -> str:
    names = sorted(set(old) | set(new))
    diffs = [f"{n}: {old.get(n)!r} (first) vs {new.get(n)!r}" for n in names if old.get(n) != new.get(n)]
    return "; ".join(diffs)


def get_rate_limiter(
    config: RateLimiterConfig | Mapping[str, Any] | None = None,
    exchange_id: str | None = None,
    *,
    listener: Listener | None = None,
) -> RateLimiter:
    """A limiter handle for ``exchange_id`` (see the module doc for sharing and conflicts)."""
    if not isinstance(config, RateLimiterConfig):
        config = RateLimiterConfig.from_mapping(config)
    key = limiter_key(config, exchange_id)
    if config.scope == "local":
        return RateLimiter(_build_core(key, config), config=config, exchange_id=exchange_id, listener=listener)
    with _lock:
        core = _cores.get(key)
        if core is None:
            core = _build_core(key, config)
            _cores[key] = core
        elif core.signature != config.budget_signature():
            raise ConfigError(
                f"rate limiter key {key!r} is already used in this process with other settings "
                f"({_describe_conflict(core.signature, config.budget_signature())}). Every fetcher of one key "
                "shares one budget: give them the same settings, or separate them with key_suffix"
            )
    return RateLimiter(core, config=config, exchange_id=exchange_id, listener=listener)


def shared_keys() -> list[str]:
    """Keys with a process-wide budget in this process."""
    with _lock:
        return sorted(_cores)


def reset_registry() -> None:
    """Forget every shared budget (closing Redis clients). For tests and reconfiguration."""
    with _lock:
        cores = list(_cores.values())
        _cores.clear()
    for core in cores:
        core.close()


def _forget_after_fork() -> None:
    # A forked child must not share thread pools, locks or sockets with its parent.
    global _lock
    _lock = threading.Lock()
    _cores.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)

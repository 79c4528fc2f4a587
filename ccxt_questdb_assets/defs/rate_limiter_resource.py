"""RateLimiterResource: the Dagster face of ``ccxt_questdb_assets.ratelimit``.

One resource shared by every asset. Its fields are the spec's ``rate_limiter`` options; the
limiters it hands out are the very ones the library layer gets from ``get_rate_limiter`` (same key,
same process-wide budget), so assets and library code never double the traffic.

    defs = Definitions(assets=[...], resources={
        "rate_limiter": RateLimiterResource(
            scope="cluster", min_interval_s=1.2, burst=1,
            redis_dsn=EnvVar("CCXT_QUESTDB_RATE_LIMITER_REDIS"),
        ),
    })

    @asset
    def candles(context, rate_limiter: RateLimiterResource):
        with rate_limiter.track(context):          # waits, 429s and tokens -> run log + metadata
            provider = CcxtQuestDBProvider.from_config({..., "rate_limiter": rate_limiter.to_config()})
            ...

Secrets: pass the DSN with ``EnvVar`` (Dagster then never shows the value); left unset, the
library's fallback chain applies (``CCXT_QUESTDB_RATE_LIMITER_REDIS``, then
``QMTL_CCXT_RATE_LIMITER_REDIS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field, ValidationError

from ccxt_questdb_assets.core.config_model import config_error
from ccxt_questdb_assets.ratelimit import (
    LimiterEvent,
    LimiterStats,
    RateLimiter,
    RateLimiterConfig,
    RateLimiterOptions,
    StatsScope,
    get_rate_limiter,
    redact_dsn,
    track,
)

ENV_LIMITER_REDIS = "CCXT_QUESTDB_RATE_LIMITER_REDIS"
"""Environment variable holding the cluster scope's Redis DSN (a secret: shown only by name)."""


class RateLimiterResource(ConfigurableResource, RateLimiterOptions):
    """Shared exchange rate limiter: the library's ``rate_limiter`` options as fields (declared once,
    in ``RateLimiterOptions``; see docs/rate-limiting.md), plus how its waits reach the run log."""

    log_waits_over_s: float = Field(default=5.0, description="Waits at least this long are logged at INFO.")

    def __init__(self, **data: Any) -> None:
        # a bad option reads as the library's ConfigError (path, value, fix), not a pydantic dump
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, RateLimiterOptions, "rate_limiter") from exc

    def __repr_args__(self) -> Any:
        # repr/str of a resource holding a resolved Redis DSN (inside a run, or from connectors) hide its password
        for name, value in super().__repr_args__():
            yield name, (redact_dsn(value) if name == "redis_dsn" and isinstance(value, str) else value)

    # ------------------------------------------------------------------ config and limiters
    def options(self) -> dict[str, Any]:
        """The spec-style ``rate_limiter`` mapping of this resource (unset fields left out)."""
        return self.given()

    def to_config(self) -> RateLimiterConfig:
        """Validated config (raises ConfigError on bad values); pass it to the library layer."""
        return RateLimiterConfig.from_options(self, environ=os.environ)

    def get_limiter(self, exchange_id: str, context: Any = None) -> RateLimiter:
        """The limiter of ``exchange_id``'s key: for process and cluster scope the very object the
        library layer (``ExchangeSession``, fetchers, providers) gets from ``get_rate_limiter`` with
        this resource's config. With a context, the limiter's settings are logged to the run log;
        its waits and 429s reach the run log inside :meth:`track`."""
        limiter = get_rate_limiter(self.to_config(), exchange_id)
        if context is not None:
            bands = ", ".join(f"{b.name} {b.rate_per_s:g}/s burst {b.capacity:g}" for b in limiter.config.bands())
            context.log.info(
                f"rate limiter {limiter.key}: scope {limiter.scope}, mode {limiter.mode}, "
                f"{limiter.concurrency} in flight, {bands or 'no rate limit'}"
            )
        return limiter

    # ------------------------------------------------------------------ run logs and metadata
    def _listener(self, context: Any):
        log = context.log
        threshold = self.log_waits_over_s

        def on_event(event: LimiterEvent) -> None:
            if event.kind == "penalty":
                log.warning(
                    f"rate limiter {event.key}: exchange answered {event.info.get('status') or '429/418'} "
                    f"(Retry-After {event.info.get('retry_after')}); all holders pause {event.seconds:.2f} s"
                )
            elif event.kind == "fallback":
                log.warning(
                    f"rate limiter {event.key}: Redis unreachable ({event.info.get('error')}); "
                    "using the in-process limiter until it returns"
                )
            elif event.kind == "resumed":
                log.info(f"rate limiter {event.key}: Redis back after {event.seconds:.1f} s; sharing again")
            elif event.kind == "timeout":
                log.warning(f"rate limiter {event.key}: not admitted within {event.info.get('timeout')} s")
            elif event.kind in ("wait", "cooldown_wait") and event.seconds >= threshold:
                log.info(f"rate limiter {event.key}: {event.kind.replace('_', ' ')} {event.seconds:.2f} s")

        return on_event

    @contextmanager
    def track(
        self, context: Any = None, *, add_metadata: bool = True, output_name: str | None = None
    ) -> Iterator[StatsScope]:
        """Count every limiter call made inside (library code included): events go to the run log,
        and at the end a summary is logged and, with ``add_metadata``, attached as output metadata."""
        with track(self._listener(context) if context is not None else None) as scope:
            try:
                yield scope
            finally:
                stats = scope.stats
                if context is not None:
                    context.log.info(f"rate limiter: {self.summary(stats)}")
                    if add_metadata:
                        self.add_metadata(
                            context, stats, keys=sorted(k for k in scope.keys if k), output_name=output_name
                        )

    @staticmethod
    def summary(stats: LimiterStats) -> str:
        return (
            f"{stats.requests} requests, {stats.tokens:g} tokens, {stats.waits} waits "
            f"({stats.wait_s:.2f} s, max {stats.max_wait_s:.2f} s), {stats.penalties} penalties, "
            f"{stats.fallback_events} fallbacks ({stats.fallback_requests} requests)"
        )

    def metadata(self, stats: LimiterStats, keys: list[str] | None = None) -> dict[str, Any]:
        md: dict[str, Any] = dict(stats.to_metadata())
        md["rate_limiter/scope"] = self.scope
        if keys:
            md["rate_limiter/keys"] = ", ".join(keys)
        return md

    def add_metadata(
        self, context: Any, stats: LimiterStats, *, keys: list[str] | None = None, output_name: str | None = None
    ) -> None:
        """Attach the counters to the materialization (silently skipped where the context has no
        single output to attach to, e.g. an op without outputs)."""
        add = getattr(context, "add_output_metadata", None)
        if add is None:
            return
        try:
            if output_name is None:
                add(self.metadata(stats, keys))
            else:
                add(self.metadata(stats, keys), output_name=output_name)
        except Exception as exc:  # noqa: BLE001 - metadata must never fail the run
            context.log.debug(f"rate limiter metadata not attached: {exc}")

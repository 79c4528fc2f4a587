"""RateLimiterConfig: every documented option, aliases, the DSN fallback chain, clear errors."""

from __future__ import annotations

import pytest

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.ratelimit import KNOWN_OPTIONS, Band, RateLimiterConfig

NO_ENV: dict[str, str] = {}


def parse(options=None, **kw):
    kw.setdefault("environ", NO_ENV)
    return RateLimiterConfig.from_mapping(options, **kw)


def test_defaults_are_the_originals():
    cfg = parse(None)
    assert cfg.scope == "process"
    assert cfg.max_concurrency == 1
    assert cfg.concurrency == 1
    assert cfg.bands() == ()
    assert cfg.penalty_backoff_ms == 1000
    assert cfg.on_redis_error == "fallback"


def test_quick_start_as_written():
    cfg = parse(
        {
            "max_concurrency": 1,
            "min_interval_s": 1.2,
            "scope": "cluster",
            "redis_dsn": "redis://localhost:6379/0",
            "burst": 1,
        }
    )
    assert cfg.scope == "cluster"
    assert cfg.burst_tokens == 1
    (band,) = cfg.bands()
    assert band == Band("req", pytest.approx(1 / 1.2), 1.0, True)
    assert cfg.redis_dsn_source == "rate_limiter.redis_dsn"


def test_every_spec_option_is_accepted():
    cfg = parse(
        {
            "scope": "cluster",
            "max_concurrency": 4,
            "min_interval_s": 0.05,
            "tokens_per_interval": 6000,
            "interval_ms": 60000,
            "burst_tokens": 300,
            "local_semaphore": 2,
            "key_suffix": "acct42",
            "key_template": "ccxt:{exchange}:{account?}",
            "penalty_backoff_ms": 2500,
            "redis_dsn": "redis://:secret@localhost:6379/1",
        }
    )
    assert cfg.max_concurrency == 4 and cfg.concurrency == 2  # local_semaphore: the process-local cap
    tok, req = cfg.bands()
    assert tok == Band("tok", 100.0, 300.0, False)
    assert req == Band("req", pytest.approx(20.0), 1.0, True)  # strict spacing next to the weight bucket
    assert cfg.penalty_backoff_s == 2.5
    assert "secret" not in repr(cfg)
    assert "secret" not in str(cfg.to_mapping())
    assert "secret" not in str(cfg.budget_signature())


def test_tokens_per_interval_defaults():
    cfg = parse({"tokens_per_interval": 10})
    assert cfg.interval_ms == 1000
    (tok,) = cfg.bands()
    assert tok == Band("tok", 10.0, 10.0, False)  # burst defaults to tokens_per_interval


def test_min_interval_alone_maps_to_one_token_per_interval_burst_one():
    (req,) = parse({"min_interval_s": 2}).bands()
    assert req.rate_per_s == 0.5 and req.capacity == 1 and req.per_request
    (req,) = parse({"min_interval_s": 2, "burst_tokens": 3}).bands()
    assert req.capacity == 3


def test_min_interval_ms_alias_and_agreement():
    assert parse({"min_interval_ms": 250}).min_interval_s == 0.25
    assert parse({"min_interval_ms": 250, "min_interval_s": 0.25}).min_interval_s == 0.25
    with pytest.raises(ConfigError, match="disagree"):
        parse({"min_interval_ms": 250, "min_interval_s": 0.3})


def test_burst_alias_agreement():
    assert parse({"min_interval_s": 1, "burst": 2, "burst_tokens": 2}).burst_tokens == 2
    with pytest.raises(ConfigError, match="alias"):
        parse({"min_interval_s": 1, "burst": 2, "burst_tokens": 3})
    with pytest.raises(ConfigError, match="needs a rate"):
        parse({"burst": 2})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"scope": "clutser"}, "scope must be one of local, process, cluster"),
        ({"scope": 3}, "scope must be one of"),
        ({"max_concurency": 2}, "unknown option"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1"),
        ({"max_concurrency": 1.5}, "whole number"),
        ({"max_concurrency": True}, "must be a number"),
        ({"min_interval_s": -1}, "min_interval_s must be > 0"),
        ({"min_interval_s": "fast"}, "must be a number"),
        ({"interval_ms": 1000}, "interval_ms is set without tokens_per_interval"),
        ({"tokens_per_interval": 0}, "must be > 0"),
        ({"penalty_backoff_ms": -5}, "penalty_backoff_ms must be >= 0"),
        ({"key_template": "ccxt:{exchnage}"}, "unknown placeholder"),
        ({"key_template": "ccxt:{exchange"}, "unclosed"),
        ({"redis_dsn": "http://x"}, "must start with redis://"),
        ({"on_redis_error": "ignore"}, "on_redis_error must be one of"),
        ({"fallback_fraction": 2}, "fallback_fraction"),
        ({"endpoint_weights": {"klines": 0}}, "endpoint_weights"),
        ({"key_suffix": ["a"]}, "key_suffix must be a string"),
    ],
)
def test_clear_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        parse(options)


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        parse(["scope", "process"])


def test_numbers_as_strings_are_accepted():
    cfg = parse({"max_concurrency": "3", "min_interval_s": "0.5"})
    assert cfg.max_concurrency == 3 and cfg.min_interval_s == 0.5


def test_dsn_fallback_chain():
    connectors = {"ccxt_rate_limiter_redis": "redis://from-connectors:6379/0"}
    env = {
        "CCXT_QUESTDB_RATE_LIMITER_REDIS": "redis://from-project-env:6379/0",
        "QMTL_CCXT_RATE_LIMITER_REDIS": "redis://from-legacy-env:6379/0",
    }
    explicit = parse({"scope": "cluster", "redis_dsn": "redis://explicit:1/0"}, connectors=connectors, environ=env)
    assert explicit.redis_dsn == "redis://explicit:1/0"
    c = parse({"scope": "cluster"}, connectors=connectors, environ=env)
    assert (c.redis_dsn, c.redis_dsn_source) == ("redis://from-connectors:6379/0", "connectors.ccxt_rate_limiter_redis")
    e = parse({"scope": "cluster"}, connectors={}, environ=env)
    assert e.redis_dsn == "redis://from-project-env:6379/0"
    assert e.redis_dsn_source == "$CCXT_QUESTDB_RATE_LIMITER_REDIS"
    legacy = parse({"scope": "cluster"}, environ={"QMTL_CCXT_RATE_LIMITER_REDIS": "redis://legacy:6379/0"})
    assert legacy.redis_dsn == "redis://legacy:6379/0"
    assert legacy.redis_dsn_source == "$QMTL_CCXT_RATE_LIMITER_REDIS"


def test_cluster_without_dsn_names_every_source():
    with pytest.raises(ConfigError) as info:
        parse({"scope": "cluster"})
    text = str(info.value)
    for needle in (
        "redis_dsn",
        "connectors.ccxt_rate_limiter_redis",
        "CCXT_QUESTDB_RATE_LIMITER_REDIS",
        "QMTL_CCXT_RATE_LIMITER_REDIS",
    ):
        assert needle in text


def test_redis_dsn_is_accepted_but_unused_in_process_scope():
    # the spec's quick start says `"scope": "cluster",  # or "process"` with redis_dsn left in
    cfg = parse({"scope": "process", "redis_dsn": "redis://localhost:6379/0"})
    assert cfg.scope == "process"
    assert "redis_dsn" not in cfg.budget_signature()


def test_known_options_cover_the_spec():
    for name in (
        "max_concurrency",
        "min_interval_s",
        "min_interval_ms",
        "scope",
        "redis_dsn",
        "tokens_per_interval",
        "interval_ms",
        "burst_tokens",
        "burst",
        "local_semaphore",
        "key_suffix",
        "key_template",
        "penalty_backoff_ms",
    ):
        assert name in KNOWN_OPTIONS


def test_fallback_fraction_scales_rates():
    cfg = parse({"tokens_per_interval": 10, "fallback_fraction": 0.25})
    (tok,) = cfg.bands(cfg.fallback_fraction)
    assert tok.rate_per_s == 2.5 and tok.capacity == 10

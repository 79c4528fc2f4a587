"""Limiter keys: default, suffix, key_template placeholders, the `?` rule and invalid templates."""

from __future__ import annotations

import logging

import pytest

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.ratelimit import RateLimiterConfig, limiter_key, render_key


def test_default_key_without_and_with_suffix():
    assert render_key("binance") == "ccxt:binance"
    assert render_key("Binance") == "ccxt:binance"
    assert render_key("binance", key_suffix="acct42") == "ccxt:binance:acct42"
    assert render_key("binance", key_suffix="  ") == "ccxt:binance"


@pytest.mark.parametrize(
    "template, exchange, suffix, expected",
    [
        ("ccxt:{exchange}:{account?}", "binance", "acct42", "ccxt:binance:acct42"),
        ("ccxt:{exchange}:{account?}", "binance", None, "ccxt:binance"),
        ("ccxt:{exchange}:{suffix}", "binance", "s1", "ccxt:binance:s1"),
        ("ccxt:{exchange}:{key_suffix?}", "binance", "k", "ccxt:binance:k"),
        ("rl/{exchange_id}/{suffix?}/spot", "BinanceUS", None, "rl/BinanceUS/spot"),
        ("rl/{exchange_id}/{suffix?}/spot", "BinanceUS", "a", "rl/BinanceUS/a/spot"),
        ("{exchange}", "OKX", None, "okx"),
        ("{exchange_id}", "OKX", None, "OKX"),
        ("{exchange}-{exchange_id}", "Kraken", None, "kraken-Kraken"),
        ("{account?}:ccxt:{exchange}", "binance", None, "ccxt:binance"),  # at the start: the delimiter after
        ("{account?}:ccxt:{exchange}", "binance", "a1", "a1:ccxt:binance"),
        ("ccxt{account?}", "binance", None, "ccxt"),  # no delimiter before: nothing else dropped
        ("ccxt:{exchange}:{account?}:{suffix?}", "binance", None, "ccxt:binance"),
        ("{{ccxt}}:{exchange}", "binance", None, "{ccxt}:binance"),  # literal braces (Redis hash tags)
    ],
)
def test_templates(template, exchange, suffix, expected):
    assert render_key(exchange, key_suffix=suffix, key_template=template) == expected


def test_template_does_not_append_suffix_and_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert render_key("binance", key_suffix="acct", key_template="ccxt:{exchange}") == "ccxt:binance"
    assert "not used" in caplog.text


@pytest.mark.parametrize(
    "template, message",
    [
        ("ccxt:{exchnage}", "unknown placeholder"),
        ("ccxt:{exchange:upper}", "unknown placeholder"),
        ("ccxt:{exchange", "unclosed"),
        ("ccxt:exchange}", "unmatched"),
        ("ccxt:{ex{change}}", "nested"),
        ("ccxt:{}", "unknown placeholder"),
        ("   ", "non-empty"),
    ],
)
def test_invalid_templates(template, message):
    with pytest.raises(ConfigError, match=message):
        render_key("binance", key_template=template)


def test_required_placeholder_missing_value():
    with pytest.raises(ConfigError, match=r"needs \{account\} but no key_suffix"):
        render_key("binance", key_template="ccxt:{exchange}:{account}")
    with pytest.raises(ConfigError, match=r"needs \{exchange\} but no exchange_id"):
        render_key(None, key_template="ccxt:{exchange}")


def test_empty_or_spaced_keys_are_errors():
    with pytest.raises(ConfigError, match="empty"):
        render_key("binance", key_template="{account?}")
    with pytest.raises(ConfigError, match="whitespace"):
        render_key("binance", key_suffix="a b")


def test_invalid_template_fails_at_config_time():
    with pytest.raises(ConfigError, match="unknown placeholder"):
        RateLimiterConfig.from_mapping({"key_template": "ccxt:{exchange}:{acount?}"}, environ={})


def test_limiter_key_from_config():
    cfg = RateLimiterConfig.from_mapping({"key_suffix": "acct42"}, environ={})
    assert limiter_key(cfg, "Binance") == "ccxt:binance:acct42"
    cfg = RateLimiterConfig.from_mapping({"key_suffix": "acct42", "key_template": "{exchange_id}|{suffix}"}, environ={})
    assert limiter_key(cfg, "Binance") == "Binance|acct42"

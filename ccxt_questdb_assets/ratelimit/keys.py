"""Limiter keys: the default ``ccxt:{exchange}[:suffix]`` and user ``key_template`` strings.

Placeholders: ``{exchange}`` (lower case), ``{exchange_id}`` (as given), ``{suffix}``,
``{key_suffix}`` and ``{account}`` (all three: the ``key_suffix``). ``{name?}`` is optional: when
the value is absent the placeholder is dropped together with one delimiter before it
(``ccxt:{exchange}:{account?}`` -> ``ccxt:binance``), or, at the very start of the key, one
delimiter after it. ``{{`` and ``}}`` are literal braces (handy for Redis Cluster hash tags).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from ccxt_questdb_assets.core.errors import ConfigError

PLACEHOLDERS = ("exchange", "exchange_id", "suffix", "key_suffix", "account")
DELIMITERS = frozenset(":-_./|")
DEFAULT_TEMPLATE = "ccxt:{exchange}:{suffix?}"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placeholder:
    name: str
    optional: bool


Segment = str | Placeholder


@lru_cache(maxsize=256)
def parse_key_template(template: str) -> tuple[Segment, ...]:
    """Split a template into literal and placeholder segments; ConfigError when malformed."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"rate_limiter.key_template must be a non-empty string, got {template!r}")
    segments: list[Segment] = []
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch == "{":
            if i + 1 < n and template[i + 1] == "{":
                literal.append("{")
                i += 2
                continue
            end = template.find("}", i + 1)
            if end < 0:
                raise ConfigError(f"rate_limiter.key_template {template!r} has an unclosed '{{' at position {i}")
            body = template[i + 1 : end]
            if "{" in body:
                raise ConfigError(f"rate_limiter.key_template {template!r} has a nested '{{' at position {i}")
            optional = body.endswith("?")
            name = body[:-1] if optional else body
            if name not in PLACEHOLDERS:
                raise ConfigError(
                    f"rate_limiter.key_template {template!r} has unknown placeholder {{{body}}}; "
                    f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)} (add '?' to make one optional, "
                    "write '{{' / '}}' for literal braces)"
                )
            if literal:
                segments.append("".join(literal))
                literal = []
            segments.append(Placeholder(name, optional))
            i = end + 1
        elif ch == "}":
            if i + 1 < n and template[i + 1] == "}":
                literal.append("}")
                i += 2
                continue
            raise ConfigError(f"rate_limiter.key_template {template!r} has an unmatched '}}' at position {i}")
        else:
            literal.append(ch)
            i += 1
    if literal:
        segments.append("".join(literal))
    return tuple(segments)


def render_key(exchange_id: str | None, *, key_suffix: str | None = None, key_template: str | None = None) -> str:
    """The limiter key for an exchange. Without a template: ``ccxt:{exchange}`` plus ``:{suffix}``."""
    template = key_template or DEFAULT_TEMPLATE
    exchange_id = (exchange_id or "").strip() or None
    suffix = (key_suffix or "").strip() or None
    values = {
        "exchange": exchange_id.lower() if exchange_id else None,
        "exchange_id": exchange_id,
        "suffix": suffix,
        "key_suffix": suffix,
        "account": suffix,
    }
    out = ""
    strip_next_delim = False
    for seg in parse_key_template(template):
        if isinstance(seg, str):
            if strip_next_delim and seg and seg[0] in DELIMITERS:
                seg = seg[1:]
            strip_next_delim = False
            out += seg
            continue
        value = values[seg.name]
        if value is not None:
            out += value
            strip_next_delim = False
            continue
        if not seg.optional:
            what = "exchange_id" if seg.name.startswith("exchange") else "key_suffix"
            raise ConfigError(
                f"rate_limiter.key_template {template!r} needs {{{seg.name}}} but no {what} is set; "
                f"set {what} or write {{{seg.name}?}} to make it optional"
            )
        if out and out[-1] in DELIMITERS:
            out = out[:-1]
        elif not out:
            strip_next_delim = True
    if not out:
        raise ConfigError(f"rate_limiter.key_template {template!r} renders an empty key")
    if any(c.isspace() or not c.isprintable() for c in out):
        raise ConfigError(f"rate limiter key {out!r} contains whitespace or control characters")
    if (
        key_template
        and suffix
        and not any(
            isinstance(s, Placeholder) and s.name in ("suffix", "key_suffix", "account")
            for s in parse_key_template(template)
        )
    ):
        _log.warning(
            "rate_limiter.key_suffix %r is not used: key_template %r has no {suffix}/{key_suffix}/{account} "
            "placeholder (with a template the suffix is not appended automatically)",
            suffix,
            template,
        )
    return out

"""Configuration as typed models: one base for every config section, one way its errors read.

A section is a pydantic model (``ConfigModel``): its fields say the keys, their types, defaults and
documentation (which Dagster resources built on the model show in the UI). ``parse`` turns a raw
mapping into the model, and any refusal into one ``ConfigError`` that names the path of the bad
value, the value (secrets hidden) and the fix: an unknown key gets the closest valid one and the
list of all; a number out of range, the range; a cross-key rule, its own sentence.

Validators say what is wrong with :func:`invalid` (``"must be one of a, b"``); the path and the
value are added here, so a section reads the same alone (``rate_limiter.scope ...``) and nested
(``exchanges.binance.trades ...``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.redaction import REDACTED, redact_dsn

#: Keys whose values are never echoed in an error (a DSN is shown with its password hidden).
SECRET_KEYS = frozenset({"password", "secret", "api_key"})

_PHRASES = {
    "int_type": "must be a number",
    "int_parsing": "must be a number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "int_from_float": "must be a whole number",
    "int_parsing_size": "must be a number of a sensible size",
    "finite_number": "must be finite",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "literal_error": "must be one of {expected}",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}


def invalid(predicate: str, **values: Any) -> PydanticCustomError:
    """The error a validator raises: ``predicate`` completes "<path> ..." (``"must be > 0"``)."""
    return PydanticCustomError("config", predicate, values)


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would read True as 1
        raise invalid("must be a number")
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid("must be finite")
    return value


#: A number written as a number (or a numeric string), never a bool.
Number = Annotated[float, BeforeValidator(_finite), BeforeValidator(_no_bool)]
#: A whole number (1.0 is accepted as 1, 1.5 is refused), never a bool.
Whole = Annotated[int, BeforeValidator(_no_bool)]


class ConfigModel(BaseModel):
    """A config section: unknown keys, NaN, infinities and mutation refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    #: How errors name the section when it has no path of its own (the top of a config).
    section_name: ClassVar[str] = ""

    @classmethod
    def parse(cls, raw: Any, path: str = "", *, where: str = "", context: Mapping[str, Any] | None = None) -> Self:
        """``raw`` as this model. ``path`` prefixes the keys in messages (``rate_limiter``); ``where``
        names the config as a whole (``project config deploy/project.yaml``)."""
        if isinstance(raw, cls):
            return raw
        if not isinstance(raw, Mapping):
            name = path or where or cls.section_name or cls.__name__
            raise ConfigError(f"{name} must be a mapping, got {type(raw).__name__}")
        try:
            return cls.model_validate(dict(raw), context=dict(context or {}))
        except ValidationError as exc:
            raise config_error(exc, cls, path, where) from exc


def config_error(exc: ValidationError, model: type[BaseModel], path: str = "", where: str = "") -> ConfigError:
    """The first refusal of ``exc`` as a ConfigError that names the path, the value and the fix."""
    errors = exc.errors()
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a misspelt key first
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # a cross-key rule: its sentence is already whole
        return ConfigError(f"{where}: {cause}" if where else str(cause))
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join([path, *loc] if path else loc)
    prefix = f"{where} " if where else ""
    if error["type"] == "extra_forbidden":
        section = ".".join([path, *loc[:-1]] if path else loc[:-1])
        place = f"{prefix}{section}" if section else where or getattr(model, "section_name", "") or "the config"
        return ConfigError(_unknown_key(model, loc, place))
    if error["type"] == "missing":
        return ConfigError(f"{prefix}{dotted or 'the config'} needs a value{_example(model, loc)}")
    phrase = _phrase(error)
    if not loc:
        return ConfigError(f"{where or path or 'the config'}: {phrase}")
    return ConfigError(f"{prefix}{dotted} {phrase}, got {_shown(loc[-1], error['input'])}")


def _phrase(error: ErrorDetails) -> str:
    if error["type"] == "config":
        return error["msg"]
    template = _PHRASES.get(error["type"])
    if template is None:
        return error["msg"][:1].lower() + error["msg"][1:]
    return template.format(**(error.get("ctx") or {}))


def _shown(key: str, value: Any) -> str:
    if key in SECRET_KEYS:
        return REDACTED
    if isinstance(value, str) and "://" in value:
        return repr(redact_dsn(value))
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The valid keys of the section that holds the last element of ``loc``."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        annotation = getattr(field, "annotation", None)
        inner = _model_in(annotation)
        if inner is None:
            break
        current = inner
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _unknown_key(model: type[BaseModel], loc: list[str], place: str) -> str:
    key = loc[-1]
    valid = _fields_at(model, loc)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown option {key!r} in {place}{hint}; valid options: {', '.join(valid)}"


def _example(model: type[BaseModel], loc: list[str]) -> str:
    fields = getattr(model, "model_fields", {})
    field = fields.get(loc[-1]) if loc else None
    examples = getattr(field, "examples", None)
    return f", e.g. {loc[-1]}: {examples[0]!r}" if examples else ""

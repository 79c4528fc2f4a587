"""One exchange's ccxt class, without ccxt's package import of every exchange.

``import ccxt`` (and ``import ccxt.async_support``) runs a package ``__init__`` that imports all of
ccxt's exchanges, sync and async: about 0.3 s of CPU more than the one exchange a process fetches
from, paid again by every Dagster run worker. The exchange's own module needs only ccxt's base
modules, so :func:`exchange_class` registers the two packages as :class:`DeferredPackage` (the
real module spec, ``__init__`` not yet run) and imports the exchange's module alone.

Nothing is ever missing for other code in the process: a name the real ``__init__`` binds from a
base module (``ccxt.BaseError``, ``ccxt.Exchange``, ``ccxt.TRUNCATE``...) is read from that module;
any other name (``ccxt.exchanges``, ``ccxt.okx``, ``ccxt.__version__``, ``dir(ccxt)``) first runs
the real ``__init__`` in the same module object, which then is exactly the package ``import ccxt``
gives. A package already imported in full is used as it is.

Layer rule: this module imports ccxt and `core.errors` only; `exchange/` (the client, retries, errors) and
`ratelimit/` (ccxt's endpoint costs) load ccxt through it.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import sys
import threading
import types
from functools import lru_cache
from pathlib import Path
from typing import Any

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.long_lived import import_long_lived

_SYNC, _ASYNC = "ccxt", "ccxt.async_support"
#: The modules whose names a package ``__init__`` re-exports without importing any exchange.
_BASE_PREFIXES = ("ccxt.base", "ccxt.async_support.base")
_lock = threading.RLock()
_completed: set[str] = set()  # the deferred packages whose real __init__ has run


def exchange_class(exchange_id: str, *, async_: bool) -> type:
    """ccxt's class for ``exchange_id``, importing only that exchange's module."""
    ids = exchange_ids()
    if exchange_id not in ids:
        close = difflib.get_close_matches(exchange_id, ids, n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see ccxt.exchanges"
        raise ConfigError(f"unknown ccxt exchange id {exchange_id!r}{hint}")
    package = _package(_ASYNC if async_ else _SYNC)
    known = vars(package).get(exchange_id)
    if isinstance(known, type):  # the package is complete, or this class was loaded before
        return known
    cls: type = getattr(import_long_lived(f"{package.__name__}.{exchange_id}"), exchange_id)
    setattr(package, exchange_id, cls)  # as the real __init__ binds it: the class, not its module
    return cls


@lru_cache(maxsize=1)
def exchange_ids() -> tuple[str, ...]:
    """The exchange ids ccxt knows, without importing ccxt: from the literal ``exchanges = [...]``
    of its ``__init__.py`` (ccxt is imported after all if that ever changes shape)."""
    loaded = vars(sys.modules["ccxt"]).get("exchanges") if "ccxt" in sys.modules else None
    if loaded:  # ccxt's package was imported in full (not one exchange through exchange_class)
        return tuple(loaded)
    ids = _read_ids_literal()
    if ids:
        return ids
    import ccxt

    return tuple(ccxt.exchanges)


def _read_ids_literal() -> tuple[str, ...] | None:
    tree = _init_tree(_SYNC)
    for node in tree.body if tree is not None else ():
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "exchanges" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                return tuple(value)
    return None


def errors() -> types.ModuleType:
    """``ccxt.base.errors``: ccxt's exception classes."""
    _package(_SYNC)
    return importlib.import_module("ccxt.base.errors")


class DeferredPackage(types.ModuleType):
    """A ccxt package module whose ``__init__`` runs on the first name only it can give."""

    def __getattr__(self, name: str) -> Any:
        source = _base_exports(self.__name__).get(name)
        if source is not None and self.__name__ not in _completed:
            value = getattr(importlib.import_module(source[0]), source[1])
            setattr(self, name, value)
            return value
        self.complete()
        try:
            return vars(self)[name]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None

    def __dir__(self) -> list[str]:
        self.complete()
        return list(vars(self))

    def complete(self) -> None:
        """Run the package's real ``__init__`` in this module (once)."""
        with _lock:
            if self.__name__ in _completed:
                return
            _completed.add(self.__name__)
            spec = self.__spec__
            assert spec is not None and spec.loader is not None  # set by _package
            try:
                spec.loader.exec_module(self)
            except BaseException:
                _completed.discard(self.__name__)
                raise


def _package(name: str) -> types.ModuleType:
    """``sys.modules[name]``, registering a :class:`DeferredPackage` (and its parent) if absent."""
    with _lock:
        module = sys.modules.get(name)
        if module is not None:
            return module
        parent = _package(name.rpartition(".")[0]) if "." in name else None
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            raise ImportError(f"ccxt's package {name!r} is not installed: install ccxt (pip install ccxt)")
        module = DeferredPackage(name)
        module.__spec__ = spec
        module.__loader__ = spec.loader
        module.__file__ = spec.origin
        module.__path__ = list(spec.submodule_search_locations)
        module.__package__ = name
        sys.modules[name] = module
        if parent is not None:
            setattr(parent, name.rpartition(".")[2], module)
        return module


@lru_cache(maxsize=2)
def _base_exports(package: str) -> dict[str, tuple[str, str]]:
    """The names ``package``'s ``__init__`` binds with ``from <base module> import name``: each
    name's module and attribute there, read from the source without running it."""
    tree = _init_tree(package)
    exports: dict[str, tuple[str, str]] = {}
    for node in tree.body if tree is not None else ():
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if any(node.module == p or node.module.startswith(p + ".") for p in _BASE_PREFIXES):
                for alias in node.names:
                    if alias.name != "*":
                        exports[alias.asname or alias.name] = (node.module, alias.name)
    return exports


@lru_cache(maxsize=2)
def _init_tree(package: str) -> ast.Module | None:
    """The syntax tree of ``package``'s ``__init__.py`` (not run), or None if it cannot be read."""
    module = sys.modules.get(package)
    spec = module.__spec__ if module is not None else importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return None
    try:
        return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None

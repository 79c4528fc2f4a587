"""One exchange's ccxt class without ccxt's import of every exchange (core.ccxt_modules).

Each case runs in a fresh interpreter: what is imported is the subject.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ccxt_questdb_assets.core.ccxt_modules import exchange_class
from ccxt_questdb_assets.core.errors import ConfigError

# what a process sees of ccxt's two packages: each public name and the type of its value
_SURFACE = """
import ccxt, ccxt.async_support
def surface(module):
    return {k: type(getattr(module, k)).__name__ for k in dir(module) if not k.startswith("__")}
"""


def _run(*parts: str) -> dict:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_one_exchange_is_loaded_alone_and_ccxt_is_whole_for_whoever_imports_it_after():
    lean = _run(
        """
        import json, sys
        from ccxt_questdb_assets.core import ccxt_modules
        cls = ccxt_modules.exchange_class("binance", async_=True)
        sync_cls = ccxt_modules.exchange_class("okx", async_=False)
        errors = ccxt_modules.errors()
        exchange_modules = sorted(
            m for m in sys.modules
            if m.count(".") == (2 if m.startswith("ccxt.async_support.") else 1)
            and m.split(".")[-1] in ccxt_modules.exchange_ids()
        )
        before = {"exchange_modules": exchange_modules, "modules": len(sys.modules)}
        """,
        _SURFACE,
        """
        import importlib.metadata
        print(json.dumps({
            **before,
            "same_class": ccxt.async_support.binance is cls and ccxt.okx is sync_cls,
            "class_module": cls.__module__,
            "errors_shared": errors.BaseError is ccxt.BaseError is ccxt.async_support.BaseError,
            "is_exchange": isinstance(cls({}), ccxt.async_support.Exchange),
            "version": ccxt.__version__ == importlib.metadata.version("ccxt"),
            "ids": list(ccxt.exchanges) == list(ccxt_modules.exchange_ids()),
            "sync": surface(ccxt), "async": surface(ccxt.async_support),
        }))
        """,
    )
    full = _run(
        _SURFACE,
        """
        import json
        print(json.dumps({"sync": surface(ccxt), "async": surface(ccxt.async_support)}))
        """,
    )
    assert lean["exchange_modules"] == ["ccxt.async_support.binance", "ccxt.okx"]
    assert lean["class_module"] == "ccxt.async_support.binance"
    assert lean["same_class"] and lean["errors_shared"] and lean["is_exchange"]
    assert lean["version"] and lean["ids"]
    # after the whole import, ccxt is what a plain ``import ccxt`` gives: every name, of the same type
    assert lean["async"] == full["async"]
    assert {k: v for k, v in lean["sync"].items() if k != "async_support"} == {
        k: v for k, v in full["sync"].items() if k != "async_support"
    }
    assert len(lean["sync"]) > 100  # the exchanges, errors and helpers


def test_a_ccxt_imported_in_full_is_used_as_it_is():
    seen = _run(
        """
        import json, ccxt.async_support
        from ccxt_questdb_assets.core import ccxt_modules
        cls = ccxt_modules.exchange_class("kraken", async_=True)
        print(json.dumps({
            "same": cls is ccxt.async_support.kraken,
            "plain_module": type(ccxt.async_support).__name__,
        }))
        """
    )
    assert seen == {"same": True, "plain_module": "module"}


def test_an_id_ccxt_does_not_know_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"unknown ccxt exchange id 'binanse'; did you mean binance"):
        exchange_class("binanse", async_=True)
    with pytest.raises(ConfigError, match=r"unknown ccxt exchange id 'base'"):
        exchange_class("base", async_=False)  # a ccxt module, not an exchange

"""freqtrade, the peer of target 9: its own virtualenv, its config against the emulator, its stored data.

The benchmark command installs ``freqtrade==2026.9`` from PyPI into a virtualenv of its own
(``.ccxt-questdb/peer-venv`` beside the project, or under ``$CCXT_QUESTDB_HOME``), once: later
invocations reuse it while its marker names the same version. uv creates it (``uv venv`` with this
interpreter's Python, ``uv pip install --compile-bytecode``: freqtrade's PyPI wheels need no
compiler, TA-Lib's included), so each run of freqtrade starts from compiled bytecode, as ours does.

freqtrade is configured as a user points it at Binance (``exchange.name: binance``), with ccxt's
URLs rewritten onto the emulator (every URL of ccxt's ``binance.urls['api']``, by the project's own
rule, in ``ccxt_config`` and ``ccxt_async_config``) and ccxt's throttle off
(``enableRateLimit: false``). Its fast download from Binance's public archive asks a hard-coded
``https://data.binance.vision``, which no config key redirects, so ``exchange.only_from_ccxt: true``
(freqtrade's own switch) turns it off: freqtrade pages the emulator's REST API, and never reaches
for the real archive (whose rows are not the emulator's). Offline, without the switch, the archive
attempt fails at name resolution within milliseconds and freqtrade falls back to REST all the same
(docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness import REPO_ROOT, log

VERSION = "2026.9"
PAIR = "BTC/USDT"


def venv_dir() -> Path:
    home = os.environ.get("CCXT_QUESTDB_HOME", "").strip()
    return (Path(home) if home else REPO_ROOT / ".ccxt-questdb") / "peer-venv"


def _uv() -> list[str]:
    for candidate in (["uv"], [sys.executable, "-m", "uv"], ["python3", "-m", "uv"]):
        if candidate == ["uv"] and not shutil.which("uv"):
            continue
        try:
            done = subprocess.run([*candidate, "--version"], capture_output=True, timeout=60, check=False)
        except OSError:
            continue
        if done.returncode == 0:
            return candidate
    raise RuntimeError("target 9 needs uv to install freqtrade (pip install uv)")


def ensure_freqtrade() -> Path:
    """The freqtrade executable of the peer virtualenv, installed first if needed."""
    root = venv_dir()
    exe, marker = root / "bin" / "freqtrade", root / "peer-version"
    if exe.exists() and marker.exists() and marker.read_text().strip() == VERSION:
        return exe
    uv = _uv()
    log(f"peer: installing freqtrade=={VERSION} into {root} (once)")
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(root)], check=True)
    subprocess.run(
        [*uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(root / "bin" / "python"),
         f"freqtrade=={VERSION}"],
        check=True,
    )  # fmt: skip
    userdir = root / "userdir"
    subprocess.run([str(exe), "create-userdir", "--userdir", str(userdir)], check=True, capture_output=True)
    marker.write_text(VERSION + "\n")
    return exe


def write_config(path: Path, base_url: str) -> Path:
    """A freqtrade config for Binance spot with ccxt's URLs on the emulator and no throttle."""
    import ccxt

    from ccxt_questdb_assets.exchange.client import rewrite_api_urls

    urls = rewrite_api_urls(ccxt.binance().urls["api"], base_url)
    ccxt_config = {"enableRateLimit": False, "urls": {"api": urls}}
    config = {
        "exchange": {
            "name": "binance",
            "ccxt_config": ccxt_config,
            "ccxt_async_config": ccxt_config,
            "pair_whitelist": [PAIR],
            # freqtrade's switch off its fast download from the public archive, whose host is fixed
            # (https://data.binance.vision): never reach for it, page the emulator's REST API.
            "only_from_ccxt": True,
        },
        "stake_currency": "USDT",
        "dry_run": True,
        "dataformat_ohlcv": "feather",
        "dataformat_trades": "feather",
    }
    path.write_text(json.dumps(config, indent=1))
    return path


def download_command(exe: Path, config: Path, datadir: Path, timerange: str, *, trades: bool = False) -> list[str]:
    cmd = [
        str(exe),
        "download-data",
        "--config",
        str(config),
        "--userdir",
        str(venv_dir() / "userdir"),
        "--datadir",
        str(datadir),
        "--timerange",
        timerange,
        "--timeframes",
        "1m",
        "--pairs",
        PAIR,
    ]
    return [*cmd, "--dl-trades"] if trades else cmd


def candles_file(datadir: Path) -> Path:
    return datadir / "BTC_USDT-1m.feather"


def trades_file(datadir: Path) -> Path:
    return datadir / "BTC_USDT-trades.feather"


def read_candles(datadir: Path) -> tuple[np.ndarray, np.ndarray]:
    """freqtrade's stored candles: open times in ms and rows of open, high, low, close, volume."""
    frame = pd.read_feather(candles_file(datadir))
    ts = frame["date"].dt.as_unit("ms").astype("int64").to_numpy()
    return ts, frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)


def delete_day(datadir: Path, start_ms: int) -> int:
    """Remove the day starting at ``start_ms`` from freqtrade's candle file; returns the rows removed."""
    path = candles_file(datadir)
    frame = pd.read_feather(path)
    ts = frame["date"].dt.as_unit("ms").astype("int64").to_numpy()
    keep = (ts < start_ms) | (ts >= start_ms + 86_400_000)
    frame.loc[keep].reset_index(drop=True).to_feather(path, compression="lz4")
    return int((~keep).sum())


def read_trades(datadir: Path) -> pd.DataFrame:
    """freqtrade's stored trades: timestamp (ms), id, side, price, amount."""
    frame = pd.read_feather(trades_file(datadir))
    return frame[["timestamp", "id", "side", "price", "amount"]]

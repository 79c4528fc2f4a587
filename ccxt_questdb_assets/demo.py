"""The main job on the embedded default: a local QuestDB and the bundled exchange emulator.

Backfills a week of 1m candles for two symbols through the library, prints what is stored,
then stops the emulator and leaves QuestDB running for inspection (``ccxt-questdb questdb stop``).
Until the Dagster layer lands this is the project's main job.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from ccxt_questdb_assets.services.questdb_server import ServerSettings, server_status, start_detached

SYMBOLS = ("BTC/USDT", "ETH/USDT")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="backfill a week of candles for two symbols into a local QuestDB")
    p.add_argument("--days", type=int, default=7)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ccxt_questdb_assets import CcxtQuestDBProvider
    from ccxt_questdb_assets.testing.emulator.server import EmulatorServer

    settings = ServerSettings.from_env()
    status = server_status(settings.data_dir)
    if not status.running:
        print(f"starting QuestDB in {settings.data_dir} ...")
        status = start_detached(settings)
    print(f"QuestDB {status.version or ''} running (pid {status.pid}), data in {settings.data_dir}")
    emulator = EmulatorServer().start()
    print(f"exchange emulator at {emulator.base_url}")
    try:
        end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        start = end - timedelta(days=args.days)
        for symbol in SYMBOLS:
            cfg = {
                "exchange": "binance", "symbols": [symbol], "timeframe": "1m", "base_url": emulator.base_url,
                "questdb": {"host": settings.client_host, "port": settings.ports.pg, "http_port": settings.ports.http,
                            "table_prefix": "demo"},
            }
            provider = CcxtQuestDBProvider.from_config(cfg)
            t0 = time.perf_counter()
            frame = provider.fetch_sync(start, end, node_id=f"ohlcv:binance:{symbol}:1m")
            report = provider.last_report
            print(f"{symbol}: {len(frame)} candles {frame['ts'].min()} .. {frame['ts'].max()}; "
                  f"{report.requests} exchange requests, {report.rows_written} rows written, "
                  f"{time.perf_counter() - t0:.1f} s")
    finally:
        emulator.stop()
    print(f"data in table demo_ohlcv; PG wire: psql -h {settings.client_host} -p {settings.ports.pg} -U admin qdb; "
          f"web console: http://{settings.client_host}:{settings.ports.http}; stop with: ccxt-questdb questdb stop")
    return 0

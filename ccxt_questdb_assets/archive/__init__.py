"""Binance's public archive of klines and aggregated trades: a second source of closed history."""

"""aiohttp application serving every exchange dialect of :mod:`.dialects`, plus ``/_emulator`` control.

Each API path belongs to one dialect (Binance spot, Binance USD-M, OKX, Bybit, Coinbase, Kraken);
all share the synthetic market, the clock, the request log and the fault injector, and each has a
request budget of its own. Control (no weight, not logged): ``/_emulator/...`` (see
:mod:`.control` for the client and docs/emulator.md for the routes).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from ccxt_questdb_assets.emulator import archive
from ccxt_questdb_assets.emulator.dialects import DIALECTS, route_for
from ccxt_questdb_assets.emulator.dialects.base import Answer, Dialect, DialectError, RawJSON
from ccxt_questdb_assets.emulator.dialects.binance_params import BinanceError
from ccxt_questdb_assets.emulator.dialects.pages import gateway_page
from ccxt_questdb_assets.emulator.faults import ERROR_FAULTS, FaultRule
from ccxt_questdb_assets.emulator.state import Clock, EmulatorState
from ccxt_questdb_assets.emulator.weights import WeightBudget

__all__ = ["STATE_KEY", "BinanceError", "Clock", "EmulatorState", "create_app"]  # the state re-exported

CONTROL_PREFIX = "/_emulator"
ARCHIVE_PREFIX = "/data/"


# ----------------------------------------------------------------------------- API


def _json_response(status: int, payload: Any, headers: dict[str, str]) -> web.Response:
    body = payload if isinstance(payload, RawJSON) else json.dumps(payload, separators=(",", ":"))
    return web.Response(status=status, text=body, content_type="application/json", charset="UTF-8", headers=headers)


def _answer(answer: Answer) -> web.Response:
    if answer.content_type == "application/json":
        return _json_response(answer.status, answer.body, answer.headers)
    return web.Response(
        status=answer.status, text=str(answer.body), content_type=answer.content_type, headers=answer.headers
    )


def _api_handler(state: EmulatorState):
    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            return web.json_response({"error": f"unknown control route {request.method} {path}"}, status=404)
        if path.startswith(ARCHIVE_PREFIX):
            return _archive(state, request)
        seq = state.next_seq()
        params = dict(request.query)
        found = route_for(path) if request.method in ("GET", "HEAD") else None
        dialect: Dialect | None = found[0] if found else None
        entry: dict[str, Any] = {
            "seq": seq,
            "time_ms": int(time.time() * 1000),
            "method": request.method,
            "path": path,
            "params": params,
            "status": None,
            "weight": 0,
            "fault": None,
            "dialect": dialect.name if dialect else None,
            "client": request.remote,  # the caller's address: which host a request came from
        }
        # logged on arrival and completed in place: a slow request finishing after reset() stays out of the log
        state.record(entry)
        budget = state.budgets[dialect.name] if dialect else state.weights
        rule = state.faults.take(path)
        if rule is not None:
            entry["fault"] = rule.kind
        if rule is not None and rule.kind in ERROR_FAULTS:
            if rule.kind == "drop_connection":
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError
            answer = (dialect or DIALECTS[0]).fault(rule, budget.used())
            entry["status"] = answer.status
            return _answer(answer)
        if rule is not None and rule.kind == "delay":
            await asyncio.sleep(rule.delay_s if rule.delay_s is not None else 2.0)
        if found is None or dialect is None:
            entry["status"] = 404
            return _answer(gateway_page(404))
        route, path_values = found[1], found[2]
        query = {**request.query, **path_values} if path_values else request.query
        weight = route.cost(query)
        charge = budget.charge(weight)
        entry["weight"] = weight
        headers = dialect.headers(charge.used)
        if not charge.ok:
            answer = dialect.rate_limited(charge.retry_after_s, charge.used, budget.limit)
            entry["status"] = answer.status
            return _answer(answer)
        try:
            payload = route.handler(state, query)
        except DialectError as err:
            entry["status"] = err.status
            return _json_response(err.status, err.body, {**headers, **err.headers})
        except Exception:
            entry["status"] = 500  # an emulator bug: aiohttp answers 500
            raise
        if rule is not None and isinstance(payload, RawJSON):
            payload = json.loads(payload)
        if rule is not None:
            payload = dialect.mangle(rule, payload)
        if rule is not None and rule.kind == "truncated_json":
            body = json.dumps(payload, separators=(",", ":"))
            cut = body[: max(1, len(body) // 2)]
            entry["status"] = 200
            return web.Response(status=200, text=cut, content_type="application/json", charset="UTF-8", headers=headers)
        entry["status"] = 200
        return _json_response(200, payload, headers)

    return handle


def _archive(state: EmulatorState, request: web.Request) -> web.Response:
    """A file of the public archive: logged (dialect ``archive``), never charged to a budget."""
    entry: dict[str, Any] = {
        "seq": state.next_seq(),
        "time_ms": int(time.time() * 1000),
        "method": request.method,
        "path": request.path,
        "params": {},
        "status": None,
        "weight": 0,
        "fault": None,
        "dialect": "archive",
    }
    state.record(entry)
    status, body, content_type = archive.answer(state, request.path)
    entry["status"] = status
    return web.Response(status=status, body=body, content_type=content_type)


# ----------------------------------------------------------------------------- control routes


def _control_routes(state: EmulatorState) -> list[web.RouteDef]:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "now_ms": state.clock.now_ms()})

    async def get_requests(request: web.Request) -> web.Response:
        path = request.query.get("path")
        since = int(request.query.get("since_seq", "0"))
        return web.json_response({"requests": state.requests(path, since)})

    async def count_requests(request: web.Request) -> web.Response:
        return web.json_response({"count": len(state.requests(request.query.get("path")))})

    async def clear_requests(request: web.Request) -> web.Response:
        with state._lock:
            state.log.clear()
        return web.json_response({"ok": True})

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response({"faults": state.faults.list()})

    async def add_fault(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            rule = state.faults.add(FaultRule.armed(body))
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"fault": rule.to_dict()})

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.json_response({"ok": True})

    async def get_clock(request: web.Request) -> web.Response:
        return web.json_response(state.clock.to_dict())

    async def set_clock(request: web.Request) -> web.Response:
        body = await request.json()
        if "frozen_ms" in body:
            state.clock.frozen_ms = None if body["frozen_ms"] is None else int(body["frozen_ms"])
        if "offset_ms" in body:
            state.clock.offset_ms = int(body["offset_ms"])
        return web.json_response(state.clock.to_dict())

    def _budget(name: str | None) -> WeightBudget:
        if name is None:
            return state.weights
        if name not in state.budgets:
            raise ValueError(f"unknown dialect {name!r}; known: {', '.join(state.budgets)}")
        return state.budgets[name]

    def _config_answer(budget: WeightBudget) -> web.Response:
        """A dialect's budget, and every dialect's limit."""
        return web.json_response(
            {
                "weight_limit": budget.limit,
                "used_weight": budget.used(),
                "default_weight_limit": state.default_weight_limit,
                "limits": {n: b.limit for n, b in state.budgets.items()},
            }
        )

    async def get_config(request: web.Request) -> web.Response:
        try:
            budget = _budget(request.query.get("dialect"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return _config_answer(budget)

    async def set_config(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            budget = _budget(body.get("dialect"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if "weight_limit" in body:
            limit = int(body["weight_limit"])
            if limit < 1:
                return web.json_response({"error": "weight_limit must be >= 1"}, status=400)
            budget.limit = limit
        if body.get("reset_weight"):
            budget.reset()
        return _config_answer(budget)

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"ok": True})

    def _market_entry(s: str) -> dict[str, Any]:
        m = state.market
        return {
            "symbol": s,
            "ccxt_symbol": m.spec(s).ccxt_symbol,
            "listing_ms": m.listing_ms(s),
            "outages": m.outages(s),
            "status": state.status.get(s, "TRADING"),
        }

    async def get_archive(request: web.Request) -> web.Response:
        return web.json_response(state.archive.to_dict())

    async def set_archive(request: web.Request) -> web.Response:
        try:
            state.archive.update(await request.json())
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(state.archive.to_dict())

    async def market_info(request: web.Request) -> web.Response:
        return web.json_response({"symbols": [_market_entry(s) for s in state.market.symbols]})

    async def list_market(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            symbol = state.list_market(
                str(body["base"]),
                str(body["quote"]),
                listing_ms=None if body.get("listing_ms") is None else int(body["listing_ms"]),
                base_price=float(body.get("base_price", 10.0)),
                status=str(body.get("status", "TRADING")),
            )
        except KeyError as exc:
            return web.json_response({"error": f"missing {exc.args[0]!r}: give base and quote"}, status=400)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"market": _market_entry(symbol)})

    p = CONTROL_PREFIX
    return [
        web.get(f"{p}/health", health),
        web.get(f"{p}/requests", get_requests),
        web.get(f"{p}/requests/count", count_requests),
        web.delete(f"{p}/requests", clear_requests),
        web.get(f"{p}/faults", get_faults),
        web.post(f"{p}/faults", add_fault),
        web.delete(f"{p}/faults", clear_faults),
        web.get(f"{p}/clock", get_clock),
        web.post(f"{p}/clock", set_clock),
        web.get(f"{p}/config", get_config),
        web.post(f"{p}/config", set_config),
        web.post(f"{p}/reset", reset),
        web.get(f"{p}/market", market_info),
        web.get(f"{p}/archive", get_archive),
        web.post(f"{p}/archive", set_archive),
        web.post(f"{p}/market", list_market),
    ]


STATE_KEY = web.AppKey("emulator_state", EmulatorState)


def create_app(state: EmulatorState | None = None) -> web.Application:
    """The aiohttp app; ``app[STATE_KEY]`` is the :class:`EmulatorState`."""
    state = state or EmulatorState()
    for dialect in DIALECTS:
        state.add_budget(dialect.name, dialect.default_limit, dialect.budget_window_s)
    app = web.Application()
    app[STATE_KEY] = state
    app.add_routes(_control_routes(state))
    app.router.add_route("*", "/{tail:.*}", _api_handler(state))
    return app

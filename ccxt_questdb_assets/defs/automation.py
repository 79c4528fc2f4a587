"""Automation: what keeps the assets fresh and tells someone when a run fails.

Per exchange (``build_automation``):

* job ``{exchange}_ingest``: the exchange's partitioned assets (its asset group, their checks
  included), for one symbol and one day or a range of days per run.
* schedule ``{exchange}_refresh`` (cron ``refresh.cron``, default ``*/5 * * * *`` UTC; default
  status ``refresh.running``, off unless the project says so): each tick launches one run of the
  job per symbol currently in ``{exchange}_symbols``, over today's partition, and in the first
  hour of a day over yesterday's too (its last bars have just closed). A run costs only the gaps
  (coverage): the bars closed since the last tick, and the derived bars they complete, in the same
  run. So a closed bar reaches its table, and the derived tables, within one cron interval plus a
  run (about 10 s) of its close. The run key ``{symbol}@{tick}`` makes a re-evaluated tick launch
  nothing twice. It contacts the exchange every tick for every symbol, so a project turns it on
  deliberately (``refresh: {running: true}``; the embedded default does), or in the UI.
* sensor ``{exchange}_symbols`` (every 300 s, default RUNNING): adds the config's symbols missing
  from the dynamic partitions, and with ``listing_pattern`` (an ``fnmatch`` glob over ccxt symbols,
  such as ``*/USDT``) also markets **listed after the sensor first looked**: the first check
  loads the active spot markets and keeps the matching ones in its cursor as the baseline (an
  exchange such as Binance has hundreds of ``*/USDT`` markets; put existing ones you want under
  ``symbols``); every later tick loads the markets again (fresh, through the shared rate limiter,
  one ``load_markets`` request) and adds matching active spot markets the baseline did not have.
  Delisted markets are never removed (their stored data stays). A bad pattern fails at load.

For the code location: sensor ``follow_upstream`` (an automation condition sensor, every 30 s,
default RUNNING): requests the computed assets' partitions whose upstream partitions were updated
(``asset_options.follow_upstream``), whoever updated them; it only computes inside QuestDB, never
calls an exchange, so it is on by default.

For the code location: sensor ``run_failure_webhook`` (default RUNNING, every job of the code
location) posts a Slack-compatible ``{"text", "blocks"}`` message per failed run to the URL in the
variable named by ``alerts.webhook_url_env`` (default ``CCXT_QUESTDB_ALERT_WEBHOOK``); unset, it
logs and does nothing. The message names the job, the run id, the partition, the failed step(s)
and the first line of the error, with DSN passwords, ``key=value`` secrets and the values of
secret-looking environment variables replaced by ``***``. It POSTs with a timeout, retries once on
a network error, 429 or 5xx, and logs (never raises) when the webhook stays unreachable, so a dead
webhook cannot wedge the sensor on one run.

``partitions.sync_symbol_partitions(instance, project)`` adds the config's symbols at once (the CLI and the
demo), without waiting for a sensor tick.
"""

# No ``from __future__ import annotations``: Dagster resolves the sensors' and schedule's
# annotations at definition time, and these are defined in closures.

import asyncio
import concurrent.futures
import contextvars
import fnmatch
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from dagster import (
    AddDynamicPartitionsRequest,
    AssetsDefinition,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    run_failure_sensor,
    schedule,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ccxt_questdb_assets.core.errors import ConfigError
from ccxt_questdb_assets.core.redaction import REDACTED, redact_dsn
from ccxt_questdb_assets.defs.partitions import (
    is_partition_safe,
    market_partitions,
    partition_key,
    symbols_partitions,
)
from ccxt_questdb_assets.defs.project_config import ExchangeProject, ProjectConfig
from ccxt_questdb_assets.defs.rate_limiter_resource import ENV_LIMITER_REDIS
from ccxt_questdb_assets.exchange.client import clear_markets_cache
from ccxt_questdb_assets.exchange.config import CcxtBackfillConfig
from ccxt_questdb_assets.exchange.session import ExchangeSession
from ccxt_questdb_assets.storage.connection import ENV_PASSWORD

log = logging.getLogger(__name__)

DEFAULT_WEBHOOK_ENV = "CCXT_QUESTDB_ALERT_WEBHOOK"
SYMBOLS_SENSOR_INTERVAL_S = 300
FOLLOW_UPSTREAM_SENSOR_NAME = "follow_upstream"
FOLLOW_UPSTREAM_INTERVAL_S = 30
FAILURE_SENSOR_NAME = "run_failure_webhook"
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_ATTEMPTS = 2
WEBHOOK_RETRY_DELAY_S = 1.0
TRIGGER_TAG = "ccxt_questdb/trigger"
_ERROR_LINE_MAX = 500


def ingest_job_name(exchange_id: str) -> str:
    return f"{exchange_id}_ingest"


def refresh_schedule_name(exchange_id: str) -> str:
    return f"{exchange_id}_refresh"


def symbols_sensor_name(exchange_id: str) -> str:
    return f"{exchange_id}_symbols"


# ----------------------------------------------------------------------------- builder


def build_automation(
    project: ProjectConfig, assets: Sequence[Any], *, symbols_interval_s: int = SYMBOLS_SENSOR_INTERVAL_S
) -> dict[str, list[Any]]:
    """``{"jobs": [...], "schedules": [...], "sensors": [...]}`` for ``Definitions(**...)``.

    ``assets`` are the project's assets definitions (ingest, derived, ...): each exchange's job
    selects those of its group that share the exchange's date x symbol partitions, with their checks.
    """
    jobs: list[UnresolvedAssetJobDefinition] = []
    schedules: list[ScheduleDefinition] = []
    sensors: list[SensorDefinition] = []
    for ex in project.exchanges:
        pattern = compile_listing_pattern(ex.listing_pattern, ex.exchange_id) if ex.listing_pattern else None
        job = _ingest_job(project, ex, assets)
        jobs.append(job)
        schedules.append(_refresh_schedule(project, ex, job))
        sensors.append(_symbols_sensor(ex, pattern, symbols_interval_s))
    sensors.append(
        AutomationConditionSensorDefinition(
            FOLLOW_UPSTREAM_SENSOR_NAME,
            target=AssetSelection.all(),
            default_status=DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=FOLLOW_UPSTREAM_INTERVAL_S,
            description="Computes the derived assets' partitions whose upstream partitions were updated (in QuestDB "
            "only: it never calls an exchange).",
        )
    )
    sensors.append(_failure_sensor(project))
    return {"jobs": jobs, "schedules": schedules, "sensors": sensors}


def _ingest_job(project: ProjectConfig, ex: ExchangeProject, assets: Sequence[Any]) -> UnresolvedAssetJobDefinition:
    partitions = market_partitions(ex.exchange_id, project.start_date)
    keys = []
    for a in assets:
        if not isinstance(a, AssetsDefinition) or a.partitions_def != partitions:
            continue
        keys.extend(spec.key for spec in a.specs if spec.group_name == ex.exchange_id)
    if not keys:
        raise ConfigError(
            f"no partitioned assets in group {ex.exchange_id!r} to build job "
            f"{ingest_job_name(ex.exchange_id)!r}: pass build_ingest_assets(project) to build_automation"
        )
    return define_asset_job(
        ingest_job_name(ex.exchange_id),
        selection=AssetSelection.assets(*keys),
        description=f"Every {ex.exchange_id} asset and its checks for one symbol's day or days (the refresh "
        "schedule's job).",
        tags={"ccxt_questdb/exchange": ex.exchange_id},
    )


# ----------------------------------------------------------------------------- refresh schedule


def refresh_days(tick: datetime, start_date: str) -> list[str]:
    """The UTC days a tick refreshes: today, and yesterday too during the first hour of a day."""
    tick = tick.astimezone(UTC) if tick.tzinfo else tick.replace(tzinfo=UTC)
    today = tick.date()
    days = [today - timedelta(days=1), today] if tick.hour == 0 else [today]
    first = date.fromisoformat(start_date)
    return [d.isoformat() for d in days if d >= first]


def refresh_request(days: Sequence[str], symbol: str, stamp: str) -> RunRequest:
    """One run of the exchange's job over ``days`` (consecutive) of ``symbol``."""
    tags = {TRIGGER_TAG: "refresh"}
    run_key = f"{symbol}@{stamp}"
    if len(days) == 1:
        return RunRequest(run_key=run_key, partition_key=str(partition_key(days[0], symbol)), tags=tags)
    tags[ASSET_PARTITION_RANGE_START_TAG] = str(partition_key(days[0], symbol))
    tags[ASSET_PARTITION_RANGE_END_TAG] = str(partition_key(days[-1], symbol))
    return RunRequest(run_key=run_key, tags=tags)


def _refresh_schedule(
    project: ProjectConfig, ex: ExchangeProject, job: UnresolvedAssetJobDefinition
) -> ScheduleDefinition:
    partitions_name = symbols_partitions(ex.exchange_id).name
    start_date = project.start_date
    status = DefaultScheduleStatus.RUNNING if project.refresh.running else DefaultScheduleStatus.STOPPED

    @schedule(
        name=refresh_schedule_name(ex.exchange_id),
        job=job,
        cron_schedule=project.refresh.cron,
        execution_timezone="UTC",
        default_status=status,
        description=(
            f"Keeps every {ex.exchange_id} asset fresh: one run per symbol over today's partition (and "
            "yesterday's in the first hour of a day); only the gaps are fetched, and the derived bars "
            "they complete are computed in the same run. It calls the exchange every tick."
        ),
    )
    def refresh(context: ScheduleEvaluationContext):
        tick = context.scheduled_execution_time or datetime.now(UTC)
        symbols = sorted(context.instance.get_dynamic_partitions(partitions_name))
        if not symbols:
            return SkipReason(
                f"no symbols in {partitions_name} yet: the {symbols_sensor_name(ex.exchange_id)} "
                "sensor adds the config's symbols"
            )
        days = refresh_days(tick, start_date)
        if not days:
            return SkipReason(f"{tick.date()} is before start_date {start_date}")
        stamp = tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
        return [refresh_request(days, symbol, stamp) for symbol in symbols]

    return refresh


# ----------------------------------------------------------------------------- symbols sensor


def compile_listing_pattern(pattern: Any, exchange_id: str = "exchange") -> re.Pattern[str]:
    """The compiled ``fnmatch`` glob of ``listing_pattern``; ConfigError for a pattern that cannot match."""
    where = f"exchanges.{exchange_id}.listing_pattern"
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigError(f"{where} {pattern!r} must be a glob over ccxt symbols such as '*/USDT'")
    if pattern != pattern.strip():
        raise ConfigError(f"{where} {pattern!r} has leading or trailing spaces; ccxt symbols have none")
    if "/" not in pattern and pattern.strip("*") != "":
        raise ConfigError(
            f"{where} {pattern!r} has no '/': it is matched against ccxt symbols such as 'BTC/USDT' "
            "(e.g. '*/USDT', 'BTC/*')"
        )
    if any(c in pattern for c in "|,"):
        raise ConfigError(f"{where} {pattern!r} contains '|' or ',', which no symbol partition may hold")
    if pattern.count("[") != pattern.count("]"):
        raise ConfigError(f"{where} {pattern!r} has an unclosed '[' (a character class such as '[BE]*/USDT')")
    regex = fnmatch.translate(pattern)
    if "(?!)" in regex:
        raise ConfigError(f"{where} {pattern!r} has an empty character range (such as '[z-a]') and matches nothing")
    return re.compile(regex)


def matching_markets(markets: Mapping[str, Mapping[str, Any]], pattern: re.Pattern[str]) -> set[str]:
    """Active spot markets whose ccxt symbol matches (``active`` unknown counts as active)."""
    out = set()
    for symbol, market in markets.items():
        if not market.get("spot") or market.get("active") is False:
            continue
        if pattern.match(symbol) and is_partition_safe(symbol):
            out.add(symbol)
    return out


def load_markets_fresh(config: CcxtBackfillConfig) -> dict[str, Any]:
    """The exchange's markets reloaded now (not the process cache), through the shared limiter and retries."""

    async def load() -> dict[str, Any]:
        session = ExchangeSession(config)
        try:
            return dict(await session.call("load_markets", True))
        finally:
            await session.close()

    return _run_coroutine(load)


def _run_coroutine(make: Callable[[], Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ccxt-listings") as pool:
        return pool.submit(contextvars.copy_context().run, asyncio.run, make()).result()


def _parse_cursor(cursor: str | None) -> set[str] | None:
    if not cursor:
        return None
    try:
        known = json.loads(cursor).get("known")
    except (ValueError, AttributeError):
        return None
    return set(known) if isinstance(known, list) else None


def _symbols_sensor(ex: ExchangeProject, pattern: re.Pattern[str] | None, interval_s: int) -> SensorDefinition:
    partitions_name = symbols_partitions(ex.exchange_id).name
    config = ex.ohlcv.backfill
    listing = f" and new listings matching {ex.listing_pattern!r}" if pattern else ""

    @sensor(
        name=symbols_sensor_name(ex.exchange_id),
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Adds the config's {ex.exchange_id} symbols{listing} to the {partitions_name} partitions.",
    )
    def symbols_sensor(context: SensorEvaluationContext):
        existing = set(context.instance.get_dynamic_partitions(partitions_name))
        to_add = [s for s in dict.fromkeys(ex.symbols) if s not in existing]
        cursor = context.cursor
        listed: list[str] = []
        if pattern is not None:
            try:
                markets = load_markets_fresh(config)
            except Exception as exc:
                if not to_add:
                    raise
                context.log.error(
                    f"{ex.exchange_id}: cannot load markets for listings ({type(exc).__name__}: "
                    f"{redact_text(str(exc))}); adding the config's symbols only"
                )
            else:
                matching = matching_markets(markets, pattern)
                baseline = _parse_cursor(cursor)
                if baseline is None:
                    context.log.info(
                        f"{ex.exchange_id}: first listings check, {len(matching)} active spot markets match "
                        f"{ex.listing_pattern!r}; they are the baseline (list wanted ones under symbols); markets "
                        "listed from now on are added"
                    )
                else:
                    listed = sorted(matching - baseline - existing - set(to_add))
                cursor = json.dumps(
                    {
                        "pattern": ex.listing_pattern,
                        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "known": sorted(matching),
                    }
                )
        if listed:
            context.log.info(f"{ex.exchange_id}: new listings {', '.join(listed)}")
            clear_markets_cache()  # runs in this process must see the new markets too
        to_add += listed
        if not to_add:
            return SensorResult(cursor=cursor, skip_reason=SkipReason(f"no new {ex.exchange_id} symbols"))
        context.log.info(f"adding {len(to_add)} symbol(s) to {partitions_name}: {', '.join(to_add)}")
        return SensorResult(
            cursor=cursor, dynamic_partitions_requests=[AddDynamicPartitionsRequest(partitions_name, to_add)]
        )

    return symbols_sensor


# ----------------------------------------------------------------------------- failure webhook

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_KEY_VALUE = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|api[_-]?key|apikey|token|access[_-]?key|private[_-]?key|signature)"
    r"(\s*[=:]\s*[\"']?)([^\s;,&\"'}]+)"
)
_SECRET_ENV_NAME = re.compile(r"(?i)(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|APIKEY|DSN|WEBHOOK|CREDENTIAL|PRIVATE)")


def secret_values(project: ProjectConfig | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """Values that must never leave the process: the variables the project names for credentials and
    the alert webhook, and every variable whose name looks secret (``*PASSWORD*``, ``*API_KEY*``, ...)."""
    environ = os.environ if environ is None else environ
    named = {ENV_PASSWORD, ENV_LIMITER_REDIS, DEFAULT_WEBHOOK_ENV}
    if project is not None:
        if project.webhook_url_env:
            named.add(project.webhook_url_env)
        for ex in project.exchanges:
            for cfg in (ex.ohlcv, ex.trades_config):
                if cfg is not None:
                    named.update(n for n in (cfg.backfill.api_key_env, cfg.backfill.secret_env) if n)
    values = {environ[n] for n in named if len(environ.get(n) or "") >= 4}
    # other secret-looking variables: only values long enough not to be ordinary words or flags
    values.update(
        v
        for n, v in environ.items()
        if _SECRET_ENV_NAME.search(n) and len(v) >= 8 and v.lower() not in ("true", "false", "disabled")
    )
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without secrets: known secret values, URL/DSN passwords and ``key=value`` secrets -> ``***``."""
    for value in secrets:
        text = text.replace(value, REDACTED)
    text = _URL.sub(lambda m: redact_dsn(m.group(0)) or m.group(0), text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


_QUALIFIED_CLASS = re.compile(r"^(?:[a-z_][a-z0-9_]*\.)+([A-Z][A-Za-z0-9_]*): ")


def _first_line(text: str) -> str:
    """The first non-empty line, ``pkg.module.SomeError: msg`` shortened to ``SomeError: msg``."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _QUALIFIED_CLASS.sub(r"\1: ", line)
    return line if len(line) <= _ERROR_LINE_MAX else line[: _ERROR_LINE_MAX - 3] + "..."


def _root_error(error: Any) -> Any:
    """The first error in the chain that is not one of Dagster's wrappers around user code."""
    while error is not None and getattr(error, "cls_name", "").startswith("Dagster") and error.cause is not None:
        error = error.cause
    return error


def failure_summary(context: RunFailureSensorContext) -> dict[str, Any]:
    """Job, run id, partition, failed steps and the first line of the error of a failed run."""
    run = context.dagster_run
    steps: list[str] = []
    error_line = ""
    for event in context.get_step_failure_events():
        if event.step_key:
            steps.append(event.step_key)
        data = event.step_failure_data
        if not error_line and data is not None and data.error is not None:
            root = _root_error(data.error)
            error_line = _first_line(root.message) or root.cls_name
    if not error_line:
        failure = context.failure_event
        data = getattr(failure, "event_specific_data", None)
        err = getattr(data, "error", None)
        error_line = _first_line(_root_error(err).message) if err is not None else _first_line(failure.message or "")
    return {
        "job": run.job_name,
        "run_id": run.run_id,
        "partition": run.tags.get("dagster/partition"),
        "steps": steps,
        "error": error_line or "no error message",
    }


def slack_payload(summary: Mapping[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` fallback plus Block Kit ``blocks``), redacted."""
    secrets = list(secrets)

    def clean(value: Any) -> str:
        # Slack mrkdwn: escape &, <, > (no links or @channel from an error text); no backticks in code spans
        text = redact_text(str(value), secrets)
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")

    job, run_id, error = clean(summary["job"]), clean(summary["run_id"]), clean(summary["error"])
    steps = ", ".join(clean(s) for s in summary["steps"]) or "(no step: the run failed outside a step)"
    partition = clean(summary["partition"]) if summary.get("partition") else None
    where = f" partition {partition}" if partition else ""
    text = f"Dagster run failed: job {job}, run {run_id}{where}. Failed step: {steps}. Error: {error}"
    fields = [
        {"type": "mrkdwn", "text": f"*Job*\n`{job}`"},
        {"type": "mrkdwn", "text": f"*Run id*\n`{run_id}`"},
        {"type": "mrkdwn", "text": f"*Failed step*\n`{steps}`"[:2000]},
    ]
    if partition:
        fields.append({"type": "mrkdwn", "text": f"*Partition*\n`{partition}`"})
    return {
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"Run failed: {job}"[:150]}},
            {"type": "section", "fields": fields},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n```{error}```"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "ccxt_questdb_assets run-failure sensor"}]},
        ],
    }


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def post_webhook(
    url: str,
    payload: Mapping[str, Any],
    *,
    logger: Any = log,
    timeout_s: float = WEBHOOK_TIMEOUT_S,
    attempts: int = WEBHOOK_ATTEMPTS,
    retry_delay_s: float = WEBHOOK_RETRY_DELAY_S,
) -> bool:
    """POST ``payload`` as JSON; retry a network error, 429 or 5xx; True when the webhook took it.

    Never raises for the webhook's failures (they are logged); the URL's path, which holds the
    webhook's token for Slack, is never logged.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        logger.error(f"alert webhook URL is not http(s)://host/...: {parts.scheme or 'no scheme'}://...; not posted")
        return False
    body = json.dumps(payload).encode()
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "ccxt-questdb"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as resp:
                resp.read()
            return True
        except urllib.error.HTTPError as exc:
            reason, retry = f"HTTP {exc.code}", exc.code == 429 or exc.code >= 500
        except (urllib.error.URLError, OSError) as exc:
            reason, retry = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", True
        if not retry or attempt == attempts:
            logger.error(f"alert webhook {_shown(url)} failed ({reason}) after {attempt} attempt(s); alert dropped")
            return False
        logger.warning(f"alert webhook {_shown(url)} failed ({reason}); retrying in {retry_delay_s:g} s")
        time.sleep(retry_delay_s)
    return False


def _failure_sensor(project: ProjectConfig) -> SensorDefinition:
    env_name = project.webhook_url_env or DEFAULT_WEBHOOK_ENV

    @run_failure_sensor(
        name=FAILURE_SENSOR_NAME,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Posts a Slack-compatible message for every failed run of this code location to ${env_name}.",
    )
    def run_failure_webhook(context: RunFailureSensorContext):
        # Return None (never a SkipReason): the run-status machinery then goes on to the next failed run.
        run_id = context.dagster_run.run_id
        url = os.environ.get(env_name, "").strip()
        if not url:
            context.log.info(f"{env_name} is not set: no alert for failed run {run_id}")
            return None
        payload = slack_payload(failure_summary(context), secret_values(project))
        if post_webhook(url, payload, logger=context.log):
            context.log.info(f"alert for failed run {run_id} posted to {_shown(url)}")
        return None

    return run_failure_webhook

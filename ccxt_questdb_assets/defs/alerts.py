"""The ``run_failure_webhook`` sensor: a message per failed run, with no secret in it.

It runs for every job of the code location (default RUNNING) and posts a Slack-compatible
``{"text", "blocks"}`` message per failed run to the URL in the variable named by
``alerts.webhook_url_env`` (default ``CCXT_QUESTDB_ALERT_WEBHOOK``); unset, it logs and does
nothing. The message names the job, the run id, the partition, the failed step(s) and the first
line of the error, with DSN passwords, ``key=value`` secrets and the values of secret-looking
environment variables replaced by ``***``. It POSTs with a timeout, retries once on a network
error, 429 or 5xx, and logs (never raises) when the webhook stays unreachable, so a dead webhook
cannot wedge the sensor on one run.
"""

# No ``from __future__ import annotations``: Dagster resolves the sensor's annotations at
# definition time, and it is defined in a closure.

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from dagster import DefaultSensorStatus, RunFailureSensorContext, SensorDefinition, run_failure_sensor

from ccxt_questdb_assets.core.redaction import REDACTED, redact_dsn
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.defs.rate_limiter_resource import ENV_LIMITER_REDIS
from ccxt_questdb_assets.storage.connection import ENV_PASSWORD

log = logging.getLogger(__name__)

DEFAULT_WEBHOOK_ENV = "CCXT_QUESTDB_ALERT_WEBHOOK"
FAILURE_SENSOR_NAME = "run_failure_webhook"
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_ATTEMPTS = 2
WEBHOOK_RETRY_DELAY_S = 1.0
_ERROR_LINE_MAX = 500


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


def failure_sensor(project: ProjectConfig) -> SensorDefinition:
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

"""The Dagster project through a real ``dagster dev``: webserver, daemon, code server, real runs.

One ``dagster dev`` (module scope) on the test QuestDB and the exchange emulator serves the tests;
its project has two exchanges, Binance (day partitions) and OKX (month partitions, ``partitions:
month``), each served by the emulator in its own dialect:

* a headless Chromium (Debian's ``/usr/bin/chromium``) opens the lineage and partitions pages,
  launches one partition of each exchange from its Materialize dialog (a day of Binance, a month
  of OKX), sees the run succeed, and the partition's candles (1,440; 44,640) are in QuestDB,
  fetched at the fewest requests of the dialect, with the partition's own row count in the UI;
* a 30-day x 2-symbol backfill of ``binance/ohlcv/ohlcv_1m`` launched through GraphQL finishes in a
  few runs (the asset's multi-run backfill policy) with exact candles and the minimum of requests;
* after it, the UI (GraphQL and the browser) shows every backfilled partition with its own row
  count (1,440) and its checks passed, none skipped, although each run held 30 partitions.

The backfill is launched (module fixture) before the browser test and runs while the browser
drives the UI: the backfill daemon's 30 s ticks and the runs' process start-ups overlap the UI
run instead of adding to it. The two touch disjoint days, and requests are counted per symbol
and window from the emulator's log (reset once, at the launch), so each test's numbers stay exact.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from ccxt_questdb_assets.dagster_graphql import BACKFILL_STATUS, LAUNCH_BACKFILL
from ccxt_questdb_assets.defs.partitions import keys_for
from ccxt_questdb_assets.defs.project_config import ProjectConfig
from ccxt_questdb_assets.testing.candles import (
    assert_candles_exact,
    stored_candles,
    truth_candles,
)
from ccxt_questdb_assets.testing.dagster_dev import (
    DagsterDev,
    DagsterDevError,
    dagster_dev,
)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ASSET_PATH = ["binance", "ohlcv", "ohlcv_1m"]
ASSET = "/".join(ASSET_PATH)
NODE_LABEL = ASSET_PATH[-1]  # the lineage graph labels a node with the key's last part
CANDLE_CHECKS = ("no_gaps", "ohlc_sanity", "unique_increasing_timestamps")
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
KLINES = "/api/v3/klines"
DAY_MS = 86_400_000
BACKFILL_DAYS = [str(date(2024, 4, 1) + timedelta(days=i)) for i in range(30)]
UI_SYMBOL = "BTC/USDT"
EXCHANGES = ("binance", "okx")
#: The partition each exchange's UI test launches (outside the backfill window: its own requests)
#: and how many days it spans: a day of Binance's, a month (March 2024) of OKX's monthly assets.
UI_PERIOD = {"binance": ("2024-03-06", 1), "okx": ("2024-03-01", 31)}
#: What it costs: Binance pages 1,000 bars forward, OKX 300 backward.
UI_REQUESTS = {"binance": math.ceil(1440 / 1000), "okx": math.ceil(31 * 1440 / 300)}
BACKFILL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 420

pytestmark = pytest.mark.timeout(1200)  # dagster dev start-up counts against the first test


RUN_STATUS = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }
"""


def utc_ms(day: str) -> int:
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def project_mapping(questdb, emulator, prefix: str) -> dict:
    conn = questdb.connection
    return {
        "start_date": "2024-01-01",
        "questdb": {"host": conn.host, "port": conn.port, "http_port": conn.http_port, "table_prefix": prefix},
        "rate_limiter": {"scope": "process", "max_concurrency": 2},
        "exchanges": {
            "binance": {
                "base_url": emulator.base_url,
                "symbols": SYMBOLS,
                "timeframes": ["1m"],
                "trades": True,
                "retry_backoff_s": 0.01,
            },
            "okx": {
                "base_url": emulator.base_url,
                "symbols": [UI_SYMBOL],
                "timeframes": ["1m"],
                "partitions": "month",
                "retry_backoff_s": 0.01,
            },
        },
    }


class Dev:
    """The module's dagster dev and where each exchange's 1m candles are written."""

    def __init__(self, server: DagsterDev, tables: dict[str, str]) -> None:
        self.server = server
        self.tables = tables
        self.table = tables["binance"]


@pytest.fixture(scope="module")
def dev(questdb, emulator, tmp_path_factory) -> Dev:
    work = tmp_path_factory.mktemp("dagster_dev")
    path = work / "project.yaml"
    path.write_text(yaml.safe_dump(project_mapping(questdb, emulator, "w_" + uuid.uuid4().hex[:10])))
    tables = {ex.exchange_id: ex.ohlcv.tables.data for ex in ProjectConfig.load(path).exchanges}
    try:
        with dagster_dev(work, env={"CCXT_QUESTDB_PROJECT": str(path)}, cwd=ROOT, startup_timeout_s=600) as server:
            print(f"dagster dev ready at {server.url} after {server.startup_s:.1f} s (log {server.log_path})")
            server.add_dynamic_partitions("binance_symbols", SYMBOLS)
            server.add_dynamic_partitions("okx_symbols", [UI_SYMBOL])
            yield Dev(server, tables)
    except DagsterDevError as exc:
        pytest.fail(f"dagster dev: {exc}", pytrace=False)


class Backfill:
    """A launched backfill: its id and when it was launched (monotonic and wall clock)."""

    def __init__(self, backfill_id: str, launched_at: float, launched_epoch: float) -> None:
        self.id = backfill_id
        self.launched_at = launched_at
        self.launched_epoch = launched_epoch


@pytest.fixture(scope="module")
def backfill(dev, emulator) -> Backfill:
    """The 60-partition backfill, launched through GraphQL; the backfill test waits for it."""
    emulator.control.reset()  # the request log of this module starts here (counted per window below)
    keys = keys_for(BACKFILL_DAYS, SYMBOLS)
    assert len(keys) == 60
    launched_at, launched_epoch = time.monotonic(), time.time()
    out = dev.server.graphql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": keys,
                "assetSelection": [{"path": ASSET_PATH}],
                "title": "webserver test backfill",
            }
        },
    )["launchPartitionBackfill"]
    assert out["__typename"] == "LaunchBackfillSuccess", out
    return Backfill(out["backfillId"], launched_at, launched_epoch)


def kline_requests(emulator, symbol: str, start_ms: int, end_ms: int) -> list[dict]:
    """The emulator's kline requests for ``symbol`` whose ``startTime`` lies in [start, end)."""
    out = []
    for r in emulator.control.requests(KLINES):
        params = r.get("params") or {}
        assert "startTime" in params, f"a kline request without startTime: {r}"
        if params.get("symbol") == symbol.replace("/", "") and start_ms <= int(params["startTime"]) < end_ms:
            out.append(r)
    return out


def _require_chromium() -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"the browser test needs Debian's chromium at {CHROMIUM} (apt-get install chromium); "
            "Playwright's own browser download is not used",
            pytrace=False,
        )


def okx_candle_requests(emulator, symbol: str, start_ms: int) -> list[dict]:
    """OKX candle requests for ``symbol`` walking back to ``start_ms`` (``before`` = its start - 1)."""
    inst = symbol.replace("/", "-")
    return [
        r
        for r in emulator.control.requests()
        if r.get("dialect") == "okx"
        and r["path"].endswith("candles")
        and r["params"].get("instId") == inst
        and r["params"].get("before") == str(start_ms - 1)
    ]


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_materialize_one_partition_from_the_ui(dev, backfill, questdb, emulator, tmp_path, exchange):
    """Runs while the backfill (launched by its fixture) is in flight; disjoint days. Each exchange
    of the project: its own asset, group and partitions, launched from its own page."""
    _require_chromium()
    asset = f"{exchange}/ohlcv/{NODE_LABEL}"
    period, days = UI_PERIOD[exchange]
    key = f"{period}|{UI_SYMBOL}"
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    server = dev.server
    url = server.url
    shot = tmp_path / "failure.png"
    step = "starting chromium"
    run_id = None
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        except PlaywrightError as exc:
            pytest.fail(f"chromium at {CHROMIUM} did not start under Playwright: {exc}", pytrace=False)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(90_000)
            try:
                step = f"lineage of the {exchange} group shows the asset node"
                page.goto(
                    f"{url}/locations/__repository__@ccxt_questdb_assets.defs.definitions/asset-groups/{exchange}"
                )
                node = (
                    page.locator("foreignObject")
                    .filter(has=page.get_by_text(NODE_LABEL, exact=True))
                    .filter(has_text="Latest event")
                )
                expect(node.first).to_be_visible(timeout=120_000)
                page.screenshot(path=str(tmp_path / f"lineage-{exchange}.png"))

                step = "partitions view"
                page.goto(f"{url}/assets/{asset}?view=partitions")
                expect(page.get_by_role("button", name="Materialize…")).to_be_enabled(timeout=120_000)
                expect(page.get_by_placeholder("Filter by symbol")).to_be_visible()  # the symbol dimension

                step = "Materialize dialog"
                page.get_by_role("button", name="Materialize…").click()
                title = re.compile(rf"Launch runs to materialize .*{NODE_LABEL}")
                dialog = page.get_by_role("dialog").filter(has_text=title)
                expect(dialog).to_be_visible()

                step = f"select one date ({period})"
                dates = dialog.get_by_placeholder(re.compile(r"^ex: \d{4}-\d{2}-\d{2}"))
                dates.fill(period)
                dates.press("Enter")

                step = "select one symbol"
                dialog.get_by_text("Select a partition or create one").click()
                page.get_by_role("menuitem").filter(has_text=UI_SYMBOL).first.click()
                dialog.get_by_text(title).click()  # closes the symbol menu
                expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()

                step = "launch"
                ui_launched = time.monotonic()
                before = {r["runId"] for r in server.runs({"dagster/partition": key})}
                dialog.get_by_role("button", name="Launch 1 run").click()
                expect(page.get_by_text("Launched run")).to_be_visible(timeout=120_000)  # the toast
                launched = [r for r in server.runs({"dagster/partition": key}) if r["runId"] not in before]
                assert len(launched) == 1, f"runs of {key} after the launch: {launched}"
                run_id = launched[0]["runId"]

                step = f"run page of {run_id} shows Success"
                try:  # the toast's "View" link, unless the toast has already gone
                    page.get_by_role("link", name="View", exact=True).first.click(timeout=5_000)
                    page.wait_for_url(f"**/runs/{run_id}*", timeout=30_000)
                except PlaywrightError:
                    page.goto(f"{url}/runs/{run_id}")
                deadline = time.monotonic() + RUN_TIMEOUT_S
                success = page.get_by_text("Success", exact=True)
                while True:
                    if success.count() and success.first.is_visible():
                        break
                    status = server.graphql(RUN_STATUS, {"id": run_id})["runOrError"].get("status")
                    if status in ("FAILURE", "CANCELED"):
                        raise AssertionError(f"run {run_id} ended {status}:\n{server.run_errors(run_id)}")
                    if time.monotonic() > deadline:
                        raise AssertionError(f"run {run_id} is {status} after {RUN_TIMEOUT_S} s")
                    page.wait_for_timeout(2000)
                ui_seconds = time.monotonic() - ui_launched

                step = "the partition shows as materialized in the grid"
                page.goto(f"{url}/assets/{asset}?view=partitions&partition={period}%7C{UI_SYMBOL.replace('/', '%2F')}")
                expect(page.get_by_text("Materialized", exact=False).first).to_be_visible(timeout=60_000)
                step = f"the partition's own row count ({days * 1440})"
                row = page.locator("tr").filter(has=page.get_by_text("dagster/row_count", exact=True))
                expect(row.first).to_contain_text(str(days * 1440))
                preview = page.locator("tr").filter(has=page.get_by_text("preview", exact=True))
                expect(preview.first).to_contain_text(f"{period} 00:00:00")  # the first candles, as a table
                page.screenshot(path=str(tmp_path / f"partitions-{exchange}.png"), full_page=True)
            except (AssertionError, PlaywrightError) as exc:
                try:
                    page.screenshot(path=str(shot), full_page=True)
                    where = f"screenshot {shot}"
                except PlaywrightError as shot_exc:
                    where = f"no screenshot ({shot_exc})"
                raise AssertionError(f"UI step '{step}' failed ({where}): {exc}") from exc
        finally:
            browser.close()

    runs = [r for r in server.runs({"dagster/partition": key}) if r["runId"] == run_id]
    assert runs and runs[0]["status"] == "SUCCESS", runs
    start = utc_ms(period)
    end = start + days * DAY_MS
    got = stored_candles(questdb, dev.tables[exchange], UI_SYMBOL, start, end, exchange=exchange)
    assert len(got) == days * 1440
    assert_candles_exact(got, truth_candles(emulator, UI_SYMBOL, start, end), f"{exchange} {key}")
    asked = (
        kline_requests(emulator, UI_SYMBOL, start, end)
        if exchange == "binance"
        else okx_candle_requests(emulator, UI_SYMBOL, start)
    )
    assert len(asked) == UI_REQUESTS[exchange]
    events = server.graphql(MATERIALIZATIONS, {"key": {"path": asset.split("/")}, "partitions": [key]})
    (event,) = [e for e in events["assetOrError"]["assetMaterializations"] if e["runId"] == run_id]
    shown = {m["label"]: m.get("intValue", m.get("floatValue")) for m in event["metadataEntries"]}
    assert (shown["dagster/row_count"], shown["exchange_requests"], shown["coverage_after"]) == (
        days * 1440,
        UI_REQUESTS[exchange],
        1.0,
    ), f"{key}'s metadata: {shown}"
    print(f"UI run {run_id} ({exchange}): Success on the run page {ui_seconds:.1f} s after the launch")


def test_backfill_30_days_2_symbols_through_graphql(dev, backfill, questdb, emulator):
    server = dev.server
    backfill_id, started = backfill.id, backfill.launched_at

    status = None
    while time.monotonic() - started < BACKFILL_TIMEOUT_S:
        result = server.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert result["__typename"] == "PartitionBackfill", result
        status = result["status"]
        if status not in ("REQUESTED", "CANCELING", "FAILING"):
            break
        time.sleep(2)
    elapsed = time.monotonic() - started
    runs = server.runs({"dagster/backfill": backfill_id})
    detail = "; ".join(f"{r['runId'][:8]} {r['status']}" for r in runs)
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    errors = "\n".join(server.run_errors(r["runId"]) for r in failed[:2])
    assert status == "COMPLETED_SUCCESS", (
        f"backfill {backfill_id} is {status} after {elapsed:.0f} s; runs: {detail}\n"
        f"{errors}\nlog tail:\n{server.log_tail(3000)}"
    )
    assert 1 <= len(runs) <= 4, f"{len(runs)} runs for 60 partitions (multi_run(92) policy): {detail}"
    assert not failed, f"runs not successful: {detail}\n{errors}"
    timeline = "; ".join(
        f"run created +{r['creationTime'] - backfill.launched_epoch:.0f} s, started after "
        f"{r['startTime'] - r['creationTime']:.0f} s, ran {r['endTime'] - r['startTime']:.0f} s"
        for r in runs
    )
    done_after = backfill.launched_epoch + elapsed - max(r["endTime"] for r in runs)
    print(
        f"backfill {backfill_id}: {len(runs)} runs, {elapsed:.1f} s from launch to {status} (seen "
        f"{done_after:.0f} s after the last run ended); {timeline}"
    )

    start, end = utc_ms(BACKFILL_DAYS[0]), utc_ms(BACKFILL_DAYS[-1]) + DAY_MS
    for symbol in SYMBOLS:
        assert_candles_exact(
            stored_candles(questdb, dev.table, symbol, start, end),
            truth_candles(emulator, symbol, start, end),
            f"{symbol} {BACKFILL_DAYS[0]}..{BACKFILL_DAYS[-1]}",
        )
    requests = [r for symbol in SYMBOLS for r in kline_requests(emulator, symbol, start, end)]
    assert len(requests) == 2 * math.ceil(43200 / 1000), f"{len(requests)} kline requests for the backfill window"


CHECK_PARTITIONS = """
query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            partitionStatuses {
              __typename
              ... on AssetCheckMultiPartitionStatuses {
                primaryDimensionName
                ranges {
                  primaryDimStartKey primaryDimEndKey
                  secondaryDim {
                    __typename
                    ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions skippedPartitions }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}
"""

MATERIALIZATIONS = """
query($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition runId
        metadataEntries { label ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } }
      }
    }
  }
}
"""


def check_statuses(server: DagsterDev) -> dict[str, dict[str, set[str]]]:
    """``{check: {"succeeded"|"failed"|"skipped": {"date|symbol", ...}}}`` from the UI's own query."""
    data = server.graphql(CHECK_PARTITIONS, {"key": {"path": ASSET_PATH}})["assetNodeOrError"]
    out = {}
    for check in data["assetChecksOrError"]["checks"]:
        statuses = check["partitionStatuses"]
        assert statuses["__typename"] == "AssetCheckMultiPartitionStatuses", statuses
        assert statuses["primaryDimensionName"] == "date", statuses
        found: dict[str, set[str]] = {"succeeded": set(), "failed": set(), "skipped": set()}
        for r in statuses["ranges"]:
            first, last = date.fromisoformat(r["primaryDimStartKey"]), date.fromisoformat(r["primaryDimEndKey"])
            days = [str(first + timedelta(days=i)) for i in range((last - first).days + 1)]
            for status in found:
                found[status] |= {f"{d}|{s}" for d in days for s in r["secondaryDim"][f"{status}Partitions"]}
        out[check["name"]] = found
    return out


def test_the_ui_shows_each_backfilled_partition_with_its_own_rows_and_checks_passed(dev, backfill, tmp_path):
    """After the backfill (runs of 30 partitions each): per partition, the UI's queries and pages."""
    server = dev.server
    wanted = set(keys_for(BACKFILL_DAYS, SYMBOLS))
    statuses = check_statuses(server)
    assert sorted(statuses) == sorted(CANDLE_CHECKS)
    for name, found in statuses.items():
        assert wanted <= found["succeeded"], f"{name}: not passed on {sorted(wanted - found['succeeded'])[:5]}"
        assert not (found["failed"] | found["skipped"]) & wanted, f"{name}: {found}"

    events = server.graphql(MATERIALIZATIONS, {"key": {"path": ASSET_PATH}, "partitions": sorted(wanted)})
    events = events["assetOrError"]["assetMaterializations"]
    assert {e["partition"] for e in events} == wanted
    rows = {
        e["partition"]: {m["label"]: m.get("intValue", m.get("floatValue")) for m in e["metadataEntries"]}
        for e in events
    }
    assert {md["dagster/row_count"] for md in rows.values()} == {1440}
    assert {md["coverage_after"] for md in rows.values()} == {1.0}
    assert sum(md["exchange_requests"] for md in rows.values()) == 2 * math.ceil(43200 / 1000)

    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    day = BACKFILL_DAYS[7]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.set_default_timeout(90_000)
            page.goto(f"{server.url}/assets/{ASSET}?view=partitions&partition={day}%7CETH%2FUSDT")
            detail = page.get_by_text(f"{day}|ETH/USDT", exact=True)
            expect(detail.first).to_be_visible()
            row = page.locator("tr").filter(has=page.get_by_text("dagster/row_count", exact=True))
            expect(row.first).to_contain_text("1440")
            page.screenshot(path=str(tmp_path / "partition.png"))

            page.goto(f"{server.url}/assets/{ASSET}?view=checks")
            page.locator("button[role=tab]").filter(has_text="Partitions").click()
            expect(page.get_by_text("Skipped (0)")).to_be_visible()
            passed = page.get_by_text(re.compile(r"^Passed \(\d+\)$"))
            expect(passed).to_be_visible()
            assert int(re.search(r"\d+", passed.inner_text()).group()) >= len(wanted)
            page.screenshot(path=str(tmp_path / "check_partitions.png"))
        finally:
            browser.close()
    print(f"screenshots: {tmp_path / 'partition.png'}, {tmp_path / 'check_partitions.png'}")

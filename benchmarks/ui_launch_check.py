"""Check that target 7 launches a run exactly as the Dagster UI does: ``python -m benchmarks.ui_launch_check``.

Starts what target 7 starts (a private QuestDB, the emulator, ``dagster dev`` of the project on a
project file shaped like the embedded default), then drives the UI in headless Chromium (Debian's
``/usr/bin/chromium`` through Playwright): the 1m candle asset's partitions page, "Materialize…",
one date and one symbol, "Launch 1 run". It records the ``LaunchPipelineExecution`` request the
browser sends and compares its ``executionParams`` with what ``benchmarks.launch_target`` builds
for the same partition. Prints both and exits 0 when they are identical, 1 otherwise. Rerun it
after a Dagster upgrade: the UI's mutation is Dagster's, not this project's.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from benchmarks import launch_target as lt
from benchmarks.harness import Bench, log

CHROMIUM = "/usr/bin/chromium"
DAY = date(2024, 4, 15)


def capture_ui_launch(dev: Any, asset: lt.CandleAsset, day: date, symbol: str) -> dict[str, Any]:
    """The variables of the ``LaunchPipelineExecution`` the UI sends for one partition."""
    from playwright.sync_api import expect, sync_playwright

    sent: list[dict[str, Any]] = []

    def on_request(request: Any) -> None:
        if "/graphql" in request.url and request.method == "POST":
            body = request.post_data_json or {}
            if body.get("operationName") == "LaunchPipelineExecution":
                sent.append(body)

    title = f"Launch runs to materialize {asset.name}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(120_000)
            page.on("request", on_request)
            page.goto(f"{dev.url}/assets/{asset.name}?view=partitions")
            button = page.get_by_role("button", name="Materialize…")
            expect(button).to_be_enabled(timeout=120_000)
            button.click()
            dialog = page.get_by_role("dialog").filter(has_text=title)
            expect(dialog).to_be_visible(timeout=60_000)
            dates = dialog.get_by_placeholder(re.compile(r"^ex: \d{4}-\d{2}-\d{2}"))
            dates.fill(str(day))
            dates.press("Enter")
            dialog.get_by_text("Select a partition or create one").click()
            page.get_by_role("menuitem").filter(has_text=symbol).first.click()
            dialog.get_by_text(title).click()  # closes the symbol menu
            expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible(timeout=60_000)
            dialog.get_by_role("button", name="Launch 1 run").click()
            expect(page.get_by_text("Launched run")).to_be_visible(timeout=120_000)
        finally:
            browser.close()
    if len(sent) != 1:
        raise AssertionError(f"the UI sent {len(sent)} LaunchPipelineExecution requests, expected 1")
    return sent[0]["variables"]["executionParams"]


def main() -> int:
    from ccxt_questdb_assets.testing.dagster_dev import dagster_dev

    if not Path(CHROMIUM).is_file():
        print(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    bench = Bench(quick=True, runs=1)
    work = Path(tempfile.mkdtemp(prefix="ccxt-bench-ui-"))
    try:
        project = work / "project.yaml"
        project.write_text(yaml.safe_dump(lt.project_mapping(bench, bench.table_prefix("ui"))))
        with dagster_dev(work, env={"CCXT_QUESTDB_PROJECT": str(project)}) as dev:
            asset = lt.find_candle_asset(dev.graphql(lt.ASSET_NODES)["assetNodes"], "binance")
            for dim in asset.dimensions:
                if dim.get("dynamicPartitionsDefinitionName"):
                    dev.add_dynamic_partitions(dim["dynamicPartitionsDefinitionName"], [lt.SYMBOL])
            log(f"ui check: {asset.name}, partition {lt.partition_key(asset, DAY, lt.SYMBOL)}, through the UI")
            ui = capture_ui_launch(dev, asset, DAY, lt.SYMBOL)
            key = lt.partition_key(asset, DAY, lt.SYMBOL)
            config = dev.graphql(
                lt.CONFIG_PARTITION_FOR_ASSET_JOB,
                {
                    "repositoryName": asset.repository,
                    "repositoryLocationName": asset.location,
                    "jobName": asset.job,
                    "partitionName": key,
                    "assetKeys": [{"path": asset.path}],
                },
            )
            partition = config["pipelineOrError"]["partition"]
            ours = lt.ui_execution_params(
                asset, partition["tagsOrError"]["results"], partition["runConfigOrError"].get("yaml") or ""
            )
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    print("the UI sent:\n" + json.dumps(ui, indent=1, sort_keys=True))
    print("target 7 sends:\n" + json.dumps(ours, indent=1, sort_keys=True))
    same = ui == ours
    print("IDENTICAL executionParams" if same else "DIFFERENT executionParams")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

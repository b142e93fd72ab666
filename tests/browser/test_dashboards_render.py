"""Every provisioned dashboard opens in a real Grafana without a panel error (Playwright, Debian's Chromium).

Runs against the demo fleet's Grafana (`make demo` with a real Grafana archive in the cache, see
roles/grafana/README.md) or the Grafana named by LLM_MONITOR_GRAFANA_URL / LLM_MONITOR_GRAFANA_PASSWORD (user
admin). It skips, saying why, where there is no real Grafana (the molecule test double does not render dashboards),
no playwright package or no Chromium (apt-get install chromium).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "harness"))
from dashboard_queries import load_dashboards  # noqa: E402

# Grafana's markers of a failed panel: the error corner and the "Panel plugin not found" / query error texts.
PANEL_ERRORS = "[data-testid='data-testid Panel status error'], .panel-info-corner--error"


def _grafana() -> tuple[str, str]:
    url = os.environ.get("LLM_MONITOR_GRAFANA_URL", "")
    password = os.environ.get("LLM_MONITOR_GRAFANA_PASSWORD", "")
    state = REPO / ".demo" / "demo"
    if not url and (state / "fleet.json").exists():
        port = json.loads((state / "fleet.json").read_text()).get("grafana_publish")
        if port:
            url = f"http://127.0.0.1:{port}"
            password = json.loads((state / "grafana-secrets.json").read_text())["password"]
    if not url:
        pytest.skip("no real Grafana: none published by the demo fleet and LLM_MONITOR_GRAFANA_URL is not set")
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=5) as response:
            health: dict[str, Any] = json.load(response)
    except OSError as exc:
        pytest.skip(f"Grafana at {url} does not answer: {exc}")
    if "testdouble" in health.get("version", "") or health.get("commit") == "testdouble":
        pytest.skip(f"{url} is the TEST DOUBLE of Grafana, which renders no dashboards")
    return url, password


def test_every_dashboard_renders_without_panel_errors() -> None:
    url, password = _grafana()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    auth = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
    failures: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(extra_http_headers={"Authorization": auth}, viewport={"width": 1600, "height": 4000})
        for board in load_dashboards():
            page.goto(f"{url}/d/{board['uid']}?orgId=1&from=now-1h&to=now&kiosk", wait_until="networkidle")
            if page.locator("text=Dashboard not found").count():
                failures.append(f"{board['uid']}: not provisioned")
                continue
            errors = page.locator(PANEL_ERRORS)
            for i in range(errors.count()):
                title = errors.nth(i).get_attribute("aria-label") or errors.nth(i).inner_text()
                failures.append(f"{board['uid']}: panel error {title!r}")
        browser.close()
    assert not failures, "\n".join(failures)

"""inventories/example as a user copies it: its thresholds, SLOs and receivers render and pass promtool and amtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.llm_monitor.fleet.plugins.filter.alert_rules import alert_rules, slo_rules
from ansible_collections.llm_monitor.fleet.plugins.filter.alertmanager import alertmanager_config
from ansible_collections.llm_monitor.fleet.plugins.filter.grafana import (
    grafana_check_secrets,
    grafana_datasources,
    grafana_prometheus_servers,
)
from ansible_collections.llm_monitor.fleet.plugins.filter.grafana_dashboards import dashboard_with_notes

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventories/example"
RUNBOOKS = "https://runbooks.example/docs/runbooks"


def _hostvars() -> dict[str, dict[str, Any]]:
    """The example's host variables as Ansible reads them (templates left unrendered, as Vault would fill them)."""
    res = subprocess.run(
        ["ansible-inventory", "-i", str(EXAMPLE), "--list"], capture_output=True, text=True, timeout=120, check=True
    )
    meta: dict[str, dict[str, Any]] = json.loads(res.stdout)["_meta"]["hostvars"]
    return meta


def _made_up(name: str) -> str:
    return f"https://hooks.example.com/made-up-{name}" if name.endswith("_url") else f"made-up-{name}"


def _vaulted(value: Any) -> Any:
    """The Vault variables the example refers to, given made-up values (URLs for the *_url ones)."""
    if isinstance(value, str):
        return re.sub(r"\{\{\s*(vault_\w+)\s*\}\}", lambda m: _made_up(m.group(1)), value)
    if isinstance(value, list):
        return [_vaulted(v) for v in value]
    if isinstance(value, dict):
        return {k: _vaulted(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def hostvars() -> dict[str, dict[str, Any]]:
    if shutil.which("ansible-inventory") is None:
        pytest.skip("ansible-inventory not on PATH")
    return _hostvars()


def test_thresholds_and_slos_render_and_pass_promtool(hostvars: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    rules = alert_rules(str(REPO / "files/rules/catalog"), hostvars, list(hostvars), RUNBOOKS)
    gpu = [
        r
        for r in rules["llm_monitor_gpu.rules.yml"]["groups"][0]["rules"]
        if r.get("alert") == "GpuTemperatureNearSlowdown"
    ]
    (group,) = [r["expr"] for r in gpu if 'host=~"gpu-a01|gpu-a02"' in r["expr"]]
    assert len(gpu) == 2 and group.endswith("- 3)"), "the group's 3 °C: one rule for the GPU hosts, one for the rest"
    load = [r for r in rules["llm_monitor_host.rules.yml"]["groups"][0]["rules"] if r.get("alert") == "HostHighLoad"]
    assert sorted(r.get("for") for r in load) == ["15m", "1h"] and any('host=~"gpu-a02"' in r["expr"] for r in load)
    mon = next(h for h, v in hostvars.items() if "alertmanager_receivers" in v)
    rules.update(slo_rules(hostvars[mon]["fleet_slos"], mon, RUNBOOKS))
    assert "llm_monitor_slo.rules.yml" in rules
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make tools)")
    files = []
    for name, doc in rules.items():
        files.append(tmp_path / name)
        files[-1].write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    res = subprocess.run([promtool, "check", "rules", *map(str, files)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_receivers_render_and_pass_amtool(hostvars: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    mon = next(h for h, v in hostvars.items() if "alertmanager_receivers" in v)
    variables = {k: _vaulted(v) for k, v in hostvars[mon].items() if k.startswith("alertmanager_")}
    out = alertmanager_config(variables, mon, str(tmp_path))
    text = yaml.safe_dump(out["config"], sort_keys=False)
    assert "made-up-vault" not in text, "secrets go to files, never into alertmanager.yml"
    assert {s["content"].strip() for s in out["secrets"]} >= {"made-up-vault_pagerduty_routing_key"}
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (bash tests/harness/tools.sh)")
    for secret in out["secrets"]:
        Path(secret["path"]).write_text(secret["content"])
    (tmp_path / "alertmanager.yml").write_text(text)
    res = subprocess.run([amtool, "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_grafana_settings_pass_the_preflight(hostvars: dict[str, dict[str, Any]]) -> None:
    mon = next(h for h, v in hostvars.items() if "grafana_admin_password" in v)
    variables = {k: _vaulted(v) for k, v in hostvars[mon].items() if k.startswith("grafana_")}
    assert grafana_check_secrets("admin", mon, variables["grafana_admin_password"], variables["grafana_secret_key"])
    groups = {"monitoring": [h for h in hostvars if "grafana_admin_password" in hostvars[h]]}
    servers = grafana_prometheus_servers(hostvars, groups)
    doc = grafana_datasources(servers, mon, "", "", "", [], "llm-monitor-prometheus")
    assert [d["uid"] for d in doc["datasources"] if d["isDefault"]] == ["llm-monitor-prometheus"]
    assert (
        dashboard_with_notes(
            (REPO / "files/dashboards/announcements/system-status.json").read_text(),
            variables["grafana_maintenance_notes"],
        ).count("rack r07 firmware upgrade")
        == 1
    )

"""The alert catalog (files/rules/catalog) rendered against an inventory, checked and unit-tested by promtool.

Every alert of the catalog must have a promtool test in tests/rules/<group>.test.yml that sees it fire and
sees it not fire, and a runbook section in docs/runbooks/<group>.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.llm_monitor.fleet.plugins.filter.alert_rules import (  # noqa: E402
    alert_rules,
    read_catalog,
)
from ansible_collections.llm_monitor.fleet.plugins.module_utils import alert_catalog as ar  # noqa: E402
from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_inventory import (  # noqa: E402
    InventoryError,
)

CATALOG = REPO / "files/rules/catalog"
TESTS = REPO / "tests/rules"
RUNBOOKS = REPO / "docs/runbooks"
RUNBOOK_BASE = "https://runbooks.example/docs/runbooks"
HOSTVARS: dict[str, dict[str, Any]] = yaml.safe_load((TESTS / "hostvars.yml").read_text())
GROUPS = read_catalog(CATALOG)


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (make tools)")
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rules")
    for name, doc in alert_rules(str(CATALOG), HOSTVARS, list(HOSTVARS), RUNBOOK_BASE).items():
        (out / name).write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    for test in TESTS.glob("*.test.yml"):
        shutil.copy(test, out / test.name)
    return out


def test_every_rendered_file_passes_promtool_check(rendered: Path) -> None:
    promtool = _promtool()
    files = sorted(rendered.glob("*.rules.yml"))
    assert files
    res = subprocess.run([promtool, "check", "rules", *map(str, files)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("group", [g.name for g in GROUPS])
def test_promtool_unit_tests(rendered: Path, group: str) -> None:
    promtool = _promtool()
    test = rendered / f"{group}.test.yml"
    assert test.exists(), f"tests/rules/{group}.test.yml is missing"
    res = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_every_alert_is_tested_firing_and_not_firing(group: ar.Group) -> None:
    doc = yaml.safe_load((TESTS / f"{group.name}.test.yml").read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for t in case.get("alert_rule_test") or []:
            (fired if t.get("exp_alerts") else quiet).add(t["alertname"])
    names = {a.name for a in group.alerts}
    assert names - fired == set(), "alerts never seen firing"
    assert names - quiet == set(), "alerts never seen quiet (below the threshold, before for, resolved)"
    assert (fired | quiet) - names == set(), "tests of alerts the catalog does not have"


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_every_alert_has_a_runbook_section(group: ar.Group) -> None:
    path = RUNBOOKS / f"{group.name}.md"
    assert path.exists(), f"docs/runbooks/{group.name}.md is missing"
    headings = set(re.findall(r"^## (\w+)$", path.read_text(), re.M))
    assert {a.name for a in group.alerts} - headings == set()
    for a in group.alerts:
        section = path.read_text().split(f"## {a.name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Means**", "**Check**", "**Do**"):
            assert part in section, f"{a.name}: runbook section lacks {part}"


def test_annotations_and_labels() -> None:
    out = alert_rules(str(CATALOG), HOSTVARS, list(HOSTVARS), RUNBOOK_BASE)
    for doc in out.values():
        for rule in doc["groups"][0]["rules"]:
            if "alert" not in rule:
                continue
            assert rule["labels"]["severity"] in ar.SEVERITIES
            assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
            assert "$threshold" not in rule["expr"] + str(rule["annotations"])
            assert "$hosts" not in rule["expr"]
            assert rule["annotations"]["runbook_url"].startswith(RUNBOOK_BASE + "/")


def _alerts(out: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for d in out.values() for r in d["groups"][0]["rules"] if r.get("alert") == name]


def test_rules_grow_with_distinct_values_not_with_hosts() -> None:
    hostvars: dict[str, dict[str, Any]] = {f"node-{i:04d}": {} for i in range(1000)}
    for i in range(50):  # 50 overrides with 3 distinct values
        hostvars[f"node-{i * 20:04d}"]["fleet_alert_host_disk_almost_full_threshold"] = (5, 7, 15)[i % 3]
    hostvars["node-0001"]["fleet_alert_host_disk_almost_full_enabled"] = False
    out = alert_rules(str(CATALOG), hostvars, list(hostvars), RUNBOOK_BASE)
    rules = _alerts(out, "HostDiskAlmostFull")
    assert len(rules) == 4, "the default and three distinct overrides"
    default = rules[0]["expr"]
    assert "< 10 " in default and 'host!~"' in default and "node-0001" in default, "overridden and off excluded"
    assert [r["expr"].count("node-") for r in rules[1:]] == [17, 17, 16]
    assert len(_alerts(out, "HostDown")) == 1 and "host" not in _alerts(out, "HostDown")[0]["expr"]


def test_hosts_that_all_share_an_override_get_one_catch_all() -> None:
    hostvars = {h: {"fleet_alert_host_high_load_threshold": 3} for h in ("a", "b", "c")}
    (rule,) = _alerts(alert_rules(str(CATALOG), hostvars, list(hostvars), RUNBOOK_BASE), "HostHighLoad")
    assert "> 3" in rule["expr"] and "host" not in rule["expr"]


def test_host_names_are_regex_literals() -> None:
    hostvars = {"gpu.a+1": {"fleet_alert_host_high_load_threshold": 3}, "b": {}, "c": {}}
    rules = _alerts(alert_rules(str(CATALOG), hostvars, list(hostvars), RUNBOOK_BASE), "HostHighLoad")
    assert 'host!~"gpu\\\\.a\\\\+1"' in rules[0]["expr"]


def test_what_users_write_fqdn_and_ipv6_hosts_and_quoted_numbers(tmp_path: Path) -> None:
    # An FQDN and an IPv6 address as inventory names, thresholds quoted in YAML: rendered as given, and loaded.
    hostvars: dict[str, dict[str, Any]] = {
        "gpu-7.dc1.example.com": {"fleet_alert_host_high_load_threshold": "3"},
        "2001:db8::7": {"fleet_alert_host_high_load_threshold": "3.5", "fleet_alert_host_high_load_for": "15m"},
        "node-1": {},
    }
    out = alert_rules(str(CATALOG), hostvars, list(hostvars), RUNBOOK_BASE)
    exprs = sorted(r["expr"] for r in _alerts(out, "HostHighLoad"))
    assert any('host=~"gpu-7\\\\.dc1\\\\.example\\\\.com"' in e and e.endswith("> 3") for e in exprs), exprs
    assert any('host=~"2001:db8::7"' in e and e.endswith("> 3.5") for e in exprs), exprs
    for name, doc in out.items():
        (tmp_path / name).write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    res = subprocess.run([_promtool(), "check", "rules", *map(str, sorted(tmp_path.glob("*.yml")))],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("hostvar", "value", "message"),
    [
        ("fleet_alert_host_high_load_threshold", "high", "is not a number"),
        ("fleet_alert_host_high_load_threshold", True, "is not a number"),
        ("fleet_alert_host_high_load_threshold", None, "is not a number"),
        ("fleet_alert_host_high_load_for", "10 minutes", "is not a duration"),
        ("fleet_alert_host_high_load_enabled", "maybe", "is not a boolean"),
        ("fleet_alert_host_hi_load_threshold", 3, "names no alert of the catalog"),
        ("fleet_alert_host_down_threshold", 3, "has no threshold"),
        ("fleet_alert_host_high_load_treshold", 3, "names no alert of the catalog"),
    ],
)
def test_bad_overrides_are_refused_naming_host_and_variable(hostvar: str, value: Any, message: str) -> None:
    with pytest.raises(InventoryError, match=f"host 'gpu-7': {hostvar}.*{message}"):
        ar.render(GROUPS, {"gpu-7": {hostvar: value}}, ["gpu-7"], RUNBOOK_BASE)


def test_snake_case_of_alert_names() -> None:
    assert ar.snake("GpuXidCritical") == "gpu_xid_critical"
    assert ar.snake("HostOomKill") == "host_oom_kill"
    assert ar.snake("VllmTTFTHigh") == "vllm_ttft_high"


def test_docs_alert_table_is_in_step_with_the_catalog() -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "tests/harness/alert_docs.py"), "--check"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr

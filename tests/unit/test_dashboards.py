"""The Grafana dashboards (files/dashboards/<folder>/<name>.json, built by files/dashboards/generate.py from
files/dashboards/as_code): the committed JSON is what the generator writes; every dashboard has a stable uid, the
datasource variable and the label variables its queries use; every panel a unit, a description and a query through
${datasource}; no query names a literal instance, host or port; and every metric a query names exists, with the
labels the query uses, in the recorded expositions or as a recording rule (the checker of tests/harness/promql_check.py
that tests/unit/test_rule_metrics.py runs over the rules)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from promql_check import (
    COMMON_TARGET_LABELS,
    REPO,
    Checker,
    PromQLError,
    Rule,
    Source,
    Violation,
    load_sources,
    parse,
    rendered_rules,
    scrape_jobs,
)

DASHBOARDS = REPO / "files/dashboards"
GENERATE = DASHBOARDS / "generate.py"
#: the dashboards and the label variables each needs (besides datasource), in the order of the task's priorities
EXPECTED: dict[str, set[str]] = {
    "system/server-health": {"datacenter", "team", "host"},
    "system/gpu-usage": {"datacenter", "team", "host", "gpu"},
    "system/docker-containers": {"datacenter", "team", "host", "container"},
    "llm/vllm-docker-status": {"model_name"},
    "llm/ollama": {"datacenter", "team", "host", "model"},
    "llm/litellm-status": {"requested_model"},
    "fleet/fleet-overview": {"datacenter", "team", "host"},
    "fleet/slo": {"model", "sli"},
    "analytics/langfuse-analytics": {"project", "model"},
    "analytics/performance-trends": {"model_name"},
    "llm/model-catalog": {"datacenter", "team", "host", "model"},
    "announcements/system-status": {"datacenter", "team", "host"},
}
#: panels without queries of the Prometheus datasource: text, and Grafana's alert panels, which read Grafana's rule
#: sources (alertlist) or an Alertmanager data source named in their options (alertGroups)
NO_QUERY_PANELS = {"text", "alertlist", "alertGroups"}
#: the Alertmanager data source the grafana role provisions (as_code/common.py), named by the alertGroups panels
ALERTMANAGER_DATASOURCE = {"uid": "llm-monitor-alertmanager", "name": "Alertmanager"}
MAINTENANCE_NOTES_MARKER = "LLM_MONITOR_MAINTENANCE_NOTES"
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|([A-Za-z_][A-Za-z0-9_]*))")
#: Grafana's built-in interval variables and what the check puts in their place
BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1d"}
#: a literal instance, host or port in a query (an address, host="name", :9100 ...)
_LITERAL_TARGET = re.compile(r'\b(instance|host|hostname)\s*(=|!=)\s*"|:[0-9]{2,5}\b|\b[0-9]{1,3}(\.[0-9]{1,3}){3}\b')


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        f"{f.parent.name}/{f.stem}": json.loads(f.read_text())
        for f in sorted(DASHBOARDS.glob("*/*.json"))
        if f.parent.name != "as_code"
    }


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in board.get("panels") or []:
        out.append(p)
        out.extend(p.get("panels") or [])  # the panels of a collapsed row
    return [p for p in out if p.get("type") != "row"]


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def substitute(expr: str) -> str:
    """The query as Prometheus would see it: a built-in interval as a duration, any other variable as .* (the
    dashboards' variables all sit in regex matchers, and All is .*)."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return BUILTINS.get(name, ".*")

    return _VARIABLE.sub(value, expr)


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable (label_values(selector, label): the selector)."""
    out = [(f"panel {p['title']!r}", str(t["expr"])) for p in panels(board) for t in p.get("targets") or []]
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.*), *([A-Za-z_][A-Za-z0-9_]*)\)", str(v["query"]))
            assert m, f"variable {v['name']}: not a label_values(selector, label) query: {v['query']!r}"
            out.append((f"variable {v['name']}", f"group by ({m.group(2)}) ({m.group(1)})"))
    return out


def test_the_committed_json_is_what_generate_writes() -> None:
    run = subprocess.run([sys.executable, str(GENERATE), "--check"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, f"regenerate: .venv/bin/python {GENERATE.relative_to(REPO)}\n{run.stderr}"


def test_check_names_stale_and_stray_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATE), "--out", str(tmp_path)], check=True, capture_output=True)
    assert (
        subprocess.run([sys.executable, str(GENERATE), "--check", "--out", str(tmp_path)], check=False).returncode == 0
    )
    (tmp_path / "fleet/slo.json").write_text("{}\n")
    (tmp_path / "system/old.json").write_text("{}\n")
    run = subprocess.run(
        [sys.executable, str(GENERATE), "--check", "--out", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    assert "fleet/slo.json" in run.stderr and "system/old.json" in run.stderr
    help_text = subprocess.run([sys.executable, str(GENERATE), "--help"], capture_output=True, text=True, check=True)
    assert "--check" in help_text.stdout


def test_every_dashboard_is_there_with_a_unique_stable_uid() -> None:
    boards = dashboards()
    assert set(boards) == set(EXPECTED)
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for path, board in boards.items():
        assert board["uid"] == "llm-monitor-" + path.split("/")[1], path
        assert len(board["uid"]) <= 40, path


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_variables(path: str) -> None:
    board = dashboards()[path]
    found = variables(board)
    ds = found.get("datasource")
    assert ds is not None and ds["type"] == "datasource" and ds["query"] == "prometheus", path
    assert set(found) - {"datasource"} == EXPECTED[path]
    for name in EXPECTED[path]:
        v = found[name]
        assert v["type"] == "query" and v["multi"] and v["includeAll"] and v["allValue"] == ".*", (path, name)
        assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (path, name)
    if "host" in found:  # chained: the hosts of the chosen datacenters and teams
        assert 'datacenter=~"$datacenter"' in found["host"]["query"] and 'team=~"$team"' in found["host"]["query"]
    used = {m.group(1) or m.group(2) for _, q in queries(board) for m in _VARIABLE.finditer(q)} - set(BUILTINS)
    assert used <= set(found), f"{path}: queries use undefined variables {used - set(found)}"
    assert EXPECTED[path] <= used, f"{path}: variables no query uses {EXPECTED[path] - used}"


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_every_panel_has_a_unit_a_description_and_queries_through_the_datasource(path: str) -> None:
    board = dashboards()[path]
    assert panels(board), path
    for p in panels(board):
        where = f"{path}: {p.get('title')!r}"
        assert p.get("description"), f"{where}: no description"
        if p["type"] in NO_QUERY_PANELS:
            assert not p.get("targets") and not p.get("datasource"), f"{where}: a {p['type']} panel has no queries"
            if p["type"] == "alertGroups":
                assert p["options"]["alertmanager"] == ALERTMANAGER_DATASOURCE["name"], where
            continue
        assert p["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        assert p.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, where
        assert p.get("targets"), f"{where}: no query"
        for t in p["targets"]:
            assert t.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, where
            assert t.get("expr"), f"{where}: an empty query"
            assert not _LITERAL_TARGET.search(t["expr"]), f"{where}: a literal instance, host or port: {t['expr']}"


def test_the_system_status_shows_both_alert_sources_and_the_maintenance_notes_marker() -> None:
    sys.path.insert(0, str(DASHBOARDS))
    from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_catalog import EXPORTERS

    as_code = importlib.import_module("as_code")  # files/dashboards/as_code, the dashboards' code
    common, announcements = as_code.common, as_code.announcements
    assert as_code.MAINTENANCE_NOTES_MARKER == MAINTENANCE_NOTES_MARKER
    jobs = set(announcements.EXPORTER_JOBS.split("|"))
    assert jobs == {e.job for e in EXPORTERS}, "Exporters down: the exporter catalog's jobs"
    uid, name = common.ALERTMANAGER_DATASOURCE_UID, common.ALERTMANAGER_DATASOURCE_NAME
    assert {"uid": uid, "name": name} == ALERTMANAGER_DATASOURCE
    by_type: dict[str, list[dict[str, Any]]] = {}
    for p in panels(dashboards()["announcements/system-status"]):
        by_type.setdefault(p["type"], []).append(p)
    (notes,) = by_type["text"]
    assert notes["title"] == "Maintenance notes"
    assert notes["options"] == {"content": MAINTENANCE_NOTES_MARKER, "mode": "markdown"}
    (groups,) = by_type["alertGroups"]
    assert groups["options"]["alertmanager"] == ALERTMANAGER_DATASOURCE["name"]
    (rules,) = by_type["alertlist"]
    assert rules["options"]["stateFilter"]["firing"] and not rules["options"].get("datasource")
    exprs = {t["expr"] for p in by_type["table"] + by_type["stat"] for t in p["targets"]}
    assert 'ALERTS{alertstate="firing"}' in exprs
    assert any(e.startswith('count(up{job="node"') for e in exprs)
    # nowhere else
    others = [p for path, b in dashboards().items() if path != "announcements/system-status" for p in panels(b)]
    assert all(MAINTENANCE_NOTES_MARKER not in json.dumps(p) for p in others)


def test_literal_targets_are_caught() -> None:
    for bad in ('up{instance="a:9100"}', 'up{host="gpu-1"}', 'up{instance=~"10.0.0.1.*"}'):
        assert _LITERAL_TARGET.search(bad), bad
    assert not _LITERAL_TARGET.search('up{host=~"$host"}[5m]')
    assert substitute('rate(x{host=~"$host", gpu=~"${gpu}"}[$__rate_interval])') == 'rate(x{host=~".*", gpu=~".*"}[5m])'


@pytest.fixture(scope="module")
def checker_and_rules() -> tuple[Checker, list[Rule]]:
    """The checker over the recorded expositions, plus ALERTS (Prometheus's series of its alerting rules: alertname,
    alertstate, the rule's labels and what its expression carries) and the collection's recording rules."""
    rules = rendered_rules()
    base = Checker(load_sources(), scrape_jobs())
    base.check(rules)
    labels = {"alertname", "alertstate"}
    for r in rules:
        if not r.record:
            labels |= set(base.labels_of(r.expr).labels) | set(r.labels)
    alerts = Source("Prometheus (alerting rules)", {"ALERTS": frozenset(labels) - COMMON_TARGET_LABELS})
    return Checker([*load_sources(), alerts], scrape_jobs()), rules


def test_every_query_is_valid_promql_and_names_what_exists(checker_and_rules: tuple[Checker, list[Rule]]) -> None:
    checker, rules = checker_and_rules
    mine: list[Rule] = []
    for path, board in dashboards().items():
        for where, expr in queries(board):
            query = substitute(expr)
            try:
                parse(query)
            except PromQLError as exc:
                pytest.fail(f"{path}: {where}: not valid PromQL ({exc}): {query}")
            mine.append(Rule(f"{path}.json", where, query, {}, False))
    assert len(mine) > 150
    violations: list[Violation] = [v for v in checker.check(rules + mine) if v.file.endswith(".json")]
    assert not violations, f"{len(violations)} dead queries:\n" + "\n".join(f"  {v}" for v in violations)


def test_prometheus_parses_every_query(tmp_path: Path) -> None:
    """Prometheus's own parser (promtool check rules, every query as a recording rule) agrees they are valid."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make tools)")
    rules = [
        {"record": f"dashboard:query:{n}", "expr": substitute(expr)}
        for n, expr in enumerate(expr for board in dashboards().values() for _, expr in queries(board))
    ]
    (tmp_path / "dashboards.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "dashboards.rules.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_checker_catches_dead_dashboard_queries(checker_and_rules: tuple[Checker, list[Rule]]) -> None:
    checker, rules = checker_and_rules
    dead = [
        Rule("t.json", "a", 'llm_monitor_gpu_utilization_ratio{model_name=~".*"}', {}, False),
        Rule("t.json", "b", 'model:vllm_time_to_first_token_seconds:p95_rate5m{host=~".*"}', {}, False),
        Rule("t.json", "c", 'ALERTS{alertstate="firing", nope=""}', {}, False),
    ]
    found = {(v.rule, v.label) for v in checker.check(rules + dead) if v.file == "t.json"}
    assert found == {("a", "model_name"), ("b", "host"), ("c", "nope")}

"""The dashboards' queries as Prometheus receives them (tests/harness/dashboard_queries.py): every panel with queries
yields some, no variable is left unresolved, and Prometheus's parser (promtool) takes every resolved query, with All
and with several values chosen."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_queries import BUILTINS, PanelQuery, load_dashboards, panel_queries, panels
from promql_check import PromQLError, parse

#: panel types without Prometheus queries: text, and Grafana's alert panels (rule sources, an Alertmanager)
NO_QUERY_PANELS = {"text", "alertlist", "alertGroups"}
#: several values for every label variable the dashboards have, with characters a regex must escape
SEVERAL = {
    name: ["a.b-1", "c+d"]
    for name in ("datacenter", "team", "host", "gpu", "container", "model", "model_name", "requested_model", "project")
} | {"sli": ["availability", "ttft"]}


def _board(*targets: dict[str, Any], variables: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "uid": "u",
        "panels": [
            {"type": "timeseries", "title": "p", "datasource": {"type": "prometheus"}, "targets": list(targets)}
        ],
        "templating": {"list": variables or []},
    }


def _var(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": "query", "multi": True, "includeAll": True, "allValue": ".*", **kw}


def _expr(expr: str, values: dict[str, Any], variables: list[dict[str, Any]] | None = None) -> str:
    (q,) = panel_queries(_board({"refId": "A", "expr": expr}, variables=variables), values)
    return q.expr


@pytest.fixture(scope="module")
def boards() -> list[dict[str, Any]]:
    found = load_dashboards()
    assert len(found) >= 12
    return found


def _all_queries(boards: list[dict[str, Any]], values: dict[str, Any]) -> list[PanelQuery]:
    return [q for b in boards for q in panel_queries(b, values)]


def test_every_panel_with_queries_yields_some_and_only_alert_and_text_panels_have_none(
    boards: list[dict[str, Any]],
) -> None:
    for board in boards:
        titled = {(q.panel, q.ref_id) for q in panel_queries(board, {})}
        for p in panels(board):
            mine = {r for t, r in titled if t == p["title"]}
            if p["type"] in NO_QUERY_PANELS:
                assert not mine, (board["uid"], p["title"])
            else:
                assert mine, f"{board['uid']}: panel {p['title']!r} yields no query"
                assert mine == {t["refId"] for t in p["targets"]}, (board["uid"], p["title"])
    types = {p["type"] for b in boards for p in panels(b)}
    assert {"alertlist", "alertGroups", "text"} <= types


@pytest.mark.parametrize("values", [{}, SEVERAL], ids=["all", "several"])
def test_no_variable_is_left_and_every_query_is_promql(boards: list[dict[str, Any]], values: dict[str, Any]) -> None:
    queries = _all_queries(boards, values)
    assert len(queries) > 150
    for q in queries:
        assert "$" not in q.expr, f"{q.dashboard}: {q.panel!r} {q.ref_id}: unresolved: {q.expr}"
        try:
            parse(q.expr)
        except PromQLError as exc:
            pytest.fail(f"{q.dashboard}: {q.panel!r} {q.ref_id}: {exc}: {q.expr}")
    if values:
        assert any('host=~"(a\\\\.b-1|c\\\\+d)"' in q.expr for q in queries)


def test_prometheus_parses_every_resolved_query(boards: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make tools)")
    queries = _all_queries(boards, {}) + _all_queries(boards, SEVERAL)
    rules = [{"record": f"dashboard:query:{n}", "expr": q.expr} for n, q in enumerate(queries)]
    path = tmp_path / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard_queries", "rules": rules}]}))
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_forms_of_a_variable() -> None:
    v = [_var("host"), _var("gpu", allValue="[0-9]+"), {"name": "job", "type": "custom", "current": {"value": "node"}}]
    given = {"host": ["gpu-1", "gpu.2"], "gpu": "All"}
    assert _expr('up{host=~"$host"}', given, v) == 'up{host=~"(gpu-1|gpu\\\\.2)"}'
    assert _expr('up{host=~"${host}"}', given, v) == 'up{host=~"(gpu-1|gpu\\\\.2)"}'
    assert _expr('up{host=~"${host:regex}"}', given, v) == 'up{host=~"(gpu-1|gpu\\\\.2)"}'
    assert _expr('up{host=~"${host:pipe}"}', given, v) == 'up{host=~"gpu-1|gpu.2"}'
    assert _expr('up{host=~"$host"}', {"host": "gpu.2"}, v) == 'up{host=~"gpu\\\\.2"}'  # one value: no group
    # All, given or not, is the all value in every form; a variable without All keeps its current value
    assert _expr('x{gpu=~"$gpu", h=~"${host:pipe}"}', {"gpu": "$__all"}, v) == 'x{gpu=~"[0-9]+", h=~".*"}'
    assert _expr('up{job="$job"}', {}, v) == 'up{job="node"}'
    assert _expr('up{job="$job"}', {"job": "gpu"}, v) == 'up{job="gpu"}'


def test_grafanas_interval_variables() -> None:
    expr = "rate(x[$__rate_interval]) + rate(y[$__interval]) + increase(z[$__range]) / $__range_s + $__range_ms"
    assert _expr(expr, {}) == "rate(x[5m]) + rate(y[1m]) + increase(z[1d]) / 86400 + 86400000"
    assert _expr("rate(x[${__rate_interval}])", {"__rate_interval": "2m"}) == "rate(x[2m])"
    assert set(BUILTINS) == {"__rate_interval", "__interval", "__range", "__range_s", "__range_ms"}


def test_a_variable_without_a_value_or_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="no value for the variable 'nope'"):
        _expr('up{a=~"$nope"}', {})
    with pytest.raises(ValueError, match="format 'csv'"):
        _expr('up{a=~"${host:csv}"}', {"host": "a"}, [_var("host")])


def test_other_data_sources_are_skipped_and_rows_are_walked() -> None:
    board = {
        "uid": "u",
        "panels": [
            {"type": "alertGroups", "title": "am", "options": {"alertmanager": "Alertmanager"}},
            {
                "type": "table",
                "title": "mixed",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "targets": [
                    {"refId": "A", "expr": "up"},
                    {"refId": "B", "datasource": {"type": "loki", "uid": "l"}, "expr": '{job="x"}'},
                    {"refId": "C", "datasource": {"type": "alertmanager", "uid": "am"}},
                ],
            },
            {
                "type": "row",
                "title": "r",
                "panels": [{"type": "stat", "title": "inner", "targets": [{"refId": "A", "expr": "vector(1)"}]}],
            },
        ],
    }
    assert panel_queries(board, {}) == [PanelQuery("u", "mixed", "A", "up"), PanelQuery("u", "inner", "A", "vector(1)")]

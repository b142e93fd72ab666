"""The PromQL queries of the collection's Grafana dashboards (files/dashboards/<folder>/<name>.json) as Prometheus
receives them, every template variable resolved as Grafana's Prometheus data source resolves it.

    from dashboard_queries import load_dashboards, panel_queries
    for board in load_dashboards():
        for q in panel_queries(board, {"host": ["gpu-1", "gpu-2"], "model": "All"}):
            print(q.dashboard, q.panel, q.ref_id, q.expr)

A variable's value is a string or a list of strings. As Grafana does: ``$var`` and ``${var}`` give the value of a
single-value variable as it is, and the values of a multi-value (or All) variable regex-escaped, several as an
alternation ``(a|b)``; ``${var:regex}`` always escapes, ``${var:pipe}`` joins with ``|`` and never escapes. The
escaping doubles its backslash, which sits in a PromQL string (``gpu\\.1``). ``All`` (or ``$__all``, or no value
given for a variable that has All) is the variable's all value (``.*`` unless it sets another) in every form; a
variable without All and no value given takes its current value in the dashboard. Grafana's interval variables:
``$__rate_interval`` 5m, ``$__interval`` 1m, ``$__range`` 1d, ``$__range_s`` 86400, ``$__range_ms`` 86400000,
unless given. Targets of other data sources than Prometheus are skipped (the alert panels have none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "files/dashboards"
#: Grafana's built-in variables of a query and the value the queries get, unless the caller gives one
BUILTINS: dict[str, str] = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1d",
    "__range_s": "86400",
    "__range_ms": "86400000",
}
ALL = ("All", "$__all")
#: $name, ${name} and ${name:format}
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?\}|([A-Za-z_][A-Za-z0-9_]*))")
#: what Grafana's Prometheus data source escapes in a regex value (a backslash doubled: it sits in a PromQL string)
_REGEX_SPECIAL = re.compile(r"[\\$^*+?.()|{}\[\]']")
FORMATS = ("regex", "pipe")

Value = str | Sequence[str]


@dataclass(frozen=True)
class PanelQuery:
    """One Prometheus query of a panel, its variables resolved."""

    dashboard: str  # the dashboard's uid
    panel: str  # the panel's title
    ref_id: str
    expr: str


def load_dashboards(root: Path = DASHBOARDS) -> list[dict[str, Any]]:
    """Every dashboard's JSON under root (files/dashboards/<folder>/<name>.json), in path order."""
    return [json.loads(f.read_text()) for f in sorted(root.glob("**/*.json")) if "as_code" not in f.parts]


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, the panels of rows (collapsed or not) included, rows themselves left out."""

    def walk(items: Any) -> Iterator[dict[str, Any]]:
        for p in items if isinstance(items, list) else []:
            if isinstance(p, dict):
                if p.get("type") != "row":
                    yield p
                yield from walk(p.get("panels"))

    yield from walk(dashboard.get("panels"))


def _regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value)


def _format(values: list[str], fmt: str | None, multi: bool) -> str:
    """Grafana's interpolation of a variable's values into a Prometheus query."""
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "regex" or multi or len(values) > 1:
        escaped = [_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    return values[0]


class Resolver:
    """The values of a dashboard's variables: the caller's, else All or the dashboard's current value."""

    def __init__(self, dashboard: Mapping[str, Any], given: Mapping[str, Value]) -> None:
        self.defined: dict[str, dict[str, Any]] = {
            str(v["name"]): v for v in (dashboard.get("templating") or {}).get("list") or [] if "name" in v
        }
        self.given = given
        self.uid = str(dashboard.get("uid", ""))

    def _all_value(self, name: str) -> str:
        v = self.defined.get(name, {})
        return str(v.get("allValue") or ".*")

    def values(self, name: str) -> tuple[list[str] | None, bool]:
        """(values, multi); values None: the variable's all value."""
        definition = self.defined.get(name)
        multi = bool(definition and (definition.get("multi") or definition.get("includeAll")))
        if name in self.given:
            raw = self.given[name]
            values = [raw] if isinstance(raw, str) else [str(v) for v in raw]
        elif definition is not None and definition.get("includeAll"):
            return None, multi
        elif definition is not None and isinstance(definition.get("current"), dict):
            current = definition["current"].get("value")
            values = [current] if isinstance(current, str) else [str(v) for v in current or []]
        else:
            raise ValueError(f"dashboard {self.uid}: no value for the variable {name!r}")
        if not values:
            raise ValueError(f"dashboard {self.uid}: the variable {name!r} has no value")
        if any(v in ALL for v in values):
            return None, multi
        return values, multi

    def resolve(self, expr: str) -> str:
        def value(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(3)
            fmt = m.group(2)
            if fmt is not None and fmt not in FORMATS:
                raise ValueError(f"dashboard {self.uid}: format {fmt!r} of ${{{name}}} is not one of {FORMATS}")
            if name in BUILTINS:
                given = self.given.get(name)
                return given if isinstance(given, str) else BUILTINS[name]
            values, multi = self.values(name)
            return self._all_value(name) if values is None else _format(values, fmt, multi)

        return _VARIABLE.sub(value, expr)


def _is_prometheus(target: Mapping[str, Any], panel: Mapping[str, Any]) -> bool:
    ds = target.get("datasource") or panel.get("datasource")
    if isinstance(ds, Mapping):
        return ds.get("type") == "prometheus"
    return ds is None and "expr" in target  # the default data source: a Prometheus query has an expr


def panel_queries(dashboard: Mapping[str, Any], variables: Mapping[str, Value]) -> list[PanelQuery]:
    """Every Prometheus query of every panel (rows' panels included), in panel order, its variables resolved."""
    resolver = Resolver(dashboard, variables)
    out: list[PanelQuery] = []
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            if not isinstance(target, Mapping) or not _is_prometheus(target, panel) or not target.get("expr"):
                continue
            out.append(
                PanelQuery(
                    resolver.uid,
                    str(panel.get("title", "")),
                    str(target.get("refId", "")),
                    resolver.resolve(str(target["expr"])),
                )
            )
    return out

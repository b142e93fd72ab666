"""The alert rule catalog (files/rules/catalog/*.yml) rendered against the inventory.

Each catalog alert may have a threshold (``$threshold`` in its expression) and a ``for``. Hosts override
them, or switch the alert off, with host or group variables named after the alert::

    fleet_alert_<alert_in_snake_case>_threshold: 90
    fleet_alert_<alert_in_snake_case>_for: 10m
    fleet_alert_<alert_in_snake_case>_enabled: false

Hosts are grouped by their settings: one rule per distinct (threshold, for) pair, never one per host. The
setting most hosts share gets the catch-all rule (``host!~"<the others>"``, which also covers hosts the
inventory does not list); every other setting gets a rule for its hosts (``host=~"<them>"``). ``$hosts`` in
an expression marks where that matcher goes, inside a selector's braces.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_inventory import InventoryError

VAR_PREFIX = "fleet_alert_"
SUFFIXES = ("threshold", "for", "enabled")
SEVERITIES = ("critical", "warning", "info")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_RECORD = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_REGEX_SPECIAL = re.compile(r"[.^$*+?()\[\]{}|\\]")


def snake(name: str) -> str:
    """GpuTemperatureNearSlowdown -> gpu_temperature_near_slowdown (runs of capitals stay one word)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def seconds(duration: str) -> float:
    return sum(int(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


@dataclass(frozen=True)
class Alert:
    name: str
    group: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str = "0s"
    threshold: float | None = None
    unit: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    #: "host": per-host settings ($hosts in expr); "fleet": one rule over the whole fleet, one setting for all
    scope: str = "host"

    @property
    def variable(self) -> str:
        return VAR_PREFIX + snake(self.name)


@dataclass(frozen=True)
class Group:
    name: str
    file: str
    interval: str | None
    recording: tuple[Mapping[str, Any], ...]
    alerts: tuple[Alert, ...]


def _text(where: str, doc: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def load_catalog(files: Mapping[str, Any]) -> list[Group]:
    """{file name: parsed YAML} -> the groups; a malformed catalog is a bug of the collection (ValueError)."""
    groups: list[Group] = []
    names: set[str] = set()
    for file, doc in sorted(files.items()):
        if not isinstance(doc, Mapping):
            raise ValueError(f"{file}: expected a mapping")
        gname = _text(file, doc, "group")
        interval = doc.get("interval")
        if interval is not None and not (isinstance(interval, str) and DURATION.match(interval)):
            raise ValueError(f"{file}: interval {interval!r} is not a duration")
        recording = []
        for i, r in enumerate(doc.get("recording") or []):
            where = f"{file}: recording[{i}]"
            if not isinstance(r, Mapping) or not _RECORD.match(str(r.get("record", ""))):
                raise ValueError(f"{where}: needs a 'record' name and an 'expr'")
            _text(where, r, "expr")
            recording.append(dict(r))
        alerts = []
        for i, a in enumerate(doc.get("alerts") or []):
            where = f"{file}: alerts[{i}]"
            if not isinstance(a, Mapping):
                raise ValueError(f"{where}: expected a mapping")
            name = _text(where, a, "alert")
            if not _NAME.match(name) or name in names:
                raise ValueError(f"{where}: alert name {name!r} is not CamelCase or not unique")
            names.add(name)
            expr = _text(where, a, "expr")
            threshold = a.get("threshold")
            if (threshold is None) == ("$threshold" in expr):
                raise ValueError(f"{where} ({name}): 'threshold' and '$threshold' in expr go together")
            if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
                raise ValueError(f"{where} ({name}): threshold must be a number")
            scope = str(a.get("scope", "host"))
            if scope not in ("host", "fleet"):
                raise ValueError(f"{where} ({name}): scope must be host or fleet")
            if ("$hosts" in expr) != (scope == "host"):
                raise ValueError(f"{where} ({name}): a host-scoped expr needs '$hosts' in a selector, a fleet one none")
            severity = _text(where, a, "severity")
            if severity not in SEVERITIES:
                raise ValueError(f"{where} ({name}): severity must be one of {', '.join(SEVERITIES)}")
            for_ = str(a.get("for", "0s"))
            if not DURATION.match(for_):
                raise ValueError(f"{where} ({name}): for {for_!r} is not a duration")
            labels = a.get("labels") or {}
            if not isinstance(labels, Mapping) or "severity" in labels:
                raise ValueError(f"{where} ({name}): labels must be a mapping without 'severity'")
            alerts.append(
                Alert(
                    name=name,
                    group=gname,
                    expr=expr,
                    severity=severity,
                    summary=_text(where, a, "summary"),
                    description=_text(where, a, "description"),
                    for_=for_,
                    threshold=None if threshold is None else float(threshold),
                    unit=str(a.get("unit", "")),
                    labels={str(k): str(v) for k, v in labels.items()},
                    scope=scope,
                )
            )
        groups.append(Group(gname, file, interval, tuple(recording), tuple(alerts)))
    return groups


@dataclass(frozen=True)
class Setting:
    threshold: float | None
    for_: str


def _number(host: str, var: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InventoryError(f"host '{host}': {var}={value!r} is not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InventoryError(f"host '{host}': {var}={value!r} is not a number") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InventoryError(f"host '{host}': {var}={value!r} is not a number")
    return float(value)


def _bool(host: str, var: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise InventoryError(f"host '{host}': {var}={value!r} is not a boolean")


def host_settings(
    groups: Sequence[Group], hostvars: Mapping[str, Mapping[str, Any]], hosts: Iterable[str]
) -> dict[str, dict[str, Setting | None]]:
    """{alert: {host: its setting, None when switched off}}; refuses unknown alerts and bad values."""
    alerts = {a.variable: a for g in groups for a in g.alerts}
    out: dict[str, dict[str, Setting | None]] = {a.name: {} for a in alerts.values()}
    for host in sorted(hosts):
        hv = hostvars.get(host, {})
        for var in sorted(k for k in hv if isinstance(k, str) and k.startswith(VAR_PREFIX)):
            base, _, suffix = var.rpartition("_")
            if suffix not in SUFFIXES or base not in alerts:
                known = ", ".join(sorted(a.name for a in alerts.values()))
                raise InventoryError(
                    f"host '{host}': {var} names no alert of the catalog (variables are "
                    f"{VAR_PREFIX}<alert in snake_case>_threshold|_for|_enabled; alerts: {known})"
                )
            if suffix == "threshold" and alerts[base].threshold is None:
                raise InventoryError(f"host '{host}': {var}: alert {alerts[base].name} has no threshold")
        for alert in alerts.values():
            var = alert.variable
            if var + "_enabled" in hv and not _bool(host, var + "_enabled", hv[var + "_enabled"]):
                out[alert.name][host] = None
                continue
            threshold = alert.threshold
            if var + "_threshold" in hv:
                threshold = _number(host, var + "_threshold", hv[var + "_threshold"])
            for_ = alert.for_
            if var + "_for" in hv:
                value = hv[var + "_for"]
                if not isinstance(value, str) or not DURATION.match(value):
                    raise InventoryError(f"host '{host}': {var}_for={value!r} is not a duration (e.g. 5m, 1h)")
                for_ = value
            out[alert.name][host] = Setting(threshold, for_)
    return out


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _matcher(hosts: Iterable[str], negative: bool) -> str:
    names = sorted(hosts)
    if not names:
        return ""
    # a regex of literal host names, inside a PromQL double-quoted string (backslashes doubled)
    regex = "|".join(_REGEX_SPECIAL.sub(r"\\\g<0>", h) for h in names).replace("\\", "\\\\")
    return f'host{"!~" if negative else "=~"}"{regex}"'


def _expr(alert: Alert, setting: Setting, matcher: str) -> str:
    expr = alert.expr.replace("$hosts", matcher)
    # an empty $hosts leaves "{}", "{a,}" or "{,a}" behind
    expr = re.sub(r",\s*}", "}", re.sub(r"{\s*,", "{", expr)).replace("{}", "")
    if setting.threshold is not None:
        expr = expr.replace("$threshold", _fmt(setting.threshold))
    return expr


def _rule(alert: Alert, setting: Setting, matcher: str, runbook_base: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": alert.name, "expr": _expr(alert, setting, matcher)}
    if seconds(setting.for_) > 0:
        rule["for"] = setting.for_
    rule["labels"] = {"severity": alert.severity, **alert.labels}
    threshold = "" if setting.threshold is None else _fmt(setting.threshold)
    rule["annotations"] = {
        "summary": alert.summary.replace("$threshold", threshold),
        "description": alert.description.replace("$threshold", threshold),
        "runbook_url": f"{runbook_base.rstrip('/')}/{alert.group}.md#{alert.name.lower()}",
    }
    return rule


def render(
    groups: Sequence[Group],
    hostvars: Mapping[str, Mapping[str, Any]],
    hosts: Iterable[str],
    runbook_base: str,
    disabled_groups: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:
    """{file name: Prometheus rule file} for the catalog against the inventory."""
    settings = host_settings(groups, hostvars, hosts)
    off = set(disabled_groups)
    out: dict[str, dict[str, Any]] = {}
    for g in groups:
        if g.name in off:
            continue
        rules: list[dict[str, Any]] = [dict(r) for r in g.recording]
        for alert in g.alerts:
            per_host = settings[alert.name]
            default = Setting(alert.threshold, alert.for_)
            by_setting: dict[Setting, list[str]] = {}
            for host, s in per_host.items():
                if s is not None:
                    by_setting.setdefault(s, []).append(host)
            switched_off = [h for h, s in per_host.items() if s is None]
            if not per_host:  # no inventory hosts at all: the catalog's default for everyone
                by_setting[default] = []
            if not by_setting:
                continue  # switched off everywhere
            if alert.scope == "fleet":
                if len(by_setting) > 1 or switched_off:
                    seen = {h: s for h, s in per_host.items() if s != default}
                    raise InventoryError(
                        f"host '{sorted(seen)[0]}': {alert.variable}_*: {alert.name} is one rule for the whole fleet; "
                        f"set it for all hosts at once (group_vars/all), not for some ({', '.join(sorted(seen))})"
                    )
                rules.append(_rule(alert, next(iter(by_setting)), "", runbook_base))
                continue
            counts = Counter({s: len(h) for s, h in by_setting.items()})
            # the catch-all: the setting most hosts share (ties: the catalog's default, then the first)
            catch_all = max(counts, key=lambda s: (counts[s], s == default))
            others = [h for s, hs in by_setting.items() if s != catch_all for h in hs] + switched_off
            rules.append(_rule(alert, catch_all, _matcher(others, negative=True), runbook_base))
            for s in sorted((s for s in by_setting if s != catch_all), key=lambda s: (s.threshold or 0, s.for_)):
                rules.append(_rule(alert, s, _matcher(by_setting[s], negative=False), runbook_base))
        group: dict[str, Any] = {"name": f"llm_monitor_{g.name}", "rules": rules}
        if g.interval:
            group["interval"] = g.interval
        if rules:
            out[f"llm_monitor_{g.name}.rules.yml"] = {"groups": [group]}
    return out

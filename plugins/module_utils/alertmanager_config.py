"""alertmanager.yml from the alertmanager role's variables: receivers, routes, inhibition, time intervals.

Every check runs before anything is written, and a refusal names the host and the variable. Secrets never go into
alertmanager.yml: each receiver's secret is written to its own file (only root and Alertmanager's group read it)
and the config points at that file with the integration's ``*_file`` field, so the rendered configuration can be
shown, diffed and validated without revealing anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_inventory import InventoryError


@dataclass(frozen=True)
class Integration:
    #: the list in an Alertmanager receiver that holds this integration's entries
    config_key: str
    #: the field that reads the secret from a file; None: the integration has no secret of ours
    secret_file_field: str | None
    #: whether a receiver of this type must have a secret (webhook: only when its URL carries a token)
    secret_required: bool
    #: fields a receiver entry must set in its settings
    required_settings: tuple[str, ...] = ()
    #: the oldest Alertmanager release that reads the secret file field (for the README and the error message)
    since: str = "0.25"


# Integration types this role writes, for Alertmanager 0.25 (Debian 12) to 0.28 (the pinned archive, Debian 13).
INTEGRATIONS: dict[str, Integration] = {
    "webhook": Integration("webhook_configs", "url_file", secret_required=False, since="0.26"),
    "email": Integration("email_configs", "auth_password_file", secret_required=False, required_settings=("to",)),
    "slack": Integration("slack_configs", "api_url_file", secret_required=True, required_settings=("channel",)),
    "pagerduty": Integration("pagerduty_configs", "routing_key_file", secret_required=True),
    "msteams": Integration("msteams_configs", "webhook_url_file", secret_required=True, since="0.27"),
    "msteamsv2": Integration("msteamsv2_configs", "webhook_url_file", secret_required=True, since="0.28"),
    "opsgenie": Integration("opsgenie_configs", "api_key_file", secret_required=True),
}
RECEIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
ROUTE_DURATIONS = ("group_wait", "group_interval", "repeat_interval")
ROUTE_KEYS = {
    "receiver",
    "matchers",
    "continue",
    "group_by",
    "mute_time_intervals",
    "active_time_intervals",
    "routes",
    *ROUTE_DURATIONS,
}
# Fields that hold a secret in Alertmanager's own format: refused in settings, so no secret lands in alertmanager.yml.
SECRET_SETTINGS = frozenset(
    {"api_url", "routing_key", "service_key", "api_key", "auth_password", "auth_secret", "webhook_url"}
)
# The receiver every alert goes to when nothing is configured: delivers nothing, on purpose and visibly.
NULL_RECEIVER = "null"


# Alertmanager's matcher syntax: a label name, an operator, a value (quoted or not).
MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*|"[^"]*")\s*(=~|!~|!=|=)\s*(.*?)\s*$')
URL = re.compile(r"^https?://[^/\s]+(/\S*)?$")


def matchers(host: str, var: str, value: Any) -> list[str]:
    """A list of matcher strings, each checked as Alertmanager would parse it (regexes compiled)."""
    if not isinstance(value, Sequence) or isinstance(value, str) or not value or not all(_text(m) for m in value):
        raise InventoryError(f"host '{host}': {var} must be a list of matcher strings, e.g. ['severity=\"critical\"']")
    for i, matcher in enumerate(value):
        found = MATCHER.match(str(matcher))
        if not found:
            raise InventoryError(
                f"host '{host}': {var}[{i}]={matcher!r} is not a matcher (label, one of = != =~ !~, value; "
                "e.g. 'team=\"research\"')"
            )
        op, operand = found.group(2), found.group(3)
        if op in ("=~", "!~"):
            pattern = operand[1:-1] if len(operand) >= 2 and operand[0] == operand[-1] == '"' else operand
            try:
                re.compile(pattern)
            except re.error as err:
                raise InventoryError(
                    f"host '{host}': {var}[{i}]={matcher!r}: the regex does not compile ({err})"
                ) from None
    return [str(m) for m in value]


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def secret_path(secrets_dir: str, receiver: str, index: int) -> str:
    return f"{secrets_dir}/{receiver}-{index}.secret"


def receivers(host: str, var: str, value: Any, secrets_dir: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The receivers section and the secret files it points at ({path, content})."""
    if value is None:
        value = []
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise InventoryError(f"host '{host}': {var} must be a list of receivers ({{name, type, ...}})")
    # One receiver name may carry several integrations: entries of the same name are merged into one receiver.
    merged: dict[str, dict[str, Any]] = {}
    secrets: list[dict[str, str]] = []
    for i, entry in enumerate(value):
        where = f"{var}[{i}]"
        if not isinstance(entry, Mapping):
            raise InventoryError(f"host '{host}': {where} must be a mapping with name and type, got {entry!r}")
        name, kind = entry.get("name"), entry.get("type")
        if not _text(name) or not RECEIVER_NAME.match(str(name)):
            raise InventoryError(
                f"host '{host}': {where}.name={name!r} is not a receiver name (letters, digits, '_', '.', '-')"
            )
        if name == NULL_RECEIVER:
            raise InventoryError(f"host '{host}': {where}.name: '{NULL_RECEIVER}' is the role's own receiver")
        if kind not in INTEGRATIONS:
            raise InventoryError(
                f"host '{host}': {where} ({name}): type={kind!r} is not a receiver type this role writes; "
                f"one of {', '.join(INTEGRATIONS)}"
            )
        integration = INTEGRATIONS[str(kind)]
        unknown = set(entry) - {"name", "type", "secret", "settings", "send_resolved"}
        if unknown:
            raise InventoryError(
                f"host '{host}': {where} ({name}): unknown keys {sorted(unknown)} "
                "(name, type, secret, settings, send_resolved; integration fields go under settings)"
            )
        settings = entry.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise InventoryError(f"host '{host}': {where} ({name}).settings must be a mapping")
        for field in settings:
            if str(field).endswith("_file") or field in SECRET_SETTINGS:
                raise InventoryError(
                    f"host '{host}': {where} ({name}).settings.{field}: give the secret in 'secret' "
                    "(from Ansible Vault); the role writes it to a file only Alertmanager reads"
                )
        for field, setting in settings.items():
            if (field == "url" or str(field).endswith("_url")) and not (_text(setting) and URL.match(str(setting))):
                raise InventoryError(
                    f"host '{host}': {where} ({name}).settings.{field}={setting!r} is not an http(s) URL"
                )
        missing = [f for f in integration.required_settings if not _text(settings.get(f))]
        if missing:
            raise InventoryError(f"host '{host}': {where} ({name}): type {kind} needs settings.{missing[0]}")
        secret = entry.get("secret")
        has_secret = secret is not None and str(secret) != ""
        if integration.secret_required and not has_secret:
            raise InventoryError(
                f"host '{host}': {where} ({name}): a {kind} receiver needs its secret ('secret', from Ansible "
                "Vault); it is empty or missing"
            )
        if kind == "webhook" and has_secret == _text(settings.get("url")):
            raise InventoryError(
                f"host '{host}': {where} ({name}): a webhook needs exactly one of settings.url (a URL without a "
                "token) or secret (a URL with a token, from Ansible Vault)"
            )
        if kind in ("webhook", "slack", "msteams", "msteamsv2") and has_secret and not URL.match(str(secret).strip()):
            # the secret is a URL with a token: said to be wrong, never shown
            raise InventoryError(f"host '{host}': {where} ({name}): its secret is not an http(s) URL")
        if kind == "email" and has_secret and not _text(settings.get("auth_username")):
            raise InventoryError(
                f"host '{host}': {where} ({name}): an email secret (the SMTP password) needs settings.auth_username"
            )
        config: dict[str, Any] = dict(settings)
        if "send_resolved" in entry:
            if not isinstance(entry["send_resolved"], bool):
                raise InventoryError(f"host '{host}': {where} ({name}).send_resolved must be true or false")
            config["send_resolved"] = entry["send_resolved"]
        if has_secret and integration.secret_file_field:
            path = secret_path(secrets_dir, str(name), i)
            secrets.append({"path": path, "content": str(secret).strip() + "\n"})
            config[integration.secret_file_field] = path
        receiver = merged.setdefault(str(name), {"name": str(name)})
        receiver.setdefault(integration.config_key, []).append(config)
    return [{"name": NULL_RECEIVER}, *merged.values()], secrets


def duration(host: str, var: str, value: Any) -> str:
    if not isinstance(value, str) or not DURATION.match(value):
        raise InventoryError(f"host '{host}': {var}={value!r} is not a duration (e.g. 30s, 5m, 4h, 1d)")
    return value


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, Sequence) and not isinstance(value, str) else []


def time_intervals(host: str, var: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise InventoryError(f"host '{host}': {var} must be a list of {{name, time_intervals}}")
    seen: set[str] = set()
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping) or not _text(entry.get("name")):
            raise InventoryError(f"host '{host}': {var}[{i}] needs a name and time_intervals")
        if entry["name"] in seen:
            raise InventoryError(f"host '{host}': {var}[{i}]: duplicate time interval {entry['name']!r}")
        seen.add(str(entry["name"]))
        if not isinstance(entry.get("time_intervals"), Sequence) or not entry["time_intervals"]:
            raise InventoryError(
                f"host '{host}': {var}[{i}] ({entry['name']}): time_intervals must be a non-empty list"
            )
    return [dict(e) for e in value]


def route(
    host: str, var: str, value: Any, receiver_names: set[str], interval_names: set[str], top: bool = False
) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InventoryError(f"host '{host}': {var} must be a mapping (receiver, matchers, ...)")
    unknown = set(value) - ROUTE_KEYS
    if unknown:
        raise InventoryError(f"host '{host}': {var}: unknown keys {sorted(unknown)}; one of {sorted(ROUTE_KEYS)}")
    out: dict[str, Any] = {}
    receiver = value.get("receiver")
    if receiver is not None or top:
        if receiver not in receiver_names:
            raise InventoryError(
                f"host '{host}': {var}.receiver={receiver!r} is not a receiver of alertmanager_receivers "
                f"({', '.join(sorted(receiver_names))})"
            )
        out["receiver"] = receiver
    for key in ROUTE_DURATIONS:
        if key in value:
            out[key] = duration(host, f"{var}.{key}", value[key])
    if "group_by" in value:
        if not _names(value["group_by"]):
            raise InventoryError(f"host '{host}': {var}.group_by must be a list of label names")
        out["group_by"] = _names(value["group_by"])
    if "matchers" in value:
        out["matchers"] = matchers(host, f"{var}.matchers", value["matchers"])
    elif not top:
        raise InventoryError(f"host '{host}': {var} needs matchers (a route without them catches every alert)")
    if "continue" in value:
        if not isinstance(value["continue"], bool):
            raise InventoryError(f"host '{host}': {var}.continue must be true or false")
        out["continue"] = value["continue"]
    for key in ("mute_time_intervals", "active_time_intervals"):
        if key in value:
            names = _names(value[key])
            missing = [n for n in names if n not in interval_names]
            if missing or not names:
                raise InventoryError(
                    f"host '{host}': {var}.{key}: {missing or value[key]!r} not in alertmanager_time_intervals "
                    f"({', '.join(sorted(interval_names)) or 'none defined'})"
                )
            out[key] = names
    if "routes" in value:
        children = value["routes"]
        if not isinstance(children, Sequence) or isinstance(children, str):
            raise InventoryError(f"host '{host}': {var}.routes must be a list of routes")
        out["routes"] = [
            route(host, f"{var}.routes[{i}]", child, receiver_names, interval_names) for i, child in enumerate(children)
        ]
    return out


def mapping_routes(host: str, var: str, value: Any, label: str, receiver_names: set[str]) -> list[dict[str, Any]]:
    """{label value: receiver} (e.g. alertmanager_team_receivers) as routes matching that label."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise InventoryError(f"host '{host}': {var} must be a mapping of {label} value to receiver name")
    out = []
    for key, receiver in value.items():
        if receiver not in receiver_names:
            raise InventoryError(
                f"host '{host}': {var}[{key!r}]={receiver!r} is not a receiver of alertmanager_receivers "
                f"({', '.join(sorted(receiver_names))})"
            )
        # the value as a quoted string, escaped as Alertmanager's parser reads it (JSON's escapes)
        out.append({"receiver": receiver, "matchers": [f"{label}={json.dumps(str(key))}"]})
    return out


def inhibit_rules(host: str, var: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise InventoryError(f"host '{host}': {var} must be a list of inhibit rules")
    for i, rule in enumerate(value):
        if not isinstance(rule, Mapping) or not rule.get("source_matchers") or not rule.get("target_matchers"):
            raise InventoryError(f"host '{host}': {var}[{i}] needs source_matchers and target_matchers")
        for key in ("source_matchers", "target_matchers"):
            matchers(host, f"{var}[{i}].{key}", rule[key])
    return [dict(r) for r in value]


def config(host: str, variables: Mapping[str, Any], secrets_dir: str) -> dict[str, Any]:
    """{config: alertmanager.yml as a mapping, secrets: [{path, content}]}; raises InventoryError on bad input."""
    receiver_list, secrets = receivers(
        host, "alertmanager_receivers", variables.get("alertmanager_receivers"), secrets_dir
    )
    names = {r["name"] for r in receiver_list}
    intervals = time_intervals(host, "alertmanager_time_intervals", variables.get("alertmanager_time_intervals"))
    interval_names = {str(i["name"]) for i in intervals}
    if not isinstance(variables.get("alertmanager_route") or {}, Mapping):
        raise InventoryError(f"host '{host}': alertmanager_route must be a mapping (group_by, group_wait, ...)")
    if "receiver" in (variables.get("alertmanager_route") or {}):
        raise InventoryError(f"host '{host}': alertmanager_route.receiver: set alertmanager_default_receiver instead")
    default = variables.get("alertmanager_default_receiver") or NULL_RECEIVER
    top = route(
        host,
        "alertmanager_route",
        {"receiver": default, **dict(variables.get("alertmanager_route") or {})},
        names,
        interval_names,
        top=True,
    )
    if top.get("receiver") == NULL_RECEIVER and any(r["name"] != NULL_RECEIVER for r in receiver_list):
        raise InventoryError(
            f"host '{host}': alertmanager_default_receiver is not set: alerts no route catches would be dropped; "
            "name one of alertmanager_receivers"
        )
    children = [
        route(host, f"alertmanager_routes[{i}]", r, names, interval_names)
        for i, r in enumerate(variables.get("alertmanager_routes") or [])
    ]
    children += mapping_routes(
        host, "alertmanager_team_receivers", variables.get("alertmanager_team_receivers"), "team", names
    )
    children += mapping_routes(
        host, "alertmanager_severity_receivers", variables.get("alertmanager_severity_receivers"), "severity", names
    )
    if children:
        top["routes"] = children
    inhibit = inhibit_rules(host, "alertmanager_inhibit_rules", variables.get("alertmanager_inhibit_rules"))
    out: dict[str, Any] = {"route": top, "receivers": receiver_list}
    if inhibit:
        out["inhibit_rules"] = inhibit
    if intervals:
        out["time_intervals"] = intervals
    global_settings = variables.get("alertmanager_global") or {}
    if not isinstance(global_settings, Mapping):
        raise InventoryError(f"host '{host}': alertmanager_global must be a mapping")
    for i, entry in enumerate(variables.get("alertmanager_receivers") or []):
        if entry.get("type") != "email":
            continue
        settings = entry.get("settings") or {}
        for field, global_field in (("smarthost", "smtp_smarthost"), ("from", "smtp_from")):
            if not _text(settings.get(field)) and not _text(global_settings.get(global_field)):
                raise InventoryError(
                    f"host '{host}': alertmanager_receivers[{i}] ({entry.get('name')}): an email receiver needs "
                    f"settings.{field} or alertmanager_global.{global_field}"
                )
    if global_settings:
        out = {"global": dict(global_settings), **out}
    templates = variables.get("alertmanager_templates") or []
    if templates:
        out["templates"] = list(templates)
    return {"config": out, "secrets": secrets}

"""Grafana's configuration from the grafana role's variables: grafana.ini, the datasources, the dashboards.

Everything here runs on the controller during the preflight, so bad input stops the run before a host changes; each
error names the host and the variable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_inventory import InventoryError

# Passwords Grafana ships with or that guides print; a fleet's Grafana must not answer to them.
KNOWN_DEFAULT_PASSWORDS = frozenset({"admin", "password", "grafana", "changeme", "change-me", "secret", "123456"})
# grafana.ini's documented default secret_key: a key everyone knows encrypts nothing.
GRAFANA_DEFAULT_SECRET_KEY = "SW2YcwTIb9zpOOhoPsMm"
# The datasource plugins a Grafana OSS install has without installing plugins.
DATASOURCE_TYPES = frozenset(
    {
        "alertmanager",
        "cloudwatch",
        "elasticsearch",
        "grafana-azure-monitor-datasource",
        "grafana-postgresql-datasource",
        "grafana-pyroscope-datasource",
        "grafana-testdata-datasource",
        "graphite",
        "influxdb",
        "jaeger",
        "loki",
        "mssql",
        "mysql",
        "opentsdb",
        "parca",
        "postgres",
        "prometheus",
        "stackdriver",
        "tempo",
        "zipkin",
    }
)
DATASOURCE_KEYS = frozenset(
    {
        "name",
        "type",
        "uid",
        "access",
        "url",
        "isDefault",
        "orgId",
        "editable",
        "jsonData",
        "secureJsonData",
        "basicAuth",
        "basicAuthUser",
        "user",
        "database",
        "withCredentials",
        "version",
    }
)
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
UID_MAX = 40
# Settings that hold secrets: they come from their own Vault variables into files, never through grafana_ini.
SECRET_SETTINGS = {
    ("security", "admin_password"): "grafana_admin_password",
    ("security", "secret_key"): "grafana_secret_key",
}


def _fail(host: str, message: str) -> InventoryError:
    return InventoryError(f"host '{host}': {message}")


def check_secrets(host: str, admin_user: Any, admin_password: Any, secret_key: Any) -> bool:
    """Refuse a missing or well-known admin password or secret_key (the values are never shown)."""
    if not isinstance(admin_user, str) or not admin_user.strip():
        raise _fail(host, "grafana_admin_user must be a non-empty string")
    if not isinstance(admin_password, str) or not admin_password:
        raise _fail(
            host,
            "grafana_admin_password is not set: give the Grafana admin password from Ansible Vault (or set "
            "grafana_enabled: false to run without Grafana)",
        )
    if admin_password.strip().lower() in KNOWN_DEFAULT_PASSWORDS or admin_password == admin_user:
        raise _fail(
            host,
            "grafana_admin_password is a well-known default (or the user name): choose another one, kept in "
            "Ansible Vault",
        )
    if "\n" in admin_password:
        raise _fail(host, "grafana_admin_password must be one line")
    if not isinstance(secret_key, str) or not secret_key:
        raise _fail(
            host,
            "grafana_secret_key is not set: give Grafana's secret_key (it encrypts datasource "
            "secrets) from Ansible Vault",
        )
    if secret_key == GRAFANA_DEFAULT_SECRET_KEY or secret_key.strip().lower() in KNOWN_DEFAULT_PASSWORDS:
        raise _fail(
            host,
            "grafana_secret_key is Grafana's documented default or a well-known value: generate one "
            "(e.g. openssl rand -hex 32) and keep it in Ansible Vault",
        )
    if "\n" in secret_key:
        raise _fail(host, "grafana_secret_key must be one line")
    return True


def _ini_value(host: str, where: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        if "\n" in value or '"""' in value:
            raise _fail(host, f"{where}={value!r}: a grafana.ini value must be one line without triple quotes")
        # go-ini reads ; and # as a comment: quote such values so they arrive whole.
        return f'"""{value}"""' if any(c in value for c in ";#") or value != value.strip() else value
    raise _fail(host, f"{where} is a {type(value).__name__}: grafana.ini values are strings, numbers or booleans")


def ini(host: str, defaults: Mapping[str, Any], overrides: Any) -> str:
    """grafana.ini's text: the role's settings with grafana_ini ({section: {key: value}}) merged over them."""
    if not isinstance(overrides, Mapping):
        raise _fail(host, f"grafana_ini must be a mapping of sections to settings, not {type(overrides).__name__}")
    merged: dict[str, dict[str, Any]] = {str(s): dict(v) for s, v in defaults.items()}
    for section, settings in overrides.items():
        if not isinstance(section, str) or not section:
            raise _fail(host, f"grafana_ini has a section named {section!r}: sections are non-empty strings")
        if not isinstance(settings, Mapping):
            raise _fail(host, f"grafana_ini.{section} must be a mapping of settings, not {type(settings).__name__}")
        for key, value in settings.items():
            if (section, key) in SECRET_SETTINGS:
                raise _fail(
                    host,
                    f"grafana_ini.{section}.{key} holds a secret: set {SECRET_SETTINGS[(section, key)]} (from Ansible "
                    "Vault) instead, the role writes it to a file only Grafana reads",
                )
            merged.setdefault(section, {})[str(key)] = value
    lines = ["; Written by llm_monitor.fleet (role grafana): change grafana_ini, not this file."]
    for section, settings in merged.items():
        lines.append(f"\n[{section}]")
        for key, value in settings.items():
            if value is None:
                continue
            lines.append(f"{key} = {_ini_value(host, f'grafana_ini.{section}.{key}', value)}")
    return "\n".join(lines) + "\n"


def uid(prefix: str, name: str) -> str:
    """A stable datasource uid from a host name: Grafana's characters, at most 40, a hash suffix when shortened."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "-", name.lower())
    full = f"{prefix}-{clean}"
    if len(full) <= UID_MAX:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{full[: UID_MAX - 9].rstrip('-')}-{digest}"


def _check_extra(host: str, index: int, source: Any) -> dict[str, Any]:
    where = f"grafana_datasources_extra[{index}]"
    if not isinstance(source, Mapping):
        raise _fail(host, f"{where} must be a mapping (name, type, url, uid, ...)")
    unknown = sorted(set(source) - DATASOURCE_KEYS)
    if unknown:
        raise _fail(
            host,
            f"{where} has unknown keys {', '.join(map(str, unknown))} (Grafana's datasource fields: "
            f"{', '.join(sorted(DATASOURCE_KEYS))})",
        )
    for key in ("name", "type", "uid"):
        if not isinstance(source.get(key), str) or not source[key]:
            raise _fail(host, f"{where}.{key} is required (a non-empty string)")
    if source["type"] not in DATASOURCE_TYPES:
        raise _fail(
            host,
            f"{where}.type={source['type']!r} is not a datasource type Grafana has without plugins ("
            f"{', '.join(sorted(DATASOURCE_TYPES))})",
        )
    if not UID.match(source["uid"]):
        raise _fail(host, f"{where}.uid={source['uid']!r}: at most {UID_MAX} letters, digits, '-' or '_'")
    if "isDefault" in source:
        raise _fail(host, f"{where}.isDefault: choose the default datasource with grafana_default_datasource_uid")
    return {"access": "proxy", "editable": False, **source}


def datasources(
    host: str,
    prometheus: Iterable[Mapping[str, str]],
    default_prometheus_url: str,
    alertmanager_url: str,
    loki_url: str,
    extra: Any,
    default_uid: str,
) -> dict[str, Any]:
    """The provisioned datasources file: one Prometheus per monitoring host (when there are several), the default
    Prometheus, Alertmanager, Loki when deployed, and the user's own; uids stable, one default."""

    def prom(name: str, ds_uid: str, url: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "prometheus",
            "uid": ds_uid,
            "access": "proxy",
            "url": url,
            "editable": False,
            "jsonData": {"httpMethod": "POST", "prometheusType": "Prometheus"},
        }

    servers = list(prometheus)
    if not default_prometheus_url:
        raise _fail(
            host,
            "no host of the monitoring group runs Prometheus and grafana_default_prometheus_url is empty: "
            "Grafana would have no data",
        )
    sources = [prom("Prometheus", "llm-monitor-prometheus", default_prometheus_url)]
    if len(servers) > 1:
        sources += [
            prom(f"Prometheus {s['host']}", uid("llm-monitor-prometheus", s["host"]), s["url"]) for s in servers
        ]
    if alertmanager_url:
        sources.append(
            {
                "name": "Alertmanager",
                "type": "alertmanager",
                "uid": "llm-monitor-alertmanager",
                "access": "proxy",
                "url": alertmanager_url,
                "editable": False,
                "jsonData": {"implementation": "prometheus", "handleGrafanaManagedAlerts": False},
            }
        )
    if loki_url:
        sources.append(
            {
                "name": "Loki",
                "type": "loki",
                "uid": "llm-monitor-loki",
                "access": "proxy",
                "url": loki_url,
                "editable": False,
            }
        )
    if not isinstance(extra, list):
        raise _fail(host, f"grafana_datasources_extra must be a list of datasources, not {type(extra).__name__}")
    sources += [_check_extra(host, i, s) for i, s in enumerate(extra)]
    for key in ("uid", "name"):
        seen: set[str] = set()
        for source in sources:
            if source[key] in seen:
                raise _fail(host, f"two datasources have the {key} {source[key]!r} (grafana_datasources_extra)")
            seen.add(source[key])
    uids = [s["uid"] for s in sources]
    if default_uid not in uids:
        raise _fail(
            host, f"grafana_default_datasource_uid={default_uid!r} is none of the datasources ({', '.join(uids)})"
        )
    for source in sources:
        source["isDefault"] = source["uid"] == default_uid
    # prune: a datasource no longer in the file is deleted from Grafana.
    return {"apiVersion": 1, "prune": True, "datasources": sources}


def _json_error(path: Path, exc: json.JSONDecodeError) -> str:
    return f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"


def dashboards(host: str, sources: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """The dashboard files to provision: every <dir>/<folder>/*.json of each source ({path, var}), checked.

    A file that is not a JSON object with a title, a bad or duplicate uid, or two files for one destination is
    refused naming both. Returns [{src, dest, folder, file, uid, title}] sorted by dest (<folder>/<file>).
    """
    found: dict[str, dict[str, str]] = {}
    by_uid: dict[str, str] = {}
    for source in sources:
        root = Path(os.path.normpath(source["path"]))
        var = source["var"]
        if not root.is_dir():
            raise _fail(host, f"{var}: {root} is not a directory on the controller")
        for path in sorted(root.glob("*/*.json")):
            folder = path.parent.name
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise _fail(host, f"{var}: dashboard {_json_error(path, exc)}; nothing was changed") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise _fail(host, f"{var}: dashboard {path} cannot be read ({exc})") from None
            if not isinstance(data, dict) or not isinstance(data.get("title"), str) or not data["title"].strip():
                raise _fail(host, f"{var}: dashboard {path} must be a JSON object with a non-empty title")
            dash_uid = data.get("uid")
            if not isinstance(dash_uid, str) or not UID.match(dash_uid):
                raise _fail(
                    host,
                    f"{var}: dashboard {path} has uid {dash_uid!r}: every provisioned dashboard needs a stable uid "
                    f"of at most {UID_MAX} letters, digits, '-' or '_' (links and bookmarks use it)",
                )
            if dash_uid in by_uid:
                raise _fail(host, f"{var}: dashboards {by_uid[dash_uid]} and {path} have the same uid {dash_uid!r}")
            dest = f"{folder}/{path.name}"
            if dest in found:
                raise _fail(host, f"{var}: {found[dest]['src']} and {path} would both be {dest} in Grafana")
            by_uid[dash_uid] = str(path)
            found[dest] = {
                "src": str(path),
                "dest": dest,
                "folder": folder,
                "file": path.name,
                "uid": dash_uid,
                "title": data["title"],
            }
    return [found[d] for d in sorted(found)]

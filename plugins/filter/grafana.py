"""Filters of the grafana role: grafana.ini, the datasources, the dashboards to provision, the secrets' checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.llm_monitor.fleet.plugins.module_utils import fleet_catalog, fleet_inventory
from ansible_collections.llm_monitor.fleet.plugins.module_utils import grafana_config as gc

DOCUMENTATION = r"""
name: grafana_ini
short_description: grafana.ini's text from the role's settings and grafana_ini merged over them
description:
  - C(grafana_check_secrets) refuses a missing or well-known admin password or secret_key (never showing them).
  - C(grafana_ini) merges grafana_ini ({section, {key, value}}) over the role's settings and renders grafana.ini,
    refusing secrets passed through it, nested values and multi-line values.
  - C(grafana_prometheus_servers) lists the Prometheus of every monitoring host ({host, url}).
  - C(grafana_datasources) builds the provisioned datasources file (stable uids, one default, prune).
  - C(grafana_dashboards) lists and checks the dashboard files (<dir>/<folder>/*.json) on the controller.
  - Every failure names the host and the variable.
positional: host
options:
  _input:
    description: The role's settings (grafana_ini) or the hostvars (grafana_prometheus_servers).
    type: raw
    required: true
  host:
    description: The inventory hostname, for the messages.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Render grafana.ini
  ansible.builtin.set_fact:
    _ini: "{{ _grafana_ini_settings | llm_monitor.fleet.grafana_ini(inventory_hostname, grafana_ini) }}"
"""

RETURN = r"""
_value:
  description: The rendered text, the datasources document, or the list of dashboards ({src, folder, file, uid, title}).
  type: raw
"""


def _checked(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except fleet_inventory.InventoryError as exc:
        raise AnsibleFilterError(f"llm_monitor.fleet: {exc}") from None


def grafana_check_secrets(admin_user: Any, host: str, admin_password: Any, secret_key: Any) -> bool:
    return bool(_checked(gc.check_secrets, host, admin_user, admin_password, secret_key))


def grafana_ini(defaults: Mapping[str, Any], host: str, overrides: Any) -> str:
    return str(_checked(gc.ini, host, defaults, overrides))


def _server_url(hostvars: Mapping[str, Any], host: str, port_var: str, default_port: int, tls_var: str) -> str:
    host_vars = hostvars[host]
    address = fleet_inventory.scrape_address(host, host_vars)
    port = fleet_inventory.port(host, port_var, host_vars.get(port_var, default_port))
    scheme = "https" if host_vars.get(tls_var) else "http"
    return f"{scheme}://{address.rendered}:{port}"


def grafana_prometheus_servers(
    hostvars: Mapping[str, Any], groups: Mapping[str, Iterable[str]], group: str = "monitoring"
) -> list[dict[str, str]]:
    """{host, url} of the Prometheus of every host of the group, in inventory order."""
    return [
        {
            "host": h,
            "url": _checked(_server_url, hostvars, h, "prometheus_port", 9090, "prometheus_web_tls_server_config"),
        }
        for h in groups.get(group, [])
        if fleet_catalog.truthy(hostvars[h].get("prometheus_enabled", True))
    ]


def grafana_alertmanager_url(hostvars: Mapping[str, Any], groups: Mapping[str, Iterable[str]], host: str) -> str:
    """This host's Alertmanager if it runs one, else the first of the monitoring group's; empty: none."""
    members = [
        h for h in groups.get("monitoring", []) if fleet_catalog.truthy(hostvars[h].get("alertmanager_enabled", True))
    ]
    if not members:
        return ""
    chosen = host if host in members else members[0]
    return str(_checked(_server_url, hostvars, chosen, "alertmanager_port", 9093, "alertmanager_web_tls_server_config"))


def grafana_datasources(
    prometheus: list[Mapping[str, str]],
    host: str,
    default_prometheus_url: str,
    alertmanager_url: str,
    loki_url: str,
    extra: Any,
    default_uid: str,
) -> dict[str, Any]:
    """Empty default_prometheus_url: this host's Prometheus if it runs one, else the first monitoring host's."""
    if not default_prometheus_url:
        own = [p["url"] for p in prometheus if p["host"] == host]
        default_prometheus_url = (own or [p["url"] for p in prometheus] or [""])[0]
    return dict(
        _checked(
            gc.datasources, host, prometheus, default_prometheus_url, alertmanager_url, loki_url, extra, default_uid
        )
    )


def grafana_dashboards(collection_dir: str, host: str, extra_dirs: Any) -> list[dict[str, str]]:
    """The collection's dashboards, then those of grafana_dashboards_dirs (a list of controller directories)."""
    if not isinstance(extra_dirs, list) or not all(isinstance(d, str) and d for d in extra_dirs):
        raise AnsibleFilterError(
            f"llm_monitor.fleet: host '{host}': grafana_dashboards_dirs must be a list of directories on the controller"
        )
    sources = [{"path": collection_dir, "var": "the collection's files/dashboards"}]
    sources += [{"path": d, "var": f"grafana_dashboards_dirs[{i}]"} for i, d in enumerate(extra_dirs)]
    return list(_checked(gc.dashboards, host, sources))


class FilterModule:
    """llm_monitor.fleet Grafana filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "grafana_check_secrets": grafana_check_secrets,
            "grafana_ini": grafana_ini,
            "grafana_prometheus_servers": grafana_prometheus_servers,
            "grafana_alertmanager_url": grafana_alertmanager_url,
            "grafana_datasources": grafana_datasources,
            "grafana_dashboards": grafana_dashboards,
        }

"""Filters of the alertmanager role and of Prometheus' wiring to it: the config, the cluster peers, the targets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.llm_monitor.fleet.plugins.module_utils import alertmanager_config as am
from ansible_collections.llm_monitor.fleet.plugins.module_utils import fleet_catalog, fleet_inventory

DOCUMENTATION = r"""
name: alertmanager_config
short_description: alertmanager.yml and its secret files from the alertmanager role's variables
description:
  - Checks alertmanager_receivers, alertmanager_default_receiver, alertmanager_route, alertmanager_routes,
    alertmanager_team_receivers, alertmanager_severity_receivers, alertmanager_inhibit_rules,
    alertmanager_time_intervals and alertmanager_global, and returns C({config, secrets}); fails naming the host
    and the variable on bad input. Secrets go to files (C(secrets) lists path and content), never into the config.
positional: host, secrets_dir
options:
  _input:
    description: The role's variables, by name.
    type: dict
    required: true
  host:
    description: The inventory hostname, for the messages.
    type: str
    required: true
  secrets_dir:
    description: The directory of the secret files.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Render alertmanager.yml
  ansible.builtin.set_fact:
    _am: >-
      {{ {'alertmanager_receivers': alertmanager_receivers}
         | llm_monitor.fleet.alertmanager_config(inventory_hostname, '/etc/alertmanager/secrets') }}
"""

RETURN = r"""
_value:
  description: C(config) (alertmanager.yml as a mapping) and C(secrets) (a list of C({path, content})).
  type: dict
"""


def _checked(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except fleet_inventory.InventoryError as exc:
        raise AnsibleFilterError(f"llm_monitor.fleet: {exc}") from None


def alertmanager_config(variables: Mapping[str, Any], host: str, secrets_dir: str) -> dict[str, Any]:
    return dict(_checked(am.config, host, variables, secrets_dir))


def _members(hostvars: Mapping[str, Any], groups: Mapping[str, Iterable[str]], group: str) -> list[str]:
    return [h for h in groups.get(group, []) if fleet_catalog.truthy(hostvars[h].get("alertmanager_enabled", True))]


def _endpoint(hostvars: Mapping[str, Any], host: str, port_var: str, default_port: int) -> str:
    address = fleet_inventory.scrape_address(host, hostvars[host])
    port = fleet_inventory.port(host, port_var, hostvars[host].get(port_var, default_port))
    return f"{address.rendered}:{port}"


def alertmanager_endpoints(
    hostvars: Mapping[str, Any],
    groups: Mapping[str, Iterable[str]],
    group: str = "monitoring",
    port_var: str = "alertmanager_port",
    default_port: int = 9093,
    exclude: str | None = None,
) -> list[str]:
    """address:port of every Alertmanager of the group (each host's scrape address and port variable), sorted.

    With port_var alertmanager_cluster_port these are the gossip peers; exclude leaves out the host itself.
    """
    return sorted(
        _checked(_endpoint, hostvars, h, port_var, default_port)
        for h in _members(hostvars, groups, group)
        if h != exclude
    )


class FilterModule:
    """llm_monitor.fleet Alertmanager filters."""

    def filters(self) -> dict[str, Any]:
        return {"alertmanager_config": alertmanager_config, "alertmanager_endpoints": alertmanager_endpoints}

"""Filter of the prometheus role: the collection's alert rule catalog rendered against the inventory."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.llm_monitor.fleet.plugins.module_utils import alert_catalog as ar
from ansible_collections.llm_monitor.fleet.plugins.module_utils import fleet_inventory
from ansible_collections.llm_monitor.fleet.plugins.module_utils import slo_rules as slo

DOCUMENTATION = r"""
name: alert_rules
short_description: Prometheus rule files from the collection's alert catalog and the hosts' overrides
description:
  - Reads every C(*.yml) of the catalog directory (files/rules/catalog), applies each host's
    C(fleet_alert_<alert>_threshold), C(_for) and C(_enabled) variables, and returns the rule files by file name,
    one rule per distinct setting of an alert (not one per host). Fails naming the host and the variable on an
    unknown alert, a threshold that is not a number, a C(for) that is not a duration.
positional: hostvars, hosts, runbook_base, disabled_groups
options:
  _input:
    description: The catalog directory.
    type: path
    required: true
  hostvars:
    description: Ansible's hostvars.
    type: dict
    required: true
  hosts:
    description: The hosts whose variables count (normally groups['all']).
    type: list
    elements: str
    required: true
  runbook_base:
    description: Base URL of the runbooks (docs/runbooks); C(<base>/<group>.md#<alert>) goes into each alert.
    type: str
    required: true
  disabled_groups:
    description: Catalog groups not to render (e.g. ollama).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Render the per-model SLO rules
  ansible.builtin.set_fact:
    _slo: "{{ fleet_slos | llm_monitor.fleet.slo_rules(inventory_hostname, 'https://wiki.example.com/runbooks') }}"

- name: Render the alert rules
  ansible.builtin.set_fact:
    _rules: >-
      {{ (role_path ~ '/../../files/rules/catalog')
         | llm_monitor.fleet.alert_rules(hostvars, groups['all'], 'https://wiki.example.com/runbooks') }}
"""

RETURN = r"""
_value:
  description: "{file name: rule file as a mapping ({groups: [...]})}"
  type: dict
"""


def read_catalog(directory: str | Path) -> list[ar.Group]:
    path = Path(directory)
    files = sorted(path.glob("*.yml"))
    if not files:
        raise AnsibleFilterError(f"llm_monitor.fleet: no alert catalog (*.yml) in {path}")
    try:
        groups: list[ar.Group] = ar.load_catalog({f.name: yaml.safe_load(f.read_text(encoding="utf-8")) for f in files})
        return groups
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise AnsibleFilterError(f"llm_monitor.fleet: the alert catalog in {path} is broken: {exc}") from None


def alert_rules(
    directory: str,
    hostvars: Mapping[str, Mapping[str, Any]],
    hosts: Iterable[str],
    runbook_base: str,
    disabled_groups: Iterable[str] = (),
) -> dict[str, Any]:
    groups = read_catalog(directory)
    unknown = sorted(set(disabled_groups) - {g.name for g in groups})
    if unknown:
        raise AnsibleFilterError(
            f"llm_monitor.fleet: prometheus_alert_groups_disabled names no catalog group: {', '.join(unknown)} "
            f"(groups: {', '.join(g.name for g in groups)})"
        )
    try:
        rendered: dict[str, Any] = ar.render(groups, hostvars, list(hosts), runbook_base, disabled_groups)
        return rendered
    except fleet_inventory.InventoryError as exc:
        raise AnsibleFilterError(f"llm_monitor.fleet: {exc}") from None


def slo_rules(fleet_slos: Any, host: str, runbook_base: str) -> dict[str, Any]:
    """``fleet_slos`` -> {"llm_monitor_slo.rules.yml": rule file}, or {} without SLOs."""
    try:
        rendered = slo.render(slo.objectives(host, fleet_slos), runbook_base)
    except fleet_inventory.InventoryError as exc:
        raise AnsibleFilterError(f"llm_monitor.fleet: {exc}") from None
    return {} if rendered is None else {"llm_monitor_slo.rules.yml": rendered}


class FilterModule:
    """llm_monitor.fleet alert rule filters."""

    def filters(self) -> dict[str, Any]:
        return {"alert_rules": alert_rules, "slo_rules": slo_rules}

"""Checks the roles' preflights share: they return the problems found, worded for the user, never raise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.llm_monitor.fleet.plugins.module_utils import fleet_inventory

DOCUMENTATION = r"""
name: fleet_port_problems
short_description: The problems of a host's port variables, as messages naming the host and the variable
description:
  - Takes a mapping of port variable name to value and returns a list of messages, empty when every value is a
    port number 1-65535 (an integer or a string of digits) and no two variables give the same port.
positional: host
options:
  _input:
    description: Port variable name to value.
    type: dict
    required: true
  host:
    description: The inventory hostname, for the messages.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Check the ports
  ansible.builtin.assert:
    that: _problems | length == 0
    fail_msg: "{{ _problems | join('; ') }}"
  vars:
    _problems: >-
      {{ {'node_exporter_port': node_exporter_port} | llm_monitor.fleet.fleet_port_problems(inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: Messages, one per problem.
  type: list
  elements: str
"""


def fleet_port_problems(ports: Mapping[str, Any], host: str) -> list[str]:
    problems: list[str] = []
    owners: dict[int, str] = {}
    for var, value in ports.items():
        try:
            number = fleet_inventory.port(host, str(var), value)
        except fleet_inventory.InventoryError as exc:
            problems.append(str(exc))
            continue
        if number in owners:
            problems.append(
                f"host '{host}': {owners[number]}={number} and {var}={number} give two services one port; "
                "give each its own port"
            )
        owners.setdefault(number, str(var))
    return problems


class FilterModule:
    """llm_monitor.fleet preflight checks."""

    def filters(self) -> dict[str, Any]:
        return {"fleet_port_problems": fleet_port_problems}

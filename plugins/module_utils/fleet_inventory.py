"""Strict reading of what users write in the inventory: ports, scrape addresses and fleet labels.

Each function either returns the value in the one form the collection uses, or raises InventoryError with a
message that names the host and the variable, so a play can stop in its preflight, before any host changes.
Nothing here imports Ansible; the filters wrap InventoryError in AnsibleFilterError.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_catalog import reserved_label

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# RFC 1123 labels; underscores are accepted as resolvers and /etc/hosts do, dots separate labels.
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}\.?$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?$")
ADDRESS_VARS = ("fleet_scrape_address", "ansible_host")


class InventoryError(ValueError):
    """A value in the inventory the collection refuses; the message names the host and the variable."""


@dataclass(frozen=True)
class Address:
    #: as it goes into a target or URL: 10.0.0.5, [fd00::10], gpu-01.example.com
    rendered: str
    #: the same machine's address in one spelling, for the duplicate check
    key: str
    #: the variable it came from (or "the inventory hostname")
    source: str


def port(host: str, var: str, value: Any) -> int:
    """A port number 1-65535, given as an integer or a string of digits."""
    # Booleans are ints in Python: a port of `true` is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not re.fullmatch(r"[0-9]+", str(value)):
        raise InventoryError(f"host '{host}': {var}={value!r} is not a port number (1-65535)")
    number = int(value)
    if not 1 <= number <= 65535:
        raise InventoryError(f"host '{host}': {var}={number} is outside 1-65535 (not a port number)")
    return number


def _address_hint(value: str) -> str:
    if value != value.strip() or any(c.isspace() for c in value):
        return "remove the spaces"
    if "://" in value:
        return "give the address alone; the job's scheme and metrics_path say how it is scraped"
    if "/" in value:
        return "give one address, not a network or a path"
    if re.search(r"(^[^:]*|\]):[0-9]*$", value):
        return "give the address alone; the port comes from the job's port variable (e.g. node_exporter_port)"
    return "expected a host name, an IPv4 address or an IPv6 address (with or without brackets)"


def address(host: str, var: str, value: Any) -> Address:
    """A host name, IPv4 or IPv6 address as Prometheus needs it in a target (IPv6 bracketed)."""
    if not isinstance(value, str) or not value:
        raise InventoryError(
            f"host '{host}': {var}={value!r} is not a host name, IPv4 or IPv6 address (expected a non-empty string)"
        )
    inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ip = ipaddress.ip_address(inner)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.version == 6:
            return Address(f"[{ip.compressed}]", ip.compressed.lower(), var)
        if inner == value:
            return Address(str(ip), str(ip), var)
    # Something made of digits and dots that is not an IPv4 address (10.0.0, 10.0.0.256) is a typo, not a name.
    elif inner == value and HOST_NAME.match(value) and not re.fullmatch(r"[0-9.]+", value):
        return Address(value, value.lower().rstrip("."), var)
    raise InventoryError(
        f"host '{host}': {var}={value!r} is not a host name, IPv4 or IPv6 address ({_address_hint(value)})"
    )


def scrape_address(host: str, host_vars: Mapping[str, Any]) -> Address:
    """The address a host is scraped at: fleet_scrape_address, else ansible_host, else its inventory name."""
    for var in ADDRESS_VARS:
        value = host_vars.get(var)
        if value is not None:
            return address(host, var, value)
    return address(host, "the inventory hostname", host)


def _kind(value: Any) -> str:
    """What YAML made of a value, in YAML's words (Ansible wraps values in its own types)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    return type(value).__name__


def labels(host: str, value: Any, also_reserved: Mapping[str, str] | None = None) -> dict[str, str]:
    """fleet_labels: label names Prometheus accepts and no exporter emits, each with a non-empty string value."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InventoryError(
            f"host '{host}': fleet_labels must be a mapping of label name to value, got {type(value).__name__}"
        )
    extra = also_reserved or {}
    result: dict[str, str] = {}
    for name, label_value in value.items():
        if not isinstance(name, str) or not LABEL_NAME.match(name):
            raise InventoryError(
                f"host '{host}': fleet_labels key {name!r} is not a valid Prometheus label name "
                "([a-zA-Z_][a-zA-Z0-9_]*)"
            )
        owner = extra.get(name) or reserved_label(name)
        if owner is not None:
            raise InventoryError(
                f"host '{host}': fleet_labels key {name!r} is reserved: {owner} sets a label of that name, which "
                f"Prometheus would rename to exported_{name.lstrip('_')}; choose another name"
            )
        if not isinstance(label_value, str):
            shown = "null" if label_value is None else repr(label_value)
            raise InventoryError(
                f"host '{host}': fleet_labels.{name}={shown} is not a string ({_kind(label_value)}): write "
                f'label values as quoted strings ({name}: "..."); YAML reads 012 as the number 10, true as a boolean '
                "and an empty value as null"
            )
        if not label_value.strip():
            raise InventoryError(
                f"host '{host}': fleet_labels.{name} is empty; Prometheus drops empty labels, leave it out instead"
            )
        result[name] = label_value
    return result

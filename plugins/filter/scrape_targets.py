"""Derive Prometheus file_sd target lists from the Ansible inventory.

Every scrape job of the fleet is described once (name, inventory group, the host variable that holds the
exporter's port, the variable that switches it off); this filter turns the inventory into one file_sd list
per job. It refuses bad input with a message naming the host and the variable, so a play can stop before
anything changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: fleet_scrape_targets
short_description: Derive one Prometheus file_sd target list per scrape job from the inventory
description:
  - Takes C(hostvars), C(groups) and the job catalog (C(prometheus_scrape_jobs)) and returns a mapping of
    job name to a file_sd list, one target group per host, with C(instance) set to the inventory hostname and
    the host's C(fleet_labels) added. A host without the job's C(enabled_var) counts as enabled unless the job
    sets C(enabled_default) false.
  - Fails, naming the host and the variable, on a port outside 1-65535, an invalid label, a job without a
    group or port variable, or two jobs (or hosts) claiming the same address and port.
positional: groups, jobs
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  groups:
    description: C(groups).
    type: dict
    required: true
  jobs:
    description: The job catalog.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Derive targets
  ansible.builtin.set_fact:
    _targets: "{{ hostvars | llm_monitor.fleet.fleet_scrape_targets(groups, prometheus_scrape_jobs) }}"
"""

RETURN = r"""
_value:
  description: Job name to list of C({targets, labels}) target groups.
  type: dict
"""

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = frozenset({"instance", "job"})
ADDRESS_VARS = ("fleet_scrape_address", "ansible_host")


def _fail(message: str) -> None:
    raise AnsibleFilterError(f"llm_monitor.fleet: {message}")


def _port(host: str, var: str, value: Any) -> int:
    # Booleans are ints in Python; a port of `true` is a typo, not 1.
    if isinstance(value, bool):
        _fail(f"host '{host}': {var}={value!r} is not a port number (1-65535)")
    try:
        port = int(str(value).strip())
    except ValueError:
        _fail(f"host '{host}': {var}={value!r} is not a port number (1-65535)")
    if not 1 <= port <= 65535:
        _fail(f"host '{host}': {var}={port} is outside 1-65535")
    return port


def _labels(host: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        _fail(f"host '{host}': fleet_labels must be a mapping of label name to value, got {type(value).__name__}")
    labels: dict[str, str] = {}
    for name, label_value in value.items():
        name = str(name)
        if not LABEL_NAME.match(name) or name.startswith("__"):
            _fail(f"host '{host}': fleet_labels key {name!r} is not a valid Prometheus label name")
        if name in RESERVED_LABELS:
            _fail(f"host '{host}': fleet_labels key {name!r} is reserved (set by the collection)")
        if isinstance(label_value, (Mapping, list, tuple, set)):
            _fail(f"host '{host}': fleet_labels.{name} must be a scalar, got {type(label_value).__name__}")
        labels[name] = "" if label_value is None else str(label_value)
    return labels


def _enabled(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "off", "0", "")
    return bool(value)


def _check_job(job: Any, index: int) -> None:
    if not isinstance(job, Mapping):
        _fail(f"prometheus_scrape_jobs[{index}] must be a mapping")
    for key in ("name", "group", "port_var", "default_port"):
        if key not in job:
            _fail(f"prometheus_scrape_jobs[{index}] ({job.get('name', '?')}) lacks '{key}'")
    if not LABEL_NAME.match(str(job["name"])):
        _fail(f"prometheus_scrape_jobs[{index}]: job name {job['name']!r} must match [a-zA-Z_][a-zA-Z0-9_]*")


def _unique(hosts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(hosts))


def fleet_scrape_targets(
    hostvars: Mapping[str, Any], groups: Mapping[str, Iterable[str]], jobs: list[Mapping[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Return {job name: file_sd target groups} for every job in the catalog."""
    names = [str(job.get("name")) if isinstance(job, Mapping) else "" for job in jobs]
    for index, job in enumerate(jobs):
        _check_job(job, index)
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        _fail(f"prometheus_scrape_jobs defines job(s) {sorted(duplicates)} more than once")

    # HostVars builds a host's variables on each lookup: fetch each host once.
    host_cache: dict[str, Mapping[str, Any]] = {}
    claimed: dict[tuple[str, int], tuple[str, str, str]] = {}
    result: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        job_name = str(job["name"])
        port_var = str(job["port_var"])
        enabled_var = job.get("enabled_var")
        target_groups: list[dict[str, Any]] = []
        for host in _unique(groups.get(str(job["group"]), [])):
            hv = host_cache.get(host)
            if hv is None:
                hv = hostvars[host]
                host_cache[host] = hv
            if enabled_var and not _enabled(hv.get(enabled_var, job.get("enabled_default", True))):
                continue
            port = _port(host, port_var, hv.get(port_var, job["default_port"]))
            address = next((str(hv[var]) for var in ADDRESS_VARS if hv.get(var)), host)
            key = (address, port)
            if key in claimed:
                other_job, other_host, other_var = claimed[key]
                _fail(
                    f"host '{host}': {port_var}={port} gives {address}:{port} for job '{job_name}', "
                    f"but job '{other_job}' already scrapes {address}:{port} on host '{other_host}' "
                    f"({other_var}); give one of them another port"
                )
            claimed[key] = (job_name, host, port_var)
            labels = {"instance": host}
            labels.update(_labels(host, hv.get("fleet_labels")))
            target_groups.append({"targets": [f"{address}:{port}"], "labels": labels})
        result[job_name] = target_groups
    return result


HTTP_CLIENT_KEYS = ("basic_auth", "authorization", "tls_config")


def fleet_http_sd_configs(
    targets: Mapping[str, list[Mapping[str, Any]]],
    jobs: list[Mapping[str, Any]],
    source_job: str,
    path: str,
    refresh_interval: str = "30s",
) -> list[dict[str, Any]]:
    """Return one Prometheus http_sd_configs entry per target of ``source_job``.

    ``targets`` is fleet_scrape_targets' output: the exporter hosts it lists (same address and port logic as
    their own scrape job) each serve an HTTP SD document at ``path``. The source job's scheme, basic_auth,
    authorization and tls_config apply to the SD requests too (same exporter, same web config).
    """
    if not str(path).startswith("/"):
        _fail(f"the HTTP SD path {path!r} must start with '/'")
    job = next((j for j in jobs if isinstance(j, Mapping) and j.get("name") == source_job), None)
    if job is None:
        return []
    scheme = str(job.get("scheme", "http"))
    client = {key: job[key] for key in HTTP_CLIENT_KEYS if key in job}
    configs: list[dict[str, Any]] = []
    for group in targets.get(source_job, []):
        for target in group.get("targets", []):
            entry: dict[str, Any] = {"url": f"{scheme}://{target}{path}", "refresh_interval": refresh_interval}
            entry.update(client)
            configs.append(entry)
    return configs


class FilterModule:
    """llm_monitor.fleet inventory filters."""

    def filters(self) -> dict[str, Any]:
        return {"fleet_scrape_targets": fleet_scrape_targets, "fleet_http_sd_configs": fleet_http_sd_configs}

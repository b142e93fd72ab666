"""Derive Prometheus scrape jobs and file_sd target lists from the Ansible inventory.

Every scrape job of the fleet is described once: the collection's exporters by the exporter catalog
(plugins/module_utils/fleet_catalog.py), other jobs by an entry of prometheus_scrape_jobs (name, inventory group,
the host variable that holds the port, the variable that switches it off). These filters turn the inventory into
one file_sd list per job. They refuse bad input with a message naming the host and the variable, so the preflight
play stops before anything changes on any host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.llm_monitor.fleet.plugins.module_utils import fleet_catalog, fleet_inventory

DOCUMENTATION = r"""
name: fleet_scrape_targets
short_description: Derive one Prometheus file_sd target list per scrape job from the inventory
description:
  - Takes C(hostvars), C(groups) and the effective job list (see C(fleet_scrape_jobs)) and returns a mapping of
    job name to a file_sd list, one target group per host, sorted by host, with C(instance) and C(host) set to the
    inventory hostname and the host's C(fleet_labels) added. A job with C(exporter) takes its hosts and ports from
    the exporter catalog; another job scrapes the hosts of its C(group) that do not set its C(enabled_var) false
    (a host without it counts as C(enabled_default), default true).
  - Fails, naming the host and the variable, on a port that is not 1-65535, an address that is not a host name,
    IPv4 or IPv6 address, a label that is invalid, reserved or not a string, a job without a group or port
    variable, or two jobs (or hosts) claiming the same address and port (host names compared without case).
positional: groups, jobs, reserved
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
    description: The effective job list.
    type: list
    elements: dict
    required: true
  reserved:
    description: Further label names fleet_labels must not take, with who sets them (external labels).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Derive targets
  ansible.builtin.set_fact:
    _targets: "{{ hostvars | llm_monitor.fleet.fleet_scrape_targets(groups, prometheus_scrape_jobs
                  | llm_monitor.fleet.fleet_scrape_jobs) }}"
"""

RETURN = r"""
_value:
  description: Job name to list of C({targets, labels}) target groups.
  type: dict
"""

JOB_REQUIRED = ("name", "group", "port_var", "default_port")
# Facts of earlier releases, which the catalog replaced: a job that still reads one would scrape every host.
_RETIRED_ENABLED_VARS = {f"exporters_{e.name}_active": e for e in fleet_catalog.EXPORTERS}


def _fail(message: str) -> None:
    raise AnsibleFilterError(f"llm_monitor.fleet: {message}")


def _checked(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except fleet_inventory.InventoryError as exc:
        raise AnsibleFilterError(f"llm_monitor.fleet: {exc}") from None


def _check_job(job: Any, index: int) -> None:
    if not isinstance(job, Mapping):
        _fail(f"prometheus_scrape_jobs[{index}] must be a mapping")
    if "exporter" in job and job["exporter"] not in fleet_catalog.BY_NAME:
        _fail(
            f"prometheus_scrape_jobs[{index}] ({job.get('name', '?')}): exporter {job['exporter']!r} is not one of "
            f"{', '.join(fleet_catalog.BY_NAME)}"
        )
    for key in JOB_REQUIRED:
        if key not in job and "exporter" not in job:
            _fail(f"prometheus_scrape_jobs[{index}] ({job.get('name', '?')}) lacks '{key}'")
    if not fleet_inventory.LABEL_NAME.match(str(job.get("name", ""))):
        _fail(f"prometheus_scrape_jobs[{index}]: job name {job.get('name')!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
    retired = _RETIRED_ENABLED_VARS.get(str(job.get("enabled_var")))
    if retired is not None:
        _fail(
            f"prometheus_scrape_jobs[{index}] ({job['name']}): enabled_var {job['enabled_var']} no longer exists; "
            f"the exporter catalog decides where the {retired.name} exporter runs: drop this job, or write "
            f"'exporter: {retired.name}' instead of group, port_var and enabled_var"
        )


def fleet_scrape_jobs(jobs: list[Mapping[str, Any]], include_exporters: bool = True) -> list[dict[str, Any]]:
    """The effective job list: prometheus_scrape_jobs, then one job per catalog exporter.

    A job of prometheus_scrape_jobs named like a catalog job is merged over it (e.g. to add scheme and tls_config).
    """
    if not isinstance(jobs, list):
        _fail(f"prometheus_scrape_jobs must be a list of jobs, got {type(jobs).__name__}")
    catalog = {
        e.job: {
            "name": e.job,
            "exporter": e.name,
            "group": "all",
            "port_var": e.port_var,
            "default_port": e.default_port,
        }
        for e in (fleet_catalog.EXPORTERS if include_exporters else ())
    }
    effective: list[dict[str, Any]] = []
    for job in jobs:
        if isinstance(job, Mapping) and job.get("name") in catalog:
            effective.append({**catalog.pop(str(job["name"])), **job})
        else:
            effective.append(dict(job) if isinstance(job, Mapping) else job)
    return effective + list(catalog.values())


def fleet_exporters(
    host_vars: Mapping[str, Any], groups: Mapping[str, Iterable[str]], host: str
) -> list[dict[str, Any]]:
    """Every catalog exporter for one host: name, job, unit, enabled, port (checked), port_var, user, docker."""
    decided: list[dict[str, Any]] = fleet_catalog.exporters_for_host(host_vars, groups, host)
    for exporter in decided:
        if exporter["enabled"]:
            exporter["port"] = _checked(fleet_inventory.port, host, exporter["port_var"], exporter["port"])
    return decided


def _enabled(value: Any) -> bool:
    enabled: bool = fleet_catalog.truthy(value)
    return enabled


def fleet_scrape_targets(
    hostvars: Mapping[str, Any],
    groups: Mapping[str, Iterable[str]],
    jobs: list[Mapping[str, Any]],
    reserved: Mapping[str, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Return {job name: file_sd target groups} for every job, targets sorted by inventory hostname."""
    for index, job in enumerate(jobs):
        _check_job(job, index)
    names = [str(job["name"]) for job in jobs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        _fail(f"prometheus_scrape_jobs defines job(s) {duplicates} more than once")

    # HostVars builds a host's variables on each lookup: fetch each host once, and decide each once.
    host_cache: dict[str, Mapping[str, Any]] = {}
    addresses: dict[str, fleet_inventory.Address] = {}
    host_labels: dict[str, dict[str, str]] = {}
    exporter_cache: dict[str, dict[str, dict[str, Any]]] = {}
    claimed: dict[tuple[str, int], tuple[str, str, str]] = {}
    result: dict[str, list[dict[str, Any]]] = {}

    def vars_of(host: str) -> Mapping[str, Any]:
        if host not in host_cache:
            host_cache[host] = hostvars[host]
        return host_cache[host]

    for job in jobs:
        job_name = str(job["name"])
        exporter = job.get("exporter")
        target_groups: list[dict[str, Any]] = []
        for host in sorted(set(groups.get(str(job.get("group", "all")), []))):
            hv = vars_of(host)
            if exporter is not None:
                if host not in exporter_cache:
                    exporter_cache[host] = {e["name"]: e for e in fleet_exporters(hv, groups, host)}
                decided = exporter_cache[host][str(exporter)]
                if not decided["enabled"]:
                    continue
                port_var, port = str(decided["port_var"]), int(decided["port"])
            else:
                enabled_var = job.get("enabled_var")
                if enabled_var and not _enabled(hv.get(enabled_var, job.get("enabled_default", True))):
                    continue
                port_var = str(job["port_var"])
                port = _checked(fleet_inventory.port, host, port_var, hv.get(port_var, job["default_port"]))
            if host not in addresses:
                addresses[host] = _checked(fleet_inventory.scrape_address, host, hv)
                host_labels[host] = _checked(fleet_inventory.labels, host, hv.get("fleet_labels"), reserved)
            address = addresses[host]
            key = (address.key, port)
            if key in claimed:
                other_job, other_host, other_var = claimed[key]
                _fail(
                    f"host '{host}': {port_var}={port} gives {address.rendered}:{port} ({address.source}) for job "
                    f"'{job_name}', but job '{other_job}' already scrapes that address and port on host "
                    f"'{other_host}' ({other_var}); give one of them another port, or remove the host that names "
                    "the same machine twice (host names are compared without case)"
                )
            claimed[key] = (job_name, host, port_var)
            labels = {"instance": host, "host": host, **host_labels[host]}
            target_groups.append({"targets": [f"{address.rendered}:{port}"], "labels": labels})
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
    their own scrape job, IPv6 bracketed) each serve an HTTP SD document at ``path``. The source job's scheme,
    basic_auth, authorization and tls_config apply to the SD requests too (same exporter, same web config).
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
        return {
            "fleet_scrape_targets": fleet_scrape_targets,
            "fleet_scrape_jobs": fleet_scrape_jobs,
            "fleet_exporters": fleet_exporters,
            "fleet_http_sd_configs": fleet_http_sd_configs,
        }

"""The inventory -> file_sd derivation: what Prometheus will scrape, and what bad inventories are refused."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.llm_monitor.fleet.plugins.filter.scrape_targets import (
    fleet_http_sd_configs,
    fleet_scrape_targets,
)

JOBS: list[dict[str, Any]] = [
    {"name": "prometheus", "group": "monitoring", "port_var": "prometheus_port", "default_port": 9090},
    {
        "name": "node",
        "group": "all",
        "port_var": "node_exporter_port",
        "default_port": 9100,
        "enabled_var": "node_exporter_enabled",
    },
]


def _inventory(**hosts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    groups: dict[str, list[str]] = {"all": list(hosts)}
    for name, hv in hosts.items():
        for group in hv.pop("_groups", []):
            groups.setdefault(group, []).append(name)
    return hosts, groups


def test_every_host_is_a_node_target_named_by_inventory_hostname_with_its_labels() -> None:
    hostvars, groups = _inventory(
        mon1={"_groups": ["monitoring"], "ansible_host": "10.0.0.1"},
        gpu1={"ansible_host": "10.0.0.2", "fleet_labels": {"datacenter": "dc1", "rack": 12}},
        llm1={},
    )
    targets = fleet_scrape_targets(hostvars, groups, JOBS)
    assert targets["prometheus"] == [{"targets": ["10.0.0.1:9090"], "labels": {"instance": "mon1"}}]
    assert targets["node"] == [
        {"targets": ["10.0.0.1:9100"], "labels": {"instance": "mon1"}},
        {"targets": ["10.0.0.2:9100"], "labels": {"instance": "gpu1", "datacenter": "dc1", "rack": "12"}},
        {"targets": ["llm1:9100"], "labels": {"instance": "llm1"}},
    ]


def test_per_host_port_scrape_address_and_switched_off_exporters() -> None:
    hostvars, groups = _inventory(
        a={"node_exporter_port": "9111", "fleet_scrape_address": "a.internal", "ansible_host": "192.0.2.1"},
        b={"node_exporter_enabled": False},
        c={"node_exporter_enabled": "no"},
    )
    targets = fleet_scrape_targets(hostvars, groups, JOBS)
    assert targets["node"] == [{"targets": ["a.internal:9111"], "labels": {"instance": "a"}}]
    assert targets["prometheus"] == []


def test_a_host_in_several_groups_is_scraped_once_per_job() -> None:
    hostvars, groups = _inventory(a={"_groups": ["monitoring"]})
    groups["all"] = ["a", "a"]
    assert len(fleet_scrape_targets(hostvars, groups, JOBS)["node"]) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "host 'gpu1': node_exporter_port=0 is outside 1-65535"),
        (65536, "host 'gpu1': node_exporter_port=65536 is outside 1-65535"),
        ("http", "host 'gpu1': node_exporter_port='http' is not a port number"),
        (True, "host 'gpu1': node_exporter_port=True is not a port number"),
    ],
)
def test_a_port_outside_the_range_is_refused_naming_host_and_variable(value: Any, message: str) -> None:
    hostvars, groups = _inventory(gpu1={"node_exporter_port": value})
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fleet_scrape_targets(hostvars, groups, JOBS)


def test_two_jobs_claiming_one_address_and_port_are_refused() -> None:
    hostvars, groups = _inventory(mon1={"_groups": ["monitoring"], "node_exporter_port": 9090})
    with pytest.raises(AnsibleFilterError) as err:
        fleet_scrape_targets(hostvars, groups, JOBS)
    text = str(err.value)
    assert "host 'mon1'" in text and "node_exporter_port=9090" in text
    assert "job 'prometheus' already scrapes mon1:9090" in text and "(prometheus_port)" in text


def test_two_hosts_behind_one_address_and_port_are_refused() -> None:
    hostvars, groups = _inventory(a={"ansible_host": "10.0.0.9"}, b={"ansible_host": "10.0.0.9"})
    with pytest.raises(AnsibleFilterError, match=r"host 'b'.*10\.0\.0\.9:9100.*host 'a'"):
        fleet_scrape_targets(hostvars, groups, JOBS)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"data-center": "x"}, "fleet_labels key 'data-center' is not a valid Prometheus label name"),
        ({"__meta": "x"}, "fleet_labels key '__meta' is not a valid"),
        ({"instance": "x"}, "fleet_labels key 'instance' is reserved"),
        ({"team": ["a", "b"]}, "fleet_labels.team must be a scalar"),
        (["team"], "fleet_labels must be a mapping"),
    ],
)
def test_bad_labels_are_refused_naming_the_host(labels: Any, message: str) -> None:
    hostvars, groups = _inventory(gpu1={"fleet_labels": labels})
    with pytest.raises(AnsibleFilterError, match=f"host 'gpu1': {message}"):
        fleet_scrape_targets(hostvars, groups, JOBS)


def test_a_malformed_job_catalog_is_refused() -> None:
    hostvars, groups = _inventory(a={})
    with pytest.raises(AnsibleFilterError, match=r"prometheus_scrape_jobs\[0\] \(x\) lacks 'port_var'"):
        fleet_scrape_targets(hostvars, groups, [{"name": "x", "group": "all", "default_port": 1}])
    with pytest.raises(AnsibleFilterError, match="more than once"):
        fleet_scrape_targets(hostvars, groups, [JOBS[1], JOBS[1]])


def test_hostvars_are_read_once_per_host() -> None:
    reads: list[str] = []

    class CountingHostVars(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            reads.append(key)
            return super().__getitem__(key)

    hostvars, groups = _inventory(mon1={"_groups": ["monitoring"]}, a={}, b={})
    fleet_scrape_targets(CountingHostVars(hostvars), groups, JOBS)
    assert sorted(reads) == ["a", "b", "mon1"]


VLLM_JOBS: list[dict[str, Any]] = [
    {
        "name": "vllm_exporter",
        "group": "all",
        "port_var": "exporters_vllm_port",
        "default_port": 9436,
        "enabled_var": "exporters_vllm_active",
        "enabled_default": False,
    },
]


def test_enabled_default_false_skips_hosts_without_the_variable() -> None:
    hostvars, groups = _inventory(
        llm1={"exporters_vllm_active": True, "ansible_host": "10.0.0.7"},
        llm2={"exporters_vllm_active": False},
        plain={},
    )
    targets = fleet_scrape_targets(hostvars, groups, VLLM_JOBS)
    assert targets["vllm_exporter"] == [{"targets": ["10.0.0.7:9436"], "labels": {"instance": "llm1"}}]


def test_http_sd_configs_point_at_each_exporter_host_with_its_port() -> None:
    hostvars, groups = _inventory(
        llm1={"exporters_vllm_active": True, "ansible_host": "10.0.0.7"},
        llm2={"exporters_vllm_active": True, "exporters_vllm_port": 19436, "fleet_scrape_address": "llm2.example"},
        plain={},
    )
    targets = fleet_scrape_targets(hostvars, groups, VLLM_JOBS)
    configs = fleet_http_sd_configs(targets, VLLM_JOBS, "vllm_exporter", "/sd/vllm", "30s")
    assert configs == [
        {"url": "http://10.0.0.7:9436/sd/vllm", "refresh_interval": "30s"},
        {"url": "http://llm2.example:19436/sd/vllm", "refresh_interval": "30s"},
    ]


def test_http_sd_configs_reuse_the_exporter_jobs_scheme_and_credentials() -> None:
    auth = {"username": "prometheus", "password_file": "/etc/prometheus/exporter.pass"}
    jobs = [dict(VLLM_JOBS[0], scheme="https", basic_auth=auth, tls_config={"ca_file": "/ca.pem"})]
    targets = {"vllm_exporter": [{"targets": ["h:9436"], "labels": {"instance": "h"}}]}
    assert fleet_http_sd_configs(targets, jobs, "vllm_exporter", "/sd/vllm") == [
        {
            "url": "https://h:9436/sd/vllm",
            "refresh_interval": "30s",
            "basic_auth": auth,
            "tls_config": {"ca_file": "/ca.pem"},
        }
    ]


def test_http_sd_configs_are_empty_without_the_source_job_or_hosts() -> None:
    assert fleet_http_sd_configs({}, JOBS, "vllm_exporter", "/sd/vllm") == []
    assert fleet_http_sd_configs({"vllm_exporter": []}, VLLM_JOBS, "vllm_exporter", "/sd/vllm") == []
    with pytest.raises(AnsibleFilterError, match="must start with '/'"):
        fleet_http_sd_configs({}, VLLM_JOBS, "vllm_exporter", "sd/vllm")

"""The inventory -> file_sd derivation: what Prometheus will scrape, and what bad inventories are refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.llm_monitor.fleet.plugins.filter.preflight import fleet_port_problems
from ansible_collections.llm_monitor.fleet.plugins.filter.scrape_targets import (
    fleet_exporters,
    fleet_http_sd_configs,
    fleet_scrape_jobs,
    fleet_scrape_targets,
)
from ansible_collections.llm_monitor.fleet.plugins.module_utils import fleet_catalog

REPO = Path(__file__).resolve().parents[2]

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


def _labels(host: str, **extra: str) -> dict[str, str]:
    return {"instance": host, "host": host, **extra}


def _refused(message: str, hostvars: dict[str, Any], groups: dict[str, list[str]], jobs: Any = JOBS) -> str:
    with pytest.raises(AnsibleFilterError) as err:
        fleet_scrape_targets(hostvars, groups, jobs)
    text = str(err.value)
    assert message in text, text
    return text


def test_every_host_is_a_node_target_named_by_inventory_hostname_with_its_labels() -> None:
    hostvars, groups = _inventory(
        mon1={"_groups": ["monitoring"], "ansible_host": "10.0.0.1"},
        gpu1={"ansible_host": "10.0.0.2", "fleet_labels": {"datacenter": "dc1", "rack": "12"}},
        llm1={},
    )
    targets = fleet_scrape_targets(hostvars, groups, JOBS)
    assert targets["prometheus"] == [{"targets": ["10.0.0.1:9090"], "labels": _labels("mon1")}]
    # sorted by inventory hostname, each with instance and host = its inventory hostname
    assert targets["node"] == [
        {"targets": ["10.0.0.2:9100"], "labels": _labels("gpu1", datacenter="dc1", rack="12")},
        {"targets": ["llm1:9100"], "labels": _labels("llm1")},
        {"targets": ["10.0.0.1:9100"], "labels": _labels("mon1")},
    ]


def test_reordering_hosts_in_the_inventory_changes_no_target_list() -> None:
    hosts = {"b": {"ansible_host": "10.0.0.2"}, "a": {"ansible_host": "10.0.0.1"}, "c": {}}
    forward, groups = _inventory(**{k: dict(v) for k, v in hosts.items()})
    backward, groups_reversed = _inventory(**{k: dict(hosts[k]) for k in reversed(list(hosts))})
    assert fleet_scrape_targets(forward, groups, JOBS) == fleet_scrape_targets(backward, groups_reversed, JOBS)
    assert [t["labels"]["instance"] for t in fleet_scrape_targets(forward, groups, JOBS)["node"]] == ["a", "b", "c"]


def test_per_host_port_scrape_address_and_switched_off_exporters() -> None:
    hostvars, groups = _inventory(
        a={"node_exporter_port": "9111", "fleet_scrape_address": "a.internal", "ansible_host": "192.0.2.1"},
        b={"node_exporter_enabled": False},
        c={"node_exporter_enabled": "no"},
    )
    targets = fleet_scrape_targets(hostvars, groups, JOBS)
    assert targets["node"] == [{"targets": ["a.internal:9111"], "labels": _labels("a")}]
    assert targets["prometheus"] == []


def test_a_host_in_several_groups_is_scraped_once_per_job() -> None:
    hostvars, groups = _inventory(a={"_groups": ["monitoring"]})
    groups["all"] = ["a", "a"]
    assert len(fleet_scrape_targets(hostvars, groups, JOBS)["node"]) == 1


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("fd00::10", "[fd00::10]:9100"),
        ("[fd00::10]", "[fd00::10]:9100"),
        ("FD00:0:0::10", "[fd00::10]:9100"),
        ("::1", "[::1]:9100"),
        ("10.0.0.5", "10.0.0.5:9100"),
        ("gpu-01.example.com", "gpu-01.example.com:9100"),
        ("gpu_01", "gpu_01:9100"),
    ],
)
def test_addresses_are_rendered_as_prometheus_needs_them(address: str, target: str) -> None:
    hostvars, groups = _inventory(gpu1={"ansible_host": address})
    assert fleet_scrape_targets(hostvars, groups, JOBS)["node"][0]["targets"] == [target]


def test_ipv6_http_sd_urls_are_bracketed() -> None:
    hostvars, groups = _inventory(llm1={"ansible_host": "fd00::7", "_groups": ["vllm_servers"]})
    jobs = fleet_scrape_jobs(JOBS)
    targets = fleet_scrape_targets(hostvars, groups, jobs)
    assert fleet_http_sd_configs(targets, jobs, "vllm_exporter", "/sd/vllm") == [
        {"url": "http://[fd00::7]:9436/sd/vllm", "refresh_interval": "30s"}
    ]


@pytest.mark.parametrize(
    ("address", "hint"),
    [
        ("10.0.0.5:22", "the port comes from the job's port variable"),
        ("[fd00::10]:9100", "the port comes from the job's port variable"),
        (" 10.0.0.6 ", "remove the spaces"),
        ("10.0.0.6 ", "remove the spaces"),
        ("http://10.0.0.9", "the job's scheme and metrics_path"),
        ("10.0.0.0/24", "not a network or a path"),
        ("10.0.0.256", "expected a host name"),
        ("10.0.0", "expected a host name"),
        ("gpu-.example.com", "expected a host name"),
        ("", "expected a non-empty string"),
        (10, "expected a non-empty string"),
    ],
)
def test_an_address_that_is_not_a_host_ipv4_or_ipv6_is_refused_naming_host_and_variable(
    address: Any, hint: str
) -> None:
    hostvars, groups = _inventory(gpu1={"fleet_scrape_address": address})
    text = _refused(
        f"host 'gpu1': fleet_scrape_address={address!r} is not a host name, IPv4 or IPv6 address", hostvars, groups
    )
    assert hint in text


def test_the_address_variable_named_is_the_one_the_address_came_from() -> None:
    hostvars, groups = _inventory(gpu1={"ansible_host": "10.0.0.5:22"})
    _refused("host 'gpu1': ansible_host='10.0.0.5:22' is not a host name", hostvars, groups)
    hostvars, groups = _inventory(**{"gpu 1": {}})
    _refused("host 'gpu 1': the inventory hostname='gpu 1' is not a host name", hostvars, groups)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "host 'gpu1': node_exporter_port=0 is outside 1-65535"),
        (65536, "host 'gpu1': node_exporter_port=65536 is outside 1-65535"),
        ("http", "host 'gpu1': node_exporter_port='http' is not a port number (1-65535)"),
        ("abc", "host 'gpu1': node_exporter_port='abc' is not a port number (1-65535)"),
        (" 9100", "host 'gpu1': node_exporter_port=' 9100' is not a port number (1-65535)"),
        (9100.0, "host 'gpu1': node_exporter_port=9100.0 is not a port number (1-65535)"),
        (True, "host 'gpu1': node_exporter_port=True is not a port number (1-65535)"),
        (None, "host 'gpu1': node_exporter_port=None is not a port number (1-65535)"),
    ],
)
def test_a_port_that_is_not_a_port_number_is_refused_naming_host_and_variable(value: Any, message: str) -> None:
    hostvars, groups = _inventory(gpu1={"node_exporter_port": value})
    _refused(message, hostvars, groups)


def test_ports_given_as_strings_work() -> None:
    hostvars, groups = _inventory(gpu1={"node_exporter_port": "9110"})
    assert fleet_scrape_targets(hostvars, groups, JOBS)["node"][0]["targets"] == ["gpu1:9110"]


def test_two_jobs_claiming_one_address_and_port_are_refused() -> None:
    hostvars, groups = _inventory(mon1={"_groups": ["monitoring"], "node_exporter_port": 9090})
    text = _refused("host 'mon1': node_exporter_port=9090 gives mon1:9090", hostvars, groups)
    assert "job 'prometheus' already scrapes that address and port on host 'mon1' (prometheus_port)" in text


def test_two_hosts_behind_one_address_and_port_are_refused() -> None:
    hostvars, groups = _inventory(a={"ansible_host": "10.0.0.9"}, b={"ansible_host": "10.0.0.9"})
    _refused("host 'b': node_exporter_port=9100 gives 10.0.0.9:9100 (ansible_host)", hostvars, groups)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"ansible_host": "fd00::10"}, {"ansible_host": "[fd00::10]"}),
        ({"ansible_host": "fd00::10"}, {"ansible_host": "FD00:0::10"}),
        ({"ansible_host": "gpu07.example.com"}, {"ansible_host": "GPU07.Example.com."}),
    ],
)
def test_one_address_in_two_spellings_is_one_machine(first: dict[str, Any], second: dict[str, Any]) -> None:
    hostvars, groups = _inventory(a=first, b=second)
    _refused("host 'b': node_exporter_port=9100 gives", hostvars, groups)


def test_two_inventory_names_differing_only_in_case_are_one_machine_scraped_twice() -> None:
    hostvars, groups = _inventory(**{"GPU07.example.com": {}, "gpu07.example.com": {}})
    text = _refused("host 'gpu07.example.com': node_exporter_port=9100", hostvars, groups)
    assert "host 'GPU07.example.com'" in text and "host names are compared without case" in text


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"data-center": "x"}, "fleet_labels key 'data-center' is not a valid Prometheus label name"),
        ({"__meta": "x"}, "fleet_labels key '__meta' is reserved"),
        ({"instance": "x"}, "fleet_labels key 'instance' is reserved"),
        ({"host": "x"}, "fleet_labels key 'host' is reserved"),
        ({"team": ["a", "b"]}, "fleet_labels.team=['a', 'b'] is not a string (a list)"),
        ({1: "x"}, "fleet_labels key 1 is not a valid Prometheus label name"),
        (["team"], "fleet_labels must be a mapping"),
    ],
)
def test_bad_labels_are_refused_naming_the_host(labels: Any, message: str) -> None:
    hostvars, groups = _inventory(gpu1={"fleet_labels": labels})
    _refused(f"host 'gpu1': {message}", hostvars, groups)


@pytest.mark.parametrize("name", ["gpu", "model", "model_name", "name", "container", "le", "quantile", "engine"])
def test_labels_the_exporters_and_upstreams_emit_are_refused_with_who_emits_them(name: str) -> None:
    hostvars, groups = _inventory(gpu1={"fleet_labels": {name: "x"}})
    text = _refused(f"host 'gpu1': fleet_labels key '{name}' is reserved: ", hostvars, groups)
    assert fleet_catalog.RESERVED_LABELS[name] in text and f"exported_{name}" in text


@pytest.mark.parametrize("name", ["exported_gpu", "litellm_team"])
def test_a_name_prometheus_or_the_litellm_job_makes_is_refused(name: str) -> None:
    hostvars, groups = _inventory(gpu1={"fleet_labels": {name: "x"}})
    _refused(f"fleet_labels key '{name}' is reserved", hostvars, groups)


@pytest.mark.parametrize("name", ["team", "user"])
def test_litellms_caller_labels_are_free_for_the_fleet(name: str) -> None:
    hostvars, groups = _inventory(gpu1={"fleet_labels": {name: "x"}})
    assert fleet_scrape_targets(hostvars, groups, JOBS)["node"][0]["labels"][name] == "x"


def test_external_label_names_are_refused_when_the_caller_reserves_them() -> None:
    hostvars, groups = _inventory(gpu1={"fleet_labels": {"replica": "a"}})
    with pytest.raises(AnsibleFilterError, match="fleet_labels key 'replica' is reserved: this Prometheus"):
        fleet_scrape_targets(hostvars, groups, JOBS, {"replica": "this Prometheus"})


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "a boolean"), (10, "a number"), (1.5, "a number"), (None, "null")],
)
def test_label_values_that_are_not_strings_are_refused_saying_how_to_write_them(value: Any, kind: str) -> None:
    hostvars, groups = _inventory(gpu1={"fleet_labels": {"rack": value}})
    shown = "null" if value is None else repr(value)
    text = _refused(f"host 'gpu1': fleet_labels.rack={shown} is not a string ({kind})", hostvars, groups)
    assert 'rack: "..."' in text and "012 as the number 10" in text


def test_an_empty_label_value_is_refused() -> None:
    hostvars, groups = _inventory(gpu1={"fleet_labels": {"rack": " "}})
    _refused("host 'gpu1': fleet_labels.rack is empty", hostvars, groups)


def test_a_malformed_job_catalog_is_refused() -> None:
    hostvars, groups = _inventory(a={})
    with pytest.raises(AnsibleFilterError, match=r"prometheus_scrape_jobs\[0\] \(x\) lacks 'port_var'"):
        fleet_scrape_targets(hostvars, groups, [{"name": "x", "group": "all", "default_port": 1}])
    with pytest.raises(AnsibleFilterError, match="more than once"):
        fleet_scrape_targets(hostvars, groups, [JOBS[1], JOBS[1]])
    with pytest.raises(AnsibleFilterError, match="exporter 'nope' is not one of gpu, containers"):
        fleet_scrape_targets(hostvars, groups, [{"name": "x", "exporter": "nope"}])


def test_a_job_reading_a_retired_active_fact_is_refused_with_what_to_write() -> None:
    hostvars, groups = _inventory(a={})
    job = {
        "name": "c",
        "group": "all",
        "port_var": "p",
        "default_port": 1,
        "enabled_var": "exporters_containers_active",
    }
    with pytest.raises(AnsibleFilterError, match="write 'exporter: containers'"):
        fleet_scrape_targets(hostvars, groups, [job])


def test_hostvars_are_read_once_per_host() -> None:
    reads: list[str] = []

    class CountingHostVars(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            reads.append(key)
            return super().__getitem__(key)

    hostvars, groups = _inventory(mon1={"_groups": ["monitoring"]}, a={}, b={})
    fleet_scrape_targets(CountingHostVars(hostvars), groups, fleet_scrape_jobs(JOBS))
    assert sorted(reads) == ["a", "b", "mon1"]


# --- the exporter catalog's jobs -------------------------------------------------------------------------------


def test_the_effective_jobs_are_the_users_then_one_per_catalog_exporter() -> None:
    jobs = fleet_scrape_jobs(JOBS)
    assert [j["name"] for j in jobs] == [
        "prometheus",
        "node",
        "gpu",
        "containers",
        "vllm_exporter",
        "litellm_exporter",
        "langfuse",
        "ollama_proxy",
    ]
    assert [j["name"] for j in fleet_scrape_jobs(JOBS, False)] == ["prometheus", "node"]


def test_a_user_job_named_like_an_exporter_job_is_merged_over_it() -> None:
    jobs = fleet_scrape_jobs([*JOBS, {"name": "gpu", "scheme": "https"}])
    gpu = next(j for j in jobs if j["name"] == "gpu")
    assert gpu == {
        "name": "gpu",
        "exporter": "gpu",
        "group": "all",
        "port_var": "exporters_gpu_port",
        "default_port": 9835,
        "scheme": "https",
    }
    assert [j["name"] for j in jobs].count("gpu") == 1


def test_exporter_jobs_scrape_where_the_catalog_says_the_exporter_runs() -> None:
    hostvars, groups = _inventory(
        gpu1={"_groups": ["gpu_hosts"], "ansible_host": "10.0.0.2"},
        gpu2={"_groups": ["gpu_hosts"], "exporters_gpu_enabled": False},
        plain={"exporters_gpu_enabled": "true", "exporters_gpu_port": "19835"},
        docker1={"_fleet_docker_socket_found": True},
        llm1={"_groups": ["vllm_servers", "ollama_servers"]},
        lf1={"exporters_langfuse_projects": [{"name": "p"}]},
    )
    targets = fleet_scrape_targets(hostvars, groups, fleet_scrape_jobs(JOBS))
    assert {job: [t["targets"][0] for t in groups_] for job, groups_ in targets.items() if job not in ("node",)} == {
        "prometheus": [],
        "gpu": ["10.0.0.2:9835", "plain:19835"],
        "containers": ["docker1:9417"],
        "vllm_exporter": ["llm1:9436"],
        "litellm_exporter": [],
        "langfuse": ["lf1:9438"],
        "ollama_proxy": ["llm1:9439"],
    }


def test_an_enabled_exporters_bad_port_is_refused_naming_its_variable() -> None:
    hostvars, groups = _inventory(gpu1={"_groups": ["gpu_hosts"], "exporters_gpu_port": "abc"})
    _refused(
        "host 'gpu1': exporters_gpu_port='abc' is not a port number (1-65535)",
        hostvars,
        groups,
        fleet_scrape_jobs(JOBS),
    )
    # switched off, its port does not matter
    hostvars["gpu1"]["exporters_gpu_enabled"] = False
    fleet_scrape_targets(hostvars, groups, fleet_scrape_jobs(JOBS))


def test_the_catalog_decides_users_and_docker_access_per_host() -> None:
    groups = {"all": ["h"], "vllm_servers": ["h"]}
    decided = {e["name"]: e for e in fleet_exporters({"_fleet_docker_socket_found": True}, groups, "h")}
    assert decided["vllm"]["enabled"] and decided["vllm"]["docker"]
    assert decided["containers"]["enabled"] and decided["containers"]["docker"]
    assert decided["ollama_proxy"]["user"] == "llm-monitor-ollama-proxy"
    assert decided["ollama_proxy"]["unit"] == "llm-monitor-exporter-ollama_proxy.service"
    no_docker = {
        e["name"]: e
        for e in fleet_exporters(
            {
                "_fleet_docker_socket_found": True,
                "exporters_vllm_docker": False,
                "exporters_containers_docker_access": "cgroups",
                "exporters_vllm_user": "svc-vllm",
            },
            groups,
            "h",
        )
    }
    assert not no_docker["vllm"]["docker"] and not no_docker["containers"]["docker"]
    assert no_docker["vllm"]["user"] == "svc-vllm"


def test_port_problems_name_the_host_and_the_variables() -> None:
    assert fleet_port_problems({"a_port": 9100, "b_port": "9101"}, "h") == []
    assert fleet_port_problems({"a_port": "abc"}, "h") == ["host 'h': a_port='abc' is not a port number (1-65535)"]
    assert fleet_port_problems({"a_port": 9100, "b_port": "9100"}, "h") == [
        "host 'h': a_port=9100 and b_port=9100 give two services one port; give each its own port"
    ]


# --- vLLM's HTTP SD --------------------------------------------------------------------------------------------

VLLM_JOBS: list[dict[str, Any]] = [{"name": "vllm_exporter", "exporter": "vllm"}]


def test_http_sd_configs_point_at_each_exporter_host_with_its_port() -> None:
    hostvars, groups = _inventory(
        llm1={"exporters_vllm_enabled": True, "ansible_host": "10.0.0.7"},
        llm2={"exporters_vllm_enabled": True, "exporters_vllm_port": 19436, "fleet_scrape_address": "llm2.example"},
        plain={},
    )
    jobs = fleet_scrape_jobs(VLLM_JOBS)
    targets = fleet_scrape_targets(hostvars, groups, jobs)
    configs = fleet_http_sd_configs(targets, jobs, "vllm_exporter", "/sd/vllm", "30s")
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


def test_every_label_of_the_recorded_expositions_is_reserved() -> None:
    """A label an exporter of the collection emits is one a fleet label may not take (it would be renamed
    exported_<name> by Prometheus and the dashboards would read the wrong one)."""
    names: set[str] = set()
    for path in sorted((REPO / "tests/unit/fixtures").glob("**/*.prom")):
        for line in path.read_text().splitlines():
            if not line.startswith("#") and "{" in line:
                names |= set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', line.split("{", 1)[1].rsplit("}", 1)[0]))
    unknown = sorted(n for n in names if fleet_catalog.reserved_label(n) is None and n not in ("datacenter", "rack"))
    assert not unknown, f"labels of recorded expositions no entry of RESERVED_LABELS covers: {unknown}"

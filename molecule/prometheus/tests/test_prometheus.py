"""What a user of llm_monitor.fleet.prometheus notices on the monitoring hosts of the scenario."""

from __future__ import annotations

import json
import os
import time

import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("monitoring")
ALL_HOSTS = sorted(RUNNER.get_hosts("all"))
API = "http://127.0.0.1:9090"


def _get(host, path: str) -> str:
    return host.check_output(f"curl -fsS --max-time 5 '{API}{path}'")


def _query(host, expr: str) -> list[dict]:
    body = json.loads(
        host.check_output(f"curl -fsS --max-time 5 --get --data-urlencode %s '{API}/api/v1/query'", f"query={expr}")
    )
    assert body["status"] == "success"
    return body["data"]["result"]


def _active_targets(host) -> list[dict]:
    return json.loads(_get(host, "/api/v1/targets?state=active"))["data"]["activeTargets"]


def test_service_is_active_and_enabled(host):
    service = host.service("prometheus")
    assert service.is_running
    assert service.is_enabled


def test_process_runs_as_prometheus(host):
    pid = host.check_output("systemctl show -p MainPID --value prometheus.service")
    assert int(pid) > 0
    assert host.file(f"/proc/{pid}").user == "prometheus"
    assert host.user("prometheus").shell == "/usr/sbin/nologin"


def test_binary_matches_install_method(host):
    exec_start = host.check_output("systemctl show -p ExecStart --value prometheus.service")
    if host.ansible.get_variables()["prometheus_install_method"] == "package":
        assert "path=/usr/bin/prometheus " in exec_start
        assert host.package("prometheus").is_installed
    else:
        assert "path=/usr/local/bin/prometheus " in exec_start
        assert host.file("/usr/local/bin/prometheus").is_symlink
        assert host.file("/usr/local/bin/prometheus").linked_to.startswith("/opt/llm_monitor/prometheus-")


def test_config_passes_promtool(host):
    promtool = (
        "/usr/bin/promtool"
        if host.ansible.get_variables()["prometheus_install_method"] == "package"
        else "/usr/local/bin/promtool"
    )
    host.run_expect([0], "%s check config /etc/prometheus/prometheus.yml", promtool)


def test_one_file_sd_file_per_job(host):
    assert host.file("/etc/prometheus/prometheus.yml").is_file
    for job in ("prometheus", "node"):
        sd = host.file(f"/etc/prometheus/file_sd/{job}.yml")
        assert sd.is_file
        assert sd.group == "prometheus"
        assert sd.mode == 0o640
    node_sd = host.file("/etc/prometheus/file_sd/node.yml").content_string
    for name in ALL_HOSTS:
        assert f"{name}:9100" in node_sd


def test_every_inventory_host_is_scraped(host):
    """Every host is up in job node with its inventory name and fleet_labels; both Prometheus servers in job
    prometheus, both Alertmanagers in job alertmanager. Polls for up to 30 s: the first scrape comes within one
    scrape interval."""
    expected = (
        {("node", name) for name in ALL_HOSTS}
        | {("prometheus", name) for name in testinfra_hosts}
        | {("alertmanager", name) for name in testinfra_hosts}
    )
    deadline = time.monotonic() + 30
    while True:
        targets = _active_targets(host)
        seen = {(t["labels"]["job"], t["labels"]["instance"]): t for t in targets}
        if all(key in seen and seen[key]["health"] == "up" for key in expected) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert set(seen) == expected
    for (job, name), target in seen.items():
        assert target["health"] == "up", f"{job}/{name}: {target.get('lastError')}"
        port = {"node": 9100, "prometheus": 9090, "alertmanager": 9093}[job]
        assert target["scrapeUrl"] == f"http://{name}:{port}/metrics"
        labels = RUNNER.get_variables(name).get("fleet_labels", {})
        for key, value in labels.items():
            assert target["labels"][key] == value
    assert seen[("node", "prom-gpu")]["labels"]["rack"] == "r7"
    assert seen[("node", "prom-gpu")]["labels"]["team"] == "research"


def test_config_change_reloads_without_restart(host):
    """side_effect.yml re-ran the role with another scrape interval: same process, new config loaded."""
    record = json.loads(host.file("/var/tmp/molecule-reload.json").content_string)
    assert record["pid_before"] > 0
    assert record["pid_after"] == record["pid_before"]
    assert int(host.check_output("systemctl show -p MainPID --value prometheus.service")) == record["pid_before"]
    assert f"scrape_interval: {record['scrape_interval']}" in host.file("/etc/prometheus/prometheus.yml").content_string
    runtime = json.loads(_get(host, "/api/v1/status/config"))["data"]["yaml"]
    assert f"scrape_interval: {record['scrape_interval']}" in runtime
    assert float(_query(host, "prometheus_config_last_reload_successful")[0]["value"][1]) == 1
    reloaded_at = float(_query(host, "prometheus_config_last_reload_success_timestamp_seconds")[0]["value"][1])
    assert reloaded_at >= record["changed_at"]


def test_each_prometheus_has_its_own_replica_label(host):
    name = host.backend.get_hostname()
    config = host.file("/etc/prometheus/prometheus.yml").content_string
    assert f"replica: {name}" in config, config


def test_identical_external_labels_are_refused_and_nothing_changes(host):
    result = json.loads(host.file("/var/tmp/molecule-same-labels.json").content_string)
    assert not result["accepted"]
    assert result["unchanged"]
    name = host.backend.get_hostname()
    assert f"host '{name}': prometheus_external_labels" in result["msg"], result["msg"]
    assert "cannot be told apart or deduplicated downstream" in result["msg"]


def _rules(host) -> dict[str, list[dict]]:
    groups = json.loads(_get(host, "/api/v1/rules"))["data"]["groups"]
    return {g["name"]: g["rules"] for g in groups}


def test_the_catalog_alert_rules_are_loaded_with_each_hosts_thresholds(host):
    rules = _rules(host)
    assert {"llm_monitor_host", "llm_monitor_monitoring"} <= set(rules), sorted(rules)
    load = sorted(r["query"] for r in rules["llm_monitor_host"] if r["name"] == "HostHighLoad")
    assert len(load) == 2, load  # the default and prom-gpu's 4: one rule per distinct value
    assert any('host!~"prom-gpu"' in q and q.endswith("> 2") for q in load), load
    assert any('host=~"prom-gpu"' in q and q.endswith("> 4") for q in load), load
    (skew,) = [r["query"] for r in rules["llm_monitor_host"] if r["name"] == "HostClockSkew"]
    assert 'host!~"prom-gpu"' in skew, "switched off for prom-gpu"
    for group in rules.values():
        for rule in group:
            assert rule["health"] == "ok", rule
            if rule["type"] == "alerting":
                assert rule["annotations"]["runbook_url"].endswith(f"#{rule['name'].lower()}")


def test_a_threshold_that_is_not_a_number_is_refused_and_nothing_changes(host):
    result = json.loads(host.file("/var/tmp/molecule-bad-threshold.json").content_string)
    assert not result["accepted"]
    assert result["unchanged"]
    assert "host 'prom-gpu': fleet_alert_host_high_load_threshold='hot' is not a number" in result["msg"], result["msg"]

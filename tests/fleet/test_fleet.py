"""site.yml on a real container fleet: hosts scraped from the inventory, idempotence, adding a host, bad input.

The fleet is systemd containers (Debian 12 and 13) built by tests/harness; Prometheus and node_exporter are
real binaries installed by the roles from the archive mirror on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fleet as harness
import pytest
import yaml

# Unique per run, so two checkouts (or a test run beside the demo) never share containers.
NAME = f"fleettest{os.getpid()}"
HOSTS = [
    {
        "name": "mon-1",
        "suite": "bookworm",
        # Also the LiteLLM gateway and Langfuse host: the harness runs a real LiteLLM proxy and a simulated Langfuse
        # there (tests/harness/llm_upstreams.yml). Debian 12, whose Python the LiteLLM wheels are built for.
        "groups": ["monitoring", "litellm_proxies", "langfuse_servers"],
        "labels": {"datacenter": "dc1", "rack": "r01", "team": "platform"},
    },
    {
        "name": "node-1",
        "suite": "trixie",
        # Also a vLLM and Ollama host: the harness runs simulated servers there (tests/harness/llm_upstreams.yml).
        # and given the machine's Docker socket (harness group docker_socket_hosts): the container exporter runs
        # there against the real engine, for the docker-containers dashboard.
        "groups": ["gpu_hosts", "vllm_servers", "ollama_servers", "docker_socket_hosts"],
        "labels": {"datacenter": "dc1", "rack": "r02", "team": "research"},
    },
]
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@pytest.fixture(scope="module")
def fleet() -> Iterator[harness.Fleet]:
    # Prometheus published on 127.0.0.1, as the demo does, so the URLs it prints can be opened.
    fleet = harness.up(NAME, publish=harness.free_port(), hosts=HOSTS)
    try:
        result = harness.converge(fleet, capture=True, check=False)
        assert result.returncode == 0, result.stdout[-5000:]
        yield fleet
    finally:
        harness.down(NAME)


def recap(output: str) -> dict[str, dict[str, int]]:
    return {
        host: {"changed": int(c), "unreachable": int(u), "failed": int(f)} for host, c, u, f in RECAP.findall(output)
    }


def targets(fleet: harness.Fleet) -> dict[tuple[str, str], dict[str, Any]]:
    active = harness.prometheus_api(fleet, "/api/v1/targets")["data"]["activeTargets"]
    return {(t["labels"]["job"], t["labels"]["instance"]): t for t in active}


def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(1)


def exec_in(fleet: harness.Fleet, host: str, *cmd: str) -> str:
    return harness.docker("exec", fleet.container(host), *cmd).stdout


def prometheus_pid(fleet: harness.Fleet) -> str:
    return exec_in(fleet, "mon-1", "systemctl", "show", "-p", "MainPID", "--value", "prometheus").strip()


def config_files(fleet: harness.Fleet) -> dict[str, str]:
    out = exec_in(fleet, "mon-1", "sh", "-c", "sha256sum /etc/prometheus/prometheus.yml /etc/prometheus/file_sd/*.yml")
    return {path: digest for digest, path in (line.split() for line in out.splitlines())}


def all_up(fleet: harness.Fleet, expected: set[tuple[str, str]]) -> bool:
    current = targets(fleet)
    return expected <= set(current) and all(current[key]["health"] == "up" for key in expected)


def query(fleet: harness.Fleet, promql: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = harness.prometheus_api(fleet, "/api/v1/query?query=" + urllib.parse.quote(promql))[
        "data"
    ]["result"]
    return result


def values(fleet: harness.Fleet, promql: str) -> list[float]:
    return [float(r["value"][1]) for r in query(fleet, promql)]


def vllm_native_instance(fleet: harness.Fleet) -> str:
    # The simulated vLLM is the vLLM exporter's static endpoint <container name>:8000 (harness group_vars).
    return f"{fleet.container('node-1')}:8000"


def test_every_inventory_host_is_scraped_with_its_labels(fleet: harness.Fleet) -> None:
    # node-1 is in gpu_hosts: its (simulated) GPU exporter is a target too; in vllm_servers and ollama_servers:
    # the vLLM exporter, the vLLM server it discovered (job vllm, HTTP SD) and the Ollama proxy are targets.
    # mon-1 is in litellm_proxies (the LiteLLM exporter and LiteLLM's own /metrics/) and langfuse_servers.
    # node-1 has a Docker socket (the machine's engine): the containers job scrapes it; mon-1 has none.
    expected = {
        ("node", "mon-1"),
        ("node", "node-1"),
        ("prometheus", "mon-1"),
        ("alertmanager", "mon-1"),
        ("gpu", "node-1"),
        ("vllm_exporter", "node-1"),
        ("ollama_proxy", "node-1"),
        ("vllm", vllm_native_instance(fleet)),
        ("litellm_exporter", "mon-1"),
        ("litellm", "mon-1"),
        ("langfuse", "mon-1"),
        ("containers", "node-1"),
    }
    assert len(expected) == harness.expected_target_count(fleet)
    wait_for(lambda: all_up(fleet, expected), timeout=120)
    current = targets(fleet)
    assert set(current) == expected
    node1 = current[("node", "node-1")]
    assert node1["labels"] == {
        "job": "node",
        "instance": "node-1",
        "host": "node-1",
        "datacenter": "dc1",
        "rack": "r02",
        "team": "research",
    }
    assert node1["scrapeUrl"] == f"http://{fleet.container('node-1')}:9100/metrics"
    # The scraped data is node_exporter's, labelled by inventory hostname.
    cpus = query(fleet, "count by (instance)(node_cpu_seconds_total)")
    assert {r["metric"]["instance"] for r in cpus} == {"mon-1", "node-1"}


def test_every_target_carries_its_inventory_host_so_jobs_join_without_relabelling(fleet: harness.Fleet) -> None:
    expected = {("node", "node-1"), ("vllm", vllm_native_instance(fleet))}
    wait_for(lambda: all_up(fleet, expected), timeout=120)
    hosts = {key: t["labels"].get("host") for key, t in targets(fleet).items()}
    inventory = {h["name"] for h in HOSTS}
    assert all(host in inventory for host in hosts.values()), hosts
    assert hosts[("vllm", vllm_native_instance(fleet))] == "node-1"
    # vLLM's own series (instance <container>:8000) and node_exporter's (instance node-1) meet on `host`.
    wait_for(lambda: len(query(fleet, "vllm:num_requests_running and on(host) node_load1")) > 0, timeout=90)


def _fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # follows redirects (/ -> /classic/graph)
        return int(response.status), response.read().decode("utf-8", "replace")


def test_every_url_the_demo_prints_answers_with_its_page(fleet: harness.Fleet) -> None:
    printed = harness.status(fleet)
    local = re.findall(r"http://127\.0\.0\.1:\d+/\S*", printed)
    assert len(local) == 3, printed
    for url in local:
        status, body = _fetch(url.rstrip(",)"))
        assert status == 200, url
        if "/api/" in url:
            assert '"status":"success"' in body, url
            continue
        # The web UI itself, not Prometheus' "error reading base template" page, and its scripts load too.
        assert "<title>Prometheus" in body and "error" not in body.lower().split("<body", 1)[0], (url, body[:300])
        scripts = re.findall(r'<script src="(/[^"?]+)', body)
        assert scripts, body[:500]
        base = url.split("/", 3)[:3]
        for script in scripts[:3]:
            assert _fetch("/".join(base) + script)[0] == 200, script
    # The targets' scrape URLs it prints are the fleet network's: each answers with metrics from the monitoring host.
    for url in re.findall(r"(http://\S+/metrics\S*)", printed):
        assert "# TYPE" in exec_in(fleet, "mon-1", "curl", "-fsS", "--max-time", "10", url), url


def test_simulated_gpu_metrics_of_the_gpu_host_reach_prometheus(fleet: harness.Fleet) -> None:
    wait_for(lambda: all_up(fleet, {("gpu", "node-1")}))
    target = targets(fleet)[("gpu", "node-1")]
    assert target["scrapeUrl"] == f"http://{fleet.container('node-1')}:9835/metrics"
    assert target["labels"]["team"] == "research"

    def series() -> list[dict[str, Any]]:
        return query(fleet, 'llm_monitor_gpu_utilization_ratio{instance="node-1"}')

    wait_for(lambda: len(series()) > 0)
    # group_vars/gpu_hosts.yml of the harness simulates 4 GPUs.
    assert sorted(r["metric"]["gpu"] for r in series()) == ["0", "1", "2", "3"]
    assert all(r["metric"]["job"] == "gpu" for r in series())
    # Only the host with a Docker socket gets the container exporter; mon-1, without one, does not.
    assert [key for key in targets(fleet) if key[0] == "containers"] == [("containers", "node-1")]


def test_vllm_metrics_reach_prometheus_through_the_exporters_http_sd(fleet: harness.Fleet) -> None:
    container = fleet.container("node-1")
    vllm_key = ("vllm", vllm_native_instance(fleet))
    # The vllm job has no file_sd: Prometheus found the simulated vLLM through node-1's exporter at /sd/vllm.
    wait_for(lambda: all_up(fleet, {("vllm_exporter", "node-1"), ("ollama_proxy", "node-1"), vllm_key}), timeout=90)
    current = targets(fleet)
    assert current[("vllm_exporter", "node-1")]["scrapeUrl"] == f"http://{container}:9436/metrics"
    assert current[("ollama_proxy", "node-1")]["scrapeUrl"] == f"http://{container}:9439/metrics"
    native = current[vllm_key]
    assert native["scrapeUrl"] == f"http://{container}:8000/metrics"
    assert native["discoveredLabels"]["__meta_url"] == f"http://{container}:9436/sd/vllm"
    assert native["labels"]["host"] == "node-1"
    assert native["labels"]["container"] == "simulated-vllm"

    # vLLM's own series, names unchanged, labelled by the SD document (host, container, model) and by vLLM.
    # The SD document names the model once the exporter has read /v1/models (refresh_interval 30 s).
    wait_for(lambda: any("model" in r["metric"] for r in query(fleet, "vllm:num_requests_running")), timeout=90)
    # (A series from before the SD document named the model may linger until it goes stale: take the named one.)
    series = [r for r in query(fleet, "vllm:num_requests_running") if "model" in r["metric"]]
    assert len(series) == 1
    labels = series[0]["metric"]
    assert labels["job"] == "vllm"
    assert labels["instance"] == vllm_native_instance(fleet)
    assert labels["host"] == "node-1"
    assert labels["container"] == "simulated-vllm"
    assert labels["model_name"] == labels["model"] != ""
    # The exporter's status series: the simulated server answers its probes.
    wait_for(lambda: [r["value"][1] for r in query(fleet, 'llm_monitor_vllm_up{instance="node-1"}')] == ["1"])
    # The Ollama proxy reaches the simulated Ollama behind it.
    wait_for(lambda: [r["value"][1] for r in query(fleet, 'llm_monitor_ollama_up{instance="node-1"}')] == ["1"])


TRAFFIC = "/opt/llm_monitor/exporters/venv/bin/llm-monitor-traffic"


def test_llm_traffic_shows_up_in_every_llm_job(fleet: harness.Fleet) -> None:
    # Requests through the Ollama proxy (node-1) and through the real LiteLLM (mon-1, with the master key the
    # exporters role stored for its exporter), sent by the traffic generator the exporters role installed.
    proxy = ["--target", "http://127.0.0.1:11435", "--api", "generate", "--model", "llama3.2"]
    exec_in(fleet, "node-1", TRAFFIC, *proxy, "--count", "8", "--concurrency", "2", "--quiet")
    wait_for(lambda: all_up(fleet, {("litellm", "mon-1"), ("litellm_exporter", "mon-1")}), timeout=120)
    gateway = ["--target", "http://127.0.0.1:4000", "--api", "openai", "--model", "mock-gpt", "--no-stream"]
    key = "--api-key-file=/etc/llm_monitor/exporters/litellm-master-key"
    out = exec_in(fleet, "mon-1", TRAFFIC, *gateway, key, "--count", "5", "--concurrency", "1", "--quiet")
    assert "requests 5 ok 5 " in out, out

    # Ollama proxy: the 8 requests by model, endpoint and status; tokens/s from eval_count/eval_duration.
    ollama = 'sum(llm_monitor_ollama_requests_total{instance="node-1",endpoint="generate",status="200"})'
    wait_for(lambda: values(fleet, ollama) == [8.0], timeout=60)
    wait_for(lambda: values(fleet, 'count(llm_monitor_ollama_tokens_per_second_count{instance="node-1"})') != [])
    # LiteLLM's own /metrics/ (job litellm), names unchanged: the 5 requests to mock-gpt.
    litellm = (
        'sum(litellm_proxy_total_requests_metric_total{job="litellm",instance="mon-1",requested_model="mock-gpt"})'
    )
    wait_for(lambda: values(fleet, litellm) == [5.0], timeout=60)
    # LiteLLM's own `team` label met mon-1's fleet label team=platform: the fleet's stays `team`, LiteLLM's is
    # kept as litellm_team (the litellm job's metric_relabel_configs), none is lost to exported_team.
    assert values(fleet, litellm.replace('requested_model="mock-gpt"', 'requested_model="mock-gpt",team="platform"'))
    assert not query(fleet, '{job="litellm",exported_team!=""}')
    # The LiteLLM exporter (job litellm_exporter): ready, one catalog entry per deployment, no secrets in labels.
    wait_for(lambda: values(fleet, 'llm_monitor_litellm_ready{instance="mon-1"}') == [1.0], timeout=60)
    catalog = query(fleet, 'llm_monitor_litellm_deployment_info{instance="mon-1"}')
    assert sorted(r["metric"]["model_name"] for r in catalog) == ["mock-gpt", "mock-llama"]
    assert all("sk-" not in v for r in catalog for v in r["metric"].values())
    # No database behind this LiteLLM: spend is reported as unavailable rather than as zero.
    assert sum(values(fleet, 'llm_monitor_litellm_spend_available{instance="mon-1"}')) == 0.0
    # The Langfuse exporter (job langfuse): the simulated project's traces, within its 30 s poll interval.
    wait_for(lambda: values(fleet, 'llm_monitor_langfuse_up{instance="mon-1",project="fleet-demo"}') == [1.0], 120)
    assert values(fleet, 'llm_monitor_langfuse_daily_traces{instance="mon-1",project="fleet-demo"}')
    assert sum(values(fleet, 'llm_monitor_langfuse_api_requests_total{instance="mon-1"}')) > 0


def test_every_label_name_in_prometheus_is_reserved_or_a_fleet_label(fleet: harness.Fleet) -> None:
    """The reserved list (plugins/module_utils/fleet_catalog.py) knows every label the exporters and upstreams emit.

    After the traffic test, so that LiteLLM's per-request series (with their caller labels) exist too."""
    from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_catalog import (
        RENAMED_ON_CLASH,
        reserved_label,
    )

    wait_for(lambda: all_up(fleet, {("litellm", "mon-1"), ("langfuse", "mon-1"), ("gpu", "node-1")}), timeout=120)
    fleet_label_names = {name for h in HOSTS for name in h["labels"]} | set(RENAMED_ON_CLASH)
    names = set(harness.prometheus_api(fleet, "/api/v1/labels")["data"])
    unknown = sorted(n for n in names - fleet_label_names if reserved_label(n) is None and n != "__name__")
    assert not unknown, f"label names no entry of RESERVED_LABELS covers: {unknown}"


SIM_BINARY = "/opt/llm_monitor_testkit/venv/bin/llm-monitor-testkit"  # tests/harness/llm_upstreams.yml


def notifications(fleet: harness.Fleet) -> list[dict[str, Any]]:
    """Every webhook payload the fleet's Alertmanagers delivered to the receiver (on mon-1), oldest first."""
    receiver = fleet.container(harness.webhook_host(fleet))
    out = harness.docker("exec", receiver, "sh", "-c", f"cat {harness.WEBHOOK_LOG} 2>/dev/null || true")
    return [json.loads(line)["payload"] for line in out.stdout.splitlines() if line.strip()]


def delivered(fleet: harness.Fleet, status: str, **labels: str) -> list[dict[str, Any]]:
    """The alerts of that status, with those labels, in any delivered notification."""
    return [
        a
        for n in notifications(fleet)
        for a in n["alerts"]
        if a["status"] == status and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def alertmanager_alerts(fleet: harness.Fleet) -> list[dict[str, Any]]:
    out = exec_in(fleet, "mon-1", "curl", "-fsS", "--max-time", "5", "http://127.0.0.1:9093/api/v2/alerts")
    alerts: list[dict[str, Any]] = json.loads(out)
    return alerts


def _simulator_scenario(fleet: harness.Fleet, simulator: str, listen: str, scenario: str | None) -> None:
    """Run node-1's simulated vLLM or Ollama with a scenario (a unit drop-in), or, with None, as its unit says."""
    unit = f"llm-monitor-simulated-{simulator}.service"
    dropin = f"/etc/systemd/system/{unit}.d"
    if scenario is None:
        script = f"rm -rf {dropin}"
    else:
        command = f"{SIM_BINARY} simulate {simulator} --listen {listen} --scenario {scenario}"
        script = (
            f"mkdir -p {dropin} && printf '[Service]\\nExecStart=\\nExecStart={command}\\n' > {dropin}/scenario.conf"
        )
    exec_in(fleet, "node-1", "sh", "-c", f"{script} && systemctl daemon-reload && systemctl restart {unit}")


def _vllm_scenario(fleet: harness.Fleet, scenario: str | None) -> None:
    _simulator_scenario(fleet, "vllm", "0.0.0.0:8000", scenario)


def test_the_catalog_rules_are_loaded_and_healthy(fleet: harness.Fleet) -> None:
    groups = harness.prometheus_api(fleet, "/api/v1/rules")["data"]["groups"]
    names = {g["name"] for g in groups}
    assert {"llm_monitor_host", "llm_monitor_gpu", "llm_monitor_vllm", "llm_monitor_monitoring"} <= names, names
    broken = [(g["name"], r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] == "err"]
    assert not broken, broken


# --- every dashboard panel shows data -------------------------------------------------------------------------------

# Panels that can only have data under a fault: each is checked while that fault is produced for real (and undone).
FAULT_PANELS: dict[tuple[str, str], str] = {
    ("llm-monitor-system-status", "Hosts down"): "host down",
    ("llm-monitor-system-status", "Targets down"): "host down",
    ("llm-monitor-system-status", "Alerts firing"): "host down",
    ("llm-monitor-fleet-overview", "Alerts firing"): "host down",
    ("llm-monitor-fleet-overview", "Targets down"): "host down",
    ("llm-monitor-server-health", "Failed systemd units"): "failed unit",
    ("llm-monitor-litellm-status", "Failure ratio"): "LiteLLM failures",
    ("llm-monitor-litellm-status", "Failures by exception"): "LiteLLM failures",
    ("llm-monitor-ollama", "Server error ratio"): "Ollama errors",
    ("llm-monitor-docker-containers", "Unhealthy"): "unhealthy container",
    ("llm-monitor-docker-containers", "Memory against limit"): "unhealthy container",  # it has a memory limit
}
# Panels that cannot have data on this fleet, under any fault the test can produce. Not deleted, not weakened:
# listed here with the reason, and the test fails if one of them shows data (then take it off the list).
NO_DATA_HERE: dict[tuple[str, str], str] = {
    ("llm-monitor-model-catalog", "vLLM GPUs"): (
        "llm_monitor_vllm_gpu_assigned comes from a Docker-discovered vLLM container's DeviceRequests or "
        "NVIDIA_VISIBLE_DEVICES; the fleet's simulated vLLM is a static endpoint (a process, not a container)"
    ),
}
DOCKER_BOARD = "llm-monitor-docker-containers"
# The fleet's Prometheus is younger than a week: a last-week comparison (`offset 1w`) has nothing to compare with.
LAST_WEEK = "offset 1w"
PANEL_CHECK_UNIT = "llm-monitor-panel-check-failed"
SLO_LONG_INTERVAL = 330  # the interval of the SLO's long-window rule group (5 m), plus an evaluation


def _ollama_scenario(fleet: harness.Fleet, scenario: str | None) -> None:
    _simulator_scenario(fleet, "ollama", "127.0.0.1:11434", scenario)


def _start_unhealthy_container(fleet: harness.Fleet) -> str:
    """A container on the Docker engine the fleet's socket hosts see, with a memory limit and a health check that
    always fails (unhealthy after a second), labelled as the fleet's so that harness.down removes it too."""
    name = f"{fleet.name}-panel-check"
    harness.docker("rm", "-f", name, check=False)
    harness.docker(
        "run", "-d", "--name", name, "--label", f"llm-monitor-fleet={fleet.name}", "--network", "none",
        "--memory", "64m", "--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1",
        "--entrypoint", "sleep", f"{harness.IMAGE_REPO}:bookworm", "600",
    )  # fmt: skip
    return name


def _instant(fleet: harness.Fleet, promql: str) -> tuple[bool, str]:
    """(has data, why not): the query answered with a non-empty result."""
    path = "/api/v1/query?query=" + urllib.parse.quote(promql)
    try:
        if fleet.publish is not None:  # the published port: much quicker than a docker exec per query
            with urllib.request.urlopen(f"http://127.0.0.1:{fleet.publish}{path}", timeout=10) as response:
                answer = json.loads(response.read())
        else:
            answer = harness.prometheus_api(fleet, path)
    except Exception as exc:  # an HTTP 400 (a bad query) is an answer too
        return False, f"error: {exc}"
    if answer.get("status") != "success":
        return False, f"error: {answer.get('error')}"
    return bool(answer["data"]["result"]), "empty"


def _dashboard_panels() -> dict[tuple[str, str], list[Any]]:
    """(dashboard uid, panel title) -> its Prometheus queries, every variable All (dashboard_queries.py)."""
    from dashboard_queries import load_dashboards, panel_queries

    out: dict[tuple[str, str], list[Any]] = {}
    for board in load_dashboards():
        for q in panel_queries(board, {}):
            out.setdefault((q.dashboard, q.panel), []).append(q)
    return out


def _panels_without_data(
    fleet: harness.Fleet, panels: dict[tuple[str, str], list[Any]], younger_than_a_week: bool
) -> dict[tuple[str, str], list[str]]:
    """Each panel without data and its queries without data. A panel has data when each of its queries has, but
    for a last-week comparison on a fleet younger than a week."""
    missing: dict[tuple[str, str], list[str]] = {}
    for key, queries in panels.items():
        empty = []
        for q in queries:
            ok, why = _instant(fleet, q.expr)
            if not ok and not (younger_than_a_week and LAST_WEEK in q.expr and why == "empty"):
                empty.append(f"{q.ref_id}: {q.expr} ({why})")
        if empty:
            missing[key] = empty
    return missing


def _panel_report(missing: dict[tuple[str, str], list[str]]) -> str:
    return "\n".join(f"{uid} / {title}: " + " | ".join(qs) for (uid, title), qs in sorted(missing.items()))


def _wait_for_panels(
    fleet: harness.Fleet, panels: dict[tuple[str, str], list[Any]], young: bool, timeout: float
) -> dict[tuple[str, str], list[str]]:
    """The panels still without data once all have data or the timeout passed; only those are asked again."""
    deadline = time.monotonic() + timeout
    missing = _panels_without_data(fleet, panels, young)
    while missing and time.monotonic() < deadline:
        time.sleep(5)
        missing = _panels_without_data(fleet, {k: panels[k] for k in missing}, young)
    return missing


def _litellm_failures(fleet: harness.Fleet, count: int) -> None:
    """Requests that the mock-gpt deployment of the fleet's real LiteLLM fails (HTTP 400: the mock testing
    parameter is refused by this proxy), counted in litellm_proxy_failed_requests_metric_total."""
    body = json.dumps(
        {"model": "mock-gpt", "messages": [{"role": "user", "content": "fail"}], "mock_testing_fallbacks": True}
    )
    script = (
        'K="$(cat /etc/llm_monitor/exporters/litellm-master-key)"; curl -s -o /dev/null -w "%{http_code}" '
        '--max-time 30 -H "Authorization: Bearer $K" -H "Content-Type: application/json" -d "$1" '
        "http://127.0.0.1:4000/v1/chat/completions"
    )
    codes = [exec_in(fleet, "mon-1", "sh", "-c", script, "sh", body).strip() for _ in range(count)]
    assert all(c[:1] in ("4", "5") for c in codes), codes


def test_a_vllm_queue_build_up_is_delivered_to_the_webhook_and_resolves(fleet: harness.Fleet) -> None:
    # The simulated vLLM's queue_buildup scenario: 2 more requests wait every second; VllmQueueBuildUp (over 10,
    # for 60 s in this fleet) fires, Alertmanager delivers it to the webhook receiver on mon-1.
    _vllm_scenario(fleet, "queue_buildup")
    try:
        wait_for(lambda: bool(delivered(fleet, "firing", alertname="VllmQueueBuildUp", host="node-1")), 240)
    finally:
        _vllm_scenario(fleet, None)
    (alert, *_) = delivered(fleet, "firing", alertname="VllmQueueBuildUp", host="node-1")
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["team"] == "research", "the host's fleet labels ride along for routing"
    assert alert["labels"]["model_name"], alert["labels"]
    assert alert["annotations"]["runbook_url"].endswith("/vllm.md#vllmqueuebuildup")
    assert "on node-1" in alert["annotations"]["description"], alert["annotations"]
    # normal again: the queue empties, the alert resolves and the receiver hears so
    wait_for(lambda: bool(delivered(fleet, "resolved", alertname="VllmQueueBuildUp", host="node-1")), 240)


def test_a_host_down_is_one_notification_not_one_per_exporter(fleet: harness.Fleet) -> None:
    units = ["node_exporter", "llm-monitor-exporter-vllm", "llm-monitor-exporter-ollama_proxy"]
    exec_in(fleet, "node-1", "systemctl", "stop", *units)
    try:
        wait_for(lambda: bool(delivered(fleet, "firing", alertname="HostDown", host="node-1")), 240)

        def exporter_down_inhibited() -> bool:
            down = [
                a
                for a in alertmanager_alerts(fleet)
                if a["labels"].get("alertname") == "ExporterDown" and a["labels"].get("host") == "node-1"
            ]
            return bool(down) and all(a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in down)

        # the exporters' alerts reach Alertmanager, which holds them back behind HostDown
        wait_for(exporter_down_inhibited, 180)
        time.sleep(15)  # more than group_interval: anything not inhibited would have been sent by now
        assert not delivered(fleet, "firing", alertname="ExporterDown", host="node-1")
    finally:
        exec_in(fleet, "node-1", "systemctl", "start", *units)
    wait_for(lambda: bool(delivered(fleet, "resolved", alertname="HostDown", host="node-1")), 240)


def _answers(fleet: harness.Fleet, url: str) -> bool:
    """The service on mon-1 answers 200 (it is ready)."""
    return (
        harness.docker("exec", fleet.container("mon-1"), "curl", "-fs", "-o", "/dev/null", url, check=False).returncode
        == 0
    )


def _firing(fleet: harness.Fleet, alertname: str, host: str, mon: str = "mon-1") -> bool:
    """The alert fires in the running Prometheus of that monitoring host. Its live state (/api/v1/alerts), not
    ALERTS: a restarted Prometheus still answers its predecessor's ALERTS samples for 5 minutes (the lookback)."""
    return any(
        a["labels"].get("alertname") == alertname and a["labels"].get("host") == host and a["state"] == "firing"
        for a in harness.prometheus_api(fleet, "/api/v1/alerts", mon)["data"]["alerts"]
    )


def test_a_receiver_that_was_down_gets_the_notification_when_it_is_back(fleet: harness.Fleet) -> None:
    before = len(notifications(fleet))
    failed_query = 'sum(alertmanager_notifications_failed_total{integration="webhook"})'
    failed_before = sum(values(fleet, failed_query))
    exec_in(fleet, "mon-1", "systemctl", "stop", "llm-monitor-webhook")
    _vllm_scenario(fleet, "queue_buildup")
    try:
        wait_for(lambda: _firing(fleet, "VllmQueueBuildUp", "node-1"), 240)

        def failing() -> bool:
            return sum(values(fleet, failed_query)) > failed_before

        wait_for(failing, 120)  # Alertmanager tried, and failed
        time.sleep(45)  # the receiver stays down for a minute or so
        exec_in(fleet, "mon-1", "systemctl", "start", "llm-monitor-webhook")

        def delivered_after() -> bool:
            return any(
                a["labels"].get("alertname") == "VllmQueueBuildUp" and a["status"] == "firing"
                for n in notifications(fleet)[before:]
                for a in n["alerts"]
            )

        wait_for(delivered_after, 180)

        # Prometheus restarted while the alert fires: it restores the alert's state (ALERTS_FOR_STATE) and
        # keeps it firing, without a new `for` wait and without a resolved notification in between.
        resolved_before = len(delivered(fleet, "resolved", alertname="VllmQueueBuildUp", host="node-1"))
        exec_in(fleet, "mon-1", "systemctl", "restart", "prometheus")
        wait_for(lambda: _answers(fleet, "http://127.0.0.1:9090/-/ready"), 60)
        ready = time.monotonic()
        wait_for(lambda: _firing(fleet, "VllmQueueBuildUp", "node-1"), 45)
        assert time.monotonic() - ready < 45, "firing again sooner than a new for (60 s) plus an evaluation"
        assert len(delivered(fleet, "resolved", alertname="VllmQueueBuildUp", host="node-1")) == resolved_before
    finally:
        exec_in(fleet, "mon-1", "systemctl", "start", "llm-monitor-webhook")
        _vllm_scenario(fleet, None)
    # The restarted Prometheus resolves it as soon as the queue is empty. (Had the fault cleared before the
    # new process fired again, the alert would have left it as pending, unannounced: Alertmanager would resolve
    # it only when the last firing update expires, 4 minutes on. docs/alerting.md.)
    wait_for(
        lambda: len(delivered(fleet, "resolved", alertname="VllmQueueBuildUp", host="node-1")) > resolved_before, 120
    )


def test_silences_survive_an_alertmanager_restart(fleet: harness.Fleet) -> None:
    silence = json.dumps(
        {
            "matchers": [{"name": "alertname", "value": "FleetTestSilence", "isRegex": False, "isEqual": True}],
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600)),
            "createdBy": "fleet test",
            "comment": "must survive a restart",
        }
    )
    out = exec_in(fleet, "mon-1", "curl", "-fsS", "-H", "Content-Type: application/json", "-d", silence,
                  "http://127.0.0.1:9093/api/v2/silences")  # fmt: skip
    silence_id = json.loads(out)["silenceID"]
    exec_in(fleet, "mon-1", "systemctl", "restart", "alertmanager")
    wait_for(lambda: _answers(fleet, "http://127.0.0.1:9093/-/ready"), 60)
    got = json.loads(exec_in(fleet, "mon-1", "curl", "-fsS", f"http://127.0.0.1:9093/api/v2/silence/{silence_id}"))
    assert got["status"]["state"] == "active" and got["comment"] == "must survive a restart"


def _reverse_host_order(inventory: Path) -> None:
    path = inventory / "hosts.yml"
    data = yaml.safe_load(path.read_text())

    def reverse(group: dict[str, Any]) -> None:
        if group.get("hosts"):
            group["hosts"] = dict(reversed(list(group["hosts"].items())))
        for child in (group.get("children") or {}).values():
            reverse(child)

    reverse(data["all"])
    data["all"]["children"] = dict(reversed(list(data["all"]["children"].items())))
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_second_run_changes_nothing_even_with_the_hosts_listed_in_another_order(fleet: harness.Fleet) -> None:
    files_before = config_files(fleet)
    result = harness.converge(fleet, capture=True, check=False, edit_inventory=_reverse_host_order)
    assert result.returncode == 0, result.stdout[-5000:]
    summary = recap(result.stdout)
    assert set(summary) >= {"mon-1", "node-1"}
    assert all(v["changed"] == 0 for v in summary.values()), summary
    # targets are written sorted by host: the order of the inventory rewrites no file
    assert config_files(fleet) == files_before


def test_an_added_host_is_scraped_without_restarting_prometheus(fleet: harness.Fleet) -> None:
    pid_before = prometheus_pid(fleet)
    files_before = config_files(fleet)
    # Scraped over IPv6: its scrape address is its IPv6 address on the fleet's network, written as given.
    node2 = harness.Host(
        name="node-2",
        suite="bookworm",
        groups=["ungrouped"],
        labels={"datacenter": "dc2", "team": "serving"},
        vars={"node_exporter_listen_address": "::"},
    )
    harness.add_host(fleet, node2)
    ipv6 = harness.container_ipv6(fleet, "node-2")
    assert ":" in ipv6, ipv6
    node2.vars["fleet_scrape_address"] = ipv6
    fleet.save()
    result = harness.converge(fleet, capture=True, check=False)
    assert result.returncode == 0, result.stdout[-5000:]

    wait_for(lambda: all_up(fleet, {("node", "node-2")}))
    assert targets(fleet)[("node", "node-2")]["labels"]["team"] == "serving"
    assert targets(fleet)[("node", "node-2")]["scrapeUrl"] == f"http://[{ipv6}]:9100/metrics"
    assert prometheus_pid(fleet) == pid_before, "Prometheus was restarted"
    files_after = config_files(fleet)
    changed = {path for path in files_after if files_after[path] != files_before.get(path)}
    # node-2 is a plain host (no GPU, no Docker, no LLM service): of the job files only node.yml gains it (the
    # other jobs keep their targets: the exporter catalog runs no exporter on node-2), and prometheus.yml,
    # whose vllm job lists one HTTP SD URL per vLLM exporter host, does not change.
    assert changed == {"/etc/prometheus/file_sd/node.yml"}
    # Only the new host and the monitoring host's node job file changed.
    summary = recap(result.stdout)
    assert summary["node-1"]["changed"] == 0, summary


def _host_vars(host: str, **values: Any) -> Callable[[Path], None]:
    def edit(inventory: Path) -> None:
        path = inventory / "host_vars" / f"{host}.yml"
        data = yaml.safe_load(path.read_text())
        data.update(values)
        path.write_text(yaml.safe_dump(data))

    return edit


def _group_vars_all(**values: Any) -> Callable[[Path], None]:
    def edit(inventory: Path) -> None:
        path = inventory / "group_vars" / "all.yml"
        data = yaml.safe_load(path.read_text())
        data.update(values)
        path.write_text(yaml.safe_dump(data))

    return edit


def _empty_monitoring(inventory: Path) -> None:
    path = inventory / "hosts.yml"
    data = yaml.safe_load(path.read_text())
    data["all"]["children"]["monitoring"] = {"hosts": {}}
    path.write_text(yaml.safe_dump(data))


def _add_host_named_in_other_case(inventory: Path) -> None:
    # NODE-1 is node-1 under another name: the same container, its address spelt in capitals.
    path = inventory / "hosts.yml"
    data = yaml.safe_load(path.read_text())
    node1 = yaml.safe_load((inventory / "host_vars" / "node-1.yml").read_text())
    ungrouped = data["all"]["children"].setdefault("ungrouped", {})
    ungrouped["hosts"] = dict(ungrouped.get("hosts") or {})
    ungrouped["hosts"]["NODE-1"] = {
        "ansible_host": node1["ansible_host"],
        "fleet_scrape_address": node1["ansible_host"].upper(),
    }
    path.write_text(yaml.safe_dump(data))


BAD_INPUTS = {
    "empty monitoring group": (_empty_monitoring, ["the inventory's 'monitoring' group is empty"]),
    "port outside 1-65535": (
        _host_vars("node-1", node_exporter_port=70000),
        ["host 'node-1'", "node_exporter_port=70000 is outside 1-65535"],
    ),
    "two jobs on one host:port": (
        _host_vars("mon-1", node_exporter_port=9090),
        ["host 'mon-1'", "node_exporter_port=9090", "job 'prometheus' already scrapes", "(prometheus_port)"],
    ),
    # meta/argument_specs.yml refuses it; the failure is node-1's
    "unknown install method": (
        _host_vars("node-1", node_exporter_install_method="tarball"),
        ["fatal: [node-1]", "value of node_exporter_install_method must be one of: archive, package, got: tarball"],
    ),
    "port that is not a number": (
        _host_vars("node-1", node_exporter_port="abc"),
        ["host 'node-1': node_exporter_port='abc' is not a port number (1-65535)"],
    ),
    "address with a port": (
        _host_vars("node-1", fleet_scrape_address="10.0.0.5:22"),
        ["host 'node-1': fleet_scrape_address='10.0.0.5:22' is not a host name, IPv4 or IPv6 address", "port"],
    ),
    "address with spaces": (
        _host_vars("node-1", fleet_scrape_address=" 10.0.0.6 "),
        ["host 'node-1': fleet_scrape_address=' 10.0.0.6 ' is not a host name", "remove the spaces"],
    ),
    "address as a URL": (
        _host_vars("node-1", fleet_scrape_address="http://10.0.0.9"),
        ["host 'node-1': fleet_scrape_address='http://10.0.0.9' is not a host name", "scheme"],
    ),
    "address as a network": (
        _host_vars("node-1", fleet_scrape_address="10.0.0.0/24"),
        ["host 'node-1': fleet_scrape_address='10.0.0.0/24' is not a host name", "not a network"],
    ),
    "label an exporter emits": (
        _host_vars("node-1", fleet_labels={"gpu": "0", "team": "research"}),
        ["host 'node-1': fleet_labels key 'gpu' is reserved: the GPU exporter", "exported_gpu"],
    ),
    "label value that is not a string": (
        _host_vars("node-1", fleet_labels={"rack": 12}),
        ["host 'node-1': fleet_labels.rack=12 is not a string (a number)", 'rack: "..."'],
    ),
    "one machine under two names differing in case": (
        _add_host_named_in_other_case,
        ["host 'node-1'", "already scrapes that address and port on host 'NODE-1'", "compared without case"],
    ),
    "checksum mismatch": (
        _group_vars_all(node_exporter_checksums={"amd64": "sha256:" + "0" * 64}),
        [
            "node_exporter archive",
            "was refused, nothing was installed",
            "node_exporter_checksums.amd64",
            "mon-1",
            "node-1",
        ],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_before_anything_changes(fleet: harness.Fleet, case: str) -> None:
    edit, messages = BAD_INPUTS[case]
    pid_before = prometheus_pid(fleet)
    files_before = config_files(fleet)

    result = harness.converge(fleet, capture=True, check=False, edit_inventory=edit)

    assert result.returncode != 0
    text = " ".join(result.stdout.split())
    for message in messages:
        assert message in text, f"{message!r} not in output:\n{result.stdout[-4000:]}"
    assert all(v["changed"] == 0 for v in recap(result.stdout).values()), recap(result.stdout)
    assert prometheus_pid(fleet) == pid_before
    assert config_files(fleet) == files_before
    assert all_up(fleet, {("node", "mon-1"), ("node", "node-1"), ("prometheus", "mon-1")})


def test_every_dashboard_panel_shows_data(fleet: harness.Fleet) -> None:
    """Every panel of every dashboard (files/dashboards), its variables All, returns data from the fleet's
    Prometheus: after traffic through every LLM service, and for the panels that show faults, under that fault."""
    panels = _dashboard_panels()
    lowest = values(fleet, "min(prometheus_tsdb_lowest_timestamp_seconds)")
    younger_than_a_week = bool(lowest) and time.time() - lowest[0] < 7 * 86400
    skipped = dict(NO_DATA_HERE)
    # node-1 has the machine's Docker socket (HOSTS, docker_socket_hosts): the docker-containers dashboard has data
    has_docker = bool(query(fleet, 'up{job="containers"}'))
    assert has_docker, "no containers target: the Docker dashboard cannot be checked"
    unknown = sorted(set(FAULT_PANELS) - set(panels)) + sorted(set(NO_DATA_HERE) - set(panels))
    assert not unknown, f"listed panels no dashboard has any more: {unknown}"

    # LLM traffic (as test_llm_traffic_shows_up_in_every_llm_job sends it): through the Ollama proxy, the real
    # LiteLLM, and to the simulated vLLM's OpenAI API (http_requests_total of its generation handlers: the SLO's
    # availability). The simulated vLLM serves background traffic of its own for its latency histograms.
    ollama = ["--target", "http://127.0.0.1:11435", "--api", "generate", "--model", "llama3.2"]
    exec_in(fleet, "node-1", TRAFFIC, *ollama, "--count", "8", "--concurrency", "2", "--quiet")
    vllm = ["--target", "http://127.0.0.1:8000", "--api", "openai", "--model", harness.SIMULATED_VLLM_MODEL]
    exec_in(fleet, "node-1", TRAFFIC, *vllm, "--count", "4", "--concurrency", "2", "--no-stream", "--quiet")
    wait_for(lambda: all_up(fleet, {("litellm", "mon-1"), ("litellm_exporter", "mon-1")}), timeout=120)
    gateway = ["--target", "http://127.0.0.1:4000", "--api", "openai", "--model", "mock-gpt", "--no-stream"]
    key = "--api-key-file=/etc/llm_monitor/exporters/litellm-master-key"
    exec_in(fleet, "mon-1", TRAFFIC, *gateway, key, "--count", "5", "--concurrency", "1", "--quiet")

    # rate(...[5m]) and the recording rules on it need two scrapes (15 s apart) and an evaluation (15 s) after
    # the traffic: wait for them rather than for a fixed time. The SLO's period rules are evaluated every 5
    # minutes (llm_monitor_slo_long_windows): on rules loaded less than that ago, wait out one such interval.
    loaded = values(fleet, "max(prometheus_config_last_reload_success_timestamp_seconds)")
    slo_wait = SLO_LONG_INTERVAL - (time.time() - loaded[0]) if loaded else SLO_LONG_INTERVAL
    normal = {k: q for k, q in panels.items() if k not in FAULT_PANELS and k not in skipped}
    missing = _wait_for_panels(fleet, normal, younger_than_a_week, timeout=max(120, slo_wait))

    # Faults, all at once and short (they delay the tests after this one): mon-1's node_exporter and Langfuse
    # exporter stopped (a host and a target down, HostDown firing after its 30 s `for`; ExporterDown, 60 s, is
    # inhibited by it and resolves before it fires), a transient unit on node-1 that exits 1 (a failed unit), and
    # requests LiteLLM fails; where a host has the Docker socket, an unhealthy container with a memory limit. The
    # host down is mon-1, not node-1: the notifications the later tests wait for are node-1's.
    faults = {k: q for k, q in panels.items() if k in FAULT_PANELS and k not in skipped}
    stopped = ["node_exporter", "llm-monitor-exporter-langfuse"]
    exec_in(fleet, "mon-1", "systemctl", "stop", *stopped)
    container = None
    try:
        if has_docker:
            container = _start_unhealthy_container(fleet)
        harness.docker("exec", fleet.container("node-1"), "systemctl", "reset-failed", PANEL_CHECK_UNIT, check=False)
        exec_in(fleet, "node-1", "systemd-run", f"--unit={PANEL_CHECK_UNIT}", "/bin/sh", "-c", "exit 1")
        _litellm_failures(fleet, 3)
        # Ollama answering 500 (its error_burst scenario) to requests through the proxy: a server error ratio.
        # Last of the Ollama panels: the restarted simulator has no model loaded until the next request.
        _ollama_scenario(fleet, "error_burst")
        wait_for(lambda: exec_in(fleet, "node-1", "sh", "-c", "curl -s -o /dev/null -w '%{http_code}' "
                                 "http://127.0.0.1:11434/api/version || true") != "000", 30)  # fmt: skip
        harness.docker("exec", fleet.container("node-1"), TRAFFIC, *ollama, "--count", "3", "--quiet", check=False)
        missing |= _wait_for_panels(fleet, faults, younger_than_a_week, timeout=150)
    finally:
        exec_in(fleet, "mon-1", "systemctl", "start", *stopped)
        harness.docker("exec", fleet.container("node-1"), "systemctl", "reset-failed", PANEL_CHECK_UNIT, check=False)
        if container is not None:
            harness.docker("rm", "-f", container, check=False)
        _ollama_scenario(fleet, None)

    shown = sorted(k for k in NO_DATA_HERE if not _panels_without_data(fleet, {k: panels[k]}, younger_than_a_week))
    wait_for(lambda: all_up(fleet, {("node", "mon-1"), ("langfuse", "mon-1")}), timeout=90)
    assert not missing, f"{len(missing)} panels without data:\n{_panel_report(missing)}"
    assert not shown, f"panels of NO_DATA_HERE that show data now (take them off the list): {shown}"


def test_the_built_collection_installs_and_runs_site_from_an_empty_collections_path(
    fleet: harness.Fleet, tmp_path: Path
) -> None:
    env = harness.ansible_env()
    harness.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(tmp_path), str(harness.REPO)],
        env=env,
        capture_output=True,
    )
    artifact = tmp_path / "llm_monitor-fleet-0.1.0.tar.gz"
    members = harness.run(["tar", "-tzf", str(artifact)], capture_output=True).stdout.split()
    assert "roles/prometheus/tasks/main.yml" in members and "playbooks/site.yml" in members
    assert not [m for m in members if m.startswith(("tests/", "molecule/", "bench/", "collections/", ".venv"))]

    installed = tmp_path / "collections"
    # Outside the checkout and with a clean collections path: the checkout's own link would otherwise count as
    # "already installed".
    install_env = {k: v for k, v in env.items() if k not in ("ANSIBLE_CONFIG", "ANSIBLE_ROLES_PATH")}
    install_env["ANSIBLE_COLLECTIONS_PATH"] = str(installed)
    harness.run(
        ["ansible-galaxy", "collection", "install", "--force", "--offline", "-p", str(installed), str(artifact)],
        env=install_env,
        cwd=tmp_path,
        capture_output=True,
    )
    assert (installed / "ansible_collections/llm_monitor/fleet/playbooks/site.yml").is_file()
    result = harness.converge(
        fleet, capture=True, check=False, playbook="llm_monitor.fleet.site", collections_path=installed
    )
    assert result.returncode == 0, result.stdout[-5000:]
    assert all(v["changed"] == 0 for v in recap(result.stdout).values()), recap(result.stdout)


def _alertmanager_peers(fleet: harness.Fleet, host: str) -> list[str]:
    status = json.loads(exec_in(fleet, host, "curl", "-fsS", "--max-time", "5", "http://127.0.0.1:9093/api/v2/status"))
    return sorted(p["name"] for p in status["cluster"].get("peers") or [])


def _active_alertmanagers(fleet: harness.Fleet, host: str) -> list[str]:
    data = harness.prometheus_api(fleet, "/api/v1/alertmanagers", host)["data"]
    return sorted(a["url"] for a in data["activeAlertmanagers"])


def test_with_a_second_monitoring_host_an_alert_is_one_notification(fleet: harness.Fleet) -> None:
    """Last: it makes the fleet an HA pair. Both Prometheus servers evaluate the rules and send to both
    Alertmanagers, which gossip as one cluster: the team hears of a fault once."""
    harness.add_host(fleet, harness.Host(name="mon-2", suite="bookworm", groups=["monitoring"],
                                         labels={"datacenter": "dc2", "team": "platform"}))  # fmt: skip
    result = harness.converge(fleet, capture=True, check=False)
    assert result.returncode == 0, result.stdout[-5000:]
    alertmanagers = sorted(f"http://{fleet.container(h)}:9093/api/v2/alerts" for h in ("mon-1", "mon-2"))

    def paired() -> bool:
        return all(
            _active_alertmanagers(fleet, mon) == alertmanagers and len(_alertmanager_peers(fleet, mon)) == 2
            for mon in ("mon-1", "mon-2")
        )

    wait_for(paired, 90)

    def host_down_notifications() -> list[dict[str, Any]]:
        return [
            n
            for n in notifications(fleet)
            if any(a["labels"].get("alertname") == "HostDown" and a["labels"].get("host") == "node-2"
                   for a in n["alerts"] if a["status"] == "firing")
        ]  # fmt: skip

    before = len(host_down_notifications())
    # node-2 (added earlier) runs only node_exporter: stopping it is HostDown, seen by both Prometheus servers.
    exec_in(fleet, "node-2", "systemctl", "stop", "node_exporter")
    try:
        wait_for(lambda: all(_firing(fleet, "HostDown", "node-2", mon) for mon in ("mon-1", "mon-2")), 180)
        wait_for(lambda: len(host_down_notifications()) > before, 120)
        # The second Alertmanager waits out its peer position x peer timeout (15 s), then finds the first one's
        # entry in the shared notification log; the same alert from the second Prometheus (whose replica label
        # is dropped) changes nothing in the group. Anything else would have been sent by now.
        time.sleep(30)
        sent = host_down_notifications()[before:]
        assert len(sent) == 1, sent
        (alert,) = [a for a in sent[0]["alerts"] if a["labels"].get("alertname") == "HostDown"]
        assert "replica" not in alert["labels"], alert["labels"]
        assert alert["labels"]["team"] == "serving"
    finally:
        exec_in(fleet, "node-2", "systemctl", "start", "node_exporter")
    wait_for(lambda: bool(delivered(fleet, "resolved", alertname="HostDown", host="node-2")), 240)

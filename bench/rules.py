#!/usr/bin/env python3
"""Alert rules for a generated fleet of 1,000 hosts with 50 threshold overrides, against one rule per host.

    bench/rules.py            # render, then evaluate on a real Prometheus for 60 s
    bench/rules.py --quick    # 30 s of evaluation

1. Rendering: the catalog (files/rules/catalog) through the llm_monitor.fleet.alert_rules filter, in-process and
   through ansible-playbook with a real inventory (HostVars), as the prometheus role does.
2. Evaluation: a real Prometheus (the machine's, or PROMETHEUS=/path) scrapes a synthetic endpoint that serves
   node_exporter and GPU exporter series for every host (honor_labels keeps their host label), once with the
   collection's rules and once with the baseline, one rule per host and alert, and reports each rule group's
   evaluation time (prometheus_rule_group_last_duration_seconds) side by side.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.llm_monitor.fleet.plugins.filter.alert_rules import (  # noqa: E402
    alert_rules,
    read_catalog,
)
from ansible_collections.llm_monitor.fleet.plugins.module_utils import alert_catalog  # noqa: E402

CATALOG = REPO / "files/rules/catalog"
NEWLINE = b"\n"
HOSTS = 1000
GPU_HOSTS = 200
GPUS = 8
# 50 overrides on 10 alerts, 2 or 3 distinct values each
OVERRIDES = {
    "fleet_alert_host_disk_almost_full_threshold": (5, 15),
    "fleet_alert_host_high_load_threshold": (3, 4, 6),
    "fleet_alert_host_memory_pressure_threshold": (5, 20),
    "fleet_alert_host_network_errors_threshold": (10, 100),
    "fleet_alert_host_clock_skew_threshold": (0.1, 0.5),
    "fleet_alert_gpu_temperature_near_slowdown_threshold": (3, 8, 10),
    "fleet_alert_gpu_memory_nearly_full_threshold": (90, 98),
    "fleet_alert_host_inodes_low_threshold": (5, 20),
    "fleet_alert_host_down_for": ("5m", "10m"),
    "fleet_alert_gpu_thermal_throttling_enabled": (False,),
}


def row(name: str, value: float, unit: str, baseline: float | None = None) -> None:
    ratio = f"   baseline {baseline:>10.2f} {unit}   ratio {value / baseline:6.3f}" if baseline else ""
    print(f"  {name:<46} {value:>10.2f} {unit}{ratio}")


def hostvars() -> dict[str, dict[str, Any]]:
    hv: dict[str, dict[str, Any]] = {f"host-{i:04d}": {} for i in range(HOSTS)}
    names = sorted(hv)
    n = 0
    for var, values in OVERRIDES.items():
        for k in range(5):
            hv[names[(n * 19 + 7) % HOSTS]][var] = values[k % len(values)]
            n += 1
    return hv


def per_host_baseline(hv: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a collection without distinct-value grouping renders: one rule per host and alert."""
    groups = read_catalog(CATALOG)
    settings = alert_catalog.host_settings(groups, hv, hv)
    out: dict[str, Any] = {}
    for g in groups:
        rules = []
        for a in g.alerts:
            if a.scope == "fleet":
                continue
            for host, s in settings[a.name].items():
                if s is not None:
                    rules.append(alert_catalog._rule(a, s, f'host="{host}"', "https://example.invalid"))
        out[f"baseline_{g.name}.rules.yml"] = {"groups": [{"name": f"baseline_{g.name}", "rules": rules}]}
    return out


def count(rendered: dict[str, Any]) -> int:
    return sum(len(g["rules"]) for doc in rendered.values() for g in doc["groups"])


def render_with_ansible(hv: dict[str, dict[str, Any]], tmp: Path) -> float:
    inventory = {"all": {"hosts": hv}}
    (tmp / "hosts.json").write_text(json.dumps(inventory))
    playbook = tmp / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render the alert rules",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Render",
                            "ansible.builtin.set_fact": {
                                "rules": "{{ '" + str(CATALOG) + "' | llm_monitor.fleet.alert_rules(hostvars, "
                                "groups['all'], 'https://example.invalid') }}"
                            },
                        },
                        {"name": "Count", "ansible.builtin.debug": {"msg": "{{ rules | length }} files"}},
                    ],
                }
            ]
        )
    )
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"), "ANSIBLE_LOCALHOST_WARNING": "false"}
    t0 = time.perf_counter()
    subprocess.run(
        ["ansible-playbook", "-i", str(tmp / "hosts.json"), str(playbook)], check=True, env=env, capture_output=True
    )
    return time.perf_counter() - t0


def exposition() -> bytes:
    """node_exporter and GPU exporter series for every host (labels as Prometheus stores them, minus job)."""
    lines = []
    for i in range(HOSTS):
        h = f'host="host-{i:04d}",instance="host-{i:04d}:9100"'
        fs = f'{h},device="/dev/sda1",mountpoint="/",fstype="ext4"'
        lines += [
            f"node_load15{{{h}}} {1 + i % 5}",
            f'node_cpu_seconds_total{{{h},cpu="0",mode="idle"}} {1000 + i}',
            f'node_cpu_seconds_total{{{h},cpu="1",mode="idle"}} {1000 + i}',
            f"node_memory_MemAvailable_bytes{{{h}}} {8e9 + i * 1e6}",
            f"node_memory_MemTotal_bytes{{{h}}} 6.4e10",
            f"node_filesystem_avail_bytes{{{fs}}} {2e10 + i * 1e7}",
            f"node_filesystem_size_bytes{{{fs}}} 1e11",
            f"node_filesystem_readonly{{{fs}}} 0",
            f"node_filesystem_files_free{{{fs}}} {5e6}",
            f"node_filesystem_files{{{fs}}} 6e6",
            f"node_vmstat_oom_kill{{{h}}} 0",
            f"node_timex_offset_seconds{{{h}}} 0.001",
            f"node_timex_sync_status{{{h}}} 1",
            f"node_timex_maxerror_seconds{{{h}}} 0.2",
            f'node_network_receive_errs_total{{{h},device="eth0"}} 0',
            f'node_network_transmit_errs_total{{{h},device="eth0"}} 0',
            f'node_systemd_unit_state{{{h},name="ssh.service",state="failed",type="simple"}} 0',
        ]
        if i < GPU_HOSTS:
            for g in range(GPUS):
                gl = f'host="host-{i:04d}",instance="host-{i:04d}:9835",gpu="{g}",uuid="GPU-{i:04d}-{g}",name="H100"'
                lines += [
                    f"llm_monitor_gpu_up{{{gl}}} 1",
                    f"llm_monitor_gpu_temperature_celsius{{{gl}}} {60 + g}",
                    f'llm_monitor_gpu_temperature_limit_celsius{{{gl},limit="slowdown"}} 87',
                    f"llm_monitor_gpu_memory_used_bytes{{{gl}}} 6e10",
                    f"llm_monitor_gpu_memory_total_bytes{{{gl}}} 8e10",
                    f'llm_monitor_gpu_clock_throttle_seconds_total{{{gl},reason="thermal"}} 0',
                    f'llm_monitor_gpu_clock_event_active{{{gl},reason="hw_thermal_slowdown"}} 0',
                    f'llm_monitor_gpu_xid_errors_total{{{gl},xid="79",gpu_instance=""}} 0',
                ]
    return ("\n".join(lines) + "\n").encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def evaluate(prometheus: str, rendered: dict[str, Any], seconds: float, tmp: Path, body: bytes) -> dict[str, float]:
    """Each rule group's last evaluation time on a real Prometheus scraping the synthetic fleet."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rules = tmp / f"rules-{time.monotonic_ns()}"
    rules.mkdir()
    for name, doc in rendered.items():
        (rules / name).write_text(yaml.safe_dump(doc, sort_keys=False, width=100000))
    port = free_port()
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(rules / "*.yml")],
        "scrape_configs": [
            {
                "job_name": "node",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{server.server_address[1]}"]}],
            },
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
        ],
    }
    config_file = tmp / f"prometheus-{port}.yml"
    config_file.write_text(yaml.safe_dump(config))
    data = tmp / f"data-{port}"
    log = (tmp / f"prometheus-{port}.log").open("w")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config_file}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # the baseline's tens of thousands of rules take a while to load
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"Prometheus did not get ready: {log.name}") from None
                time.sleep(1)
        time.sleep(seconds)
        url = f"http://127.0.0.1:{port}/api/v1/query?query=prometheus_rule_group_last_duration_seconds"
        with urllib.request.urlopen(url, timeout=10) as r:
            result = json.load(r)["data"]["result"]
        out = {x["metric"]["rule_group"].split(";")[-1]: float(x["value"][1]) for x in result}
        if not out:
            print("  (no rule group evaluated; see " + log.name + ")", (tmp / log.name).read_text()[-2000:])
        return out
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    hv = hostvars()
    print(f"rules: catalog against {HOSTS} hosts with {sum(len(v) for v in hv.values())} overrides on "
          f"{len(OVERRIDES)} alerts, against one rule per host and alert")  # fmt: skip
    t0 = time.perf_counter()
    rendered = alert_rules(str(CATALOG), hv, list(hv), "https://example.invalid")
    render_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    baseline = per_host_baseline(hv)
    baseline_s = time.perf_counter() - t0
    row("rules rendered", count(rendered), "rules", count(baseline))
    size = sum(len(yaml.safe_dump(d)) for d in rendered.values()) / 1024
    base_size = sum(len(yaml.safe_dump(d)) for d in baseline.values()) / 1024
    row("rule files, size", size, "KiB", base_size)
    row("rendering, in-process", render_s * 1000, "ms", baseline_s * 1000)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if shutil.which("ansible-playbook"):
            row("rendering, ansible-playbook (inventory load incl.)", render_with_ansible(hv, tmp), "s")
        prometheus = os.environ.get("PROMETHEUS") or shutil.which("prometheus")
        if prometheus is None:
            print("  evaluation: skipped (no prometheus binary; set PROMETHEUS=/path)")
            return 0
        body = exposition()
        version = subprocess.run([prometheus, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        print(f"  evaluation on {version}, {body.count(NEWLINE)} series scraped every 5 s, rules every 5 s")
        wait = 30 if args.quick else 60
        ours = evaluate(prometheus, rendered, wait, tmp, body)
        base = evaluate(prometheus, baseline, wait, tmp, body)
        for group in ("host", "gpu", "containers", "monitoring"):
            mine, theirs = ours.get(f"llm_monitor_{group}"), base.get(f"baseline_{group}")
            if mine is None:
                continue
            if theirs is None:
                print(
                    f"  rule group {group}: one evaluation {mine * 1000:>25.2f} ms   baseline not evaluated in {wait} s"
                )
                continue
            row(f"rule group {group}: one evaluation", mine * 1000, "ms", theirs * 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())

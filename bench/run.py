#!/usr/bin/env python3
"""Benchmarks for llm_monitor.fleet, printed with their targets side by side.

    bench/run.py                 # everything
    bench/run.py --only file_sd  # one section: file_sd, converge, exporters, llm, ollama_proxy, rules, dashboards

file_sd   derive and render the file_sd files for a generated inventory of 1,000 hosts in 10 groups
converge  first converge and idempotent re-run of site.yml on the demo fleet (tests/harness/fleet.py), then
          the time from a fault (vLLM queue build-up) to the webhook notification, against its floor
exporters    GPU and container exporters: scrape latency, collection time, RSS (bench/exporters/run.py)
llm          vLLM, LiteLLM and Langfuse exporters: collection time, RSS (bench/exporters/llm.py)
ollama_proxy Ollama proxy vs direct at 1, 16, 64 streams (bench/exporters/ollama_proxy.py)
rules        alert rules for 1,000 hosts with 50 overrides vs one rule per host: count, rendering, evaluation
             on a real Prometheus (bench/rules.py)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests" / "harness"))

import fleet as harness  # noqa: E402
import yaml  # noqa: E402


def row(name: str, value: float, unit: str, target: float | None = None) -> None:
    if target is None:
        print(f"  {name:<48} {value:>10.2f} {unit}")
        return
    verdict = "ok" if value <= target else "OVER TARGET"
    print(f"  {name:<48} {value:>10.2f} {unit}   target < {target:g} {unit}   ratio {value / target:5.2f}  {verdict}")


def bench_file_sd(hosts: int = 1000, groups: int = 10) -> None:
    print(f"file_sd: derive and render for {hosts} hosts in {groups} groups ({groups + 1} jobs)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "file_sd").mkdir()
        inventory: dict[str, dict[str, object]] = {}
        for g in range(groups):
            members = {}
            for i in range(g, hosts, groups):
                members[f"host-{i:04d}"] = {
                    "ansible_host": f"10.{i // 250}.{i % 250}.10",
                    "fleet_labels": {"datacenter": f"dc{i % 3}", "rack": f"r{i % 40:02d}", "team": f"team{g}"},
                }
            inventory[f"group_{g:02d}"] = {"hosts": members}
        (out / "hosts.json").write_text(json.dumps({"all": {"children": inventory}}))
        jobs = [{"name": "node", "group": "all", "port_var": "node_exporter_port", "default_port": 9100}]
        jobs += [
            {
                "name": f"job_{g:02d}",
                "group": f"group_{g:02d}",
                "port_var": f"job_{g:02d}_port",
                "default_port": 9200 + g,
            }
            for g in range(groups)
        ]
        (out / "jobs.json").write_text(json.dumps(jobs))
        env = harness.ansible_env() | {"BENCH_OUT": str(out)}
        cmd = ["ansible-playbook", "-i", str(out / "hosts.json"), str(BENCH / "render_file_sd.yml")]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, text=True, capture_output=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit("file_sd benchmark failed")
        rendered = sum(len(yaml.safe_load(p.read_text()) or []) for p in (out / "file_sd").glob("*.yml"))
        row("ansible-playbook, inventory load to files written", elapsed, "s", 15)
        print(f"  {'target groups rendered':<48} {rendered:>10d}")


RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", re.M)


def bench_converge() -> None:
    fleet = harness.up("bench", publish=None)
    hosts = len(fleet.hosts)
    print(f"converge: site.yml (+ the harness's LLM upstreams) on the {hosts}-host demo fleet (Debian 12 + 13)")
    try:
        start = time.perf_counter()
        harness.converge(fleet, capture=True)
        row("first converge (site.yml + LLM upstreams)", time.perf_counter() - start, "s")
        start = time.perf_counter()
        proc = harness.converge(fleet, capture=True, upstreams=False)
        row("idempotent re-run of site.yml", time.perf_counter() - start, "s", 45)
        changed = sum(int(c) for _, c in RECAP.findall(proc.stdout))
        print(f"  {'tasks changed on the re-run':<48} {changed:>10d}   target 0   {'ok' if changed == 0 else 'FAIL'}")
        bench_alert_latency(fleet)
        # the dashboards' queries on this fleet's Prometheus, its data about ten minutes old
        bench_dashboards("bench")
    finally:
        harness.down("bench")


def bench_alert_latency(fleet: harness.Fleet) -> None:
    """Fault injected (the simulated vLLM's queue_buildup) to the webhook receiving VllmQueueBuildUp, and back."""
    vllm = next(h.name for h in fleet.hosts if "vllm_servers" in h.groups)
    mon = harness.webhook_host(fleet)
    unit = "llm-monitor-simulated-vllm.service"
    dropin = f"/etc/systemd/system/{unit}.d"
    sim = "/opt/llm_monitor_testkit/venv/bin/llm-monitor-testkit simulate vllm --listen 0.0.0.0:8000"

    def scenario(name: str | None) -> None:
        if name is None:
            script = f"rm -rf {dropin}"
        else:
            unit_text = f"[Service]\\nExecStart=\\nExecStart={sim} --scenario {name}\\n"
            script = f"mkdir -p {dropin} && printf '{unit_text}' > {dropin}/s.conf"
        harness.docker(
            "exec",
            fleet.container(vllm),
            "sh",
            "-c",
            f"{script} && systemctl daemon-reload && systemctl restart {unit}",
        )

    def received() -> list[dict[str, Any]]:
        out = harness.docker(
            "exec", fleet.container(mon), "sh", "-c", f"cat {harness.WEBHOOK_LOG} 2>/dev/null || true"
        ).stdout
        return [json.loads(line)["payload"] for line in out.splitlines() if line.strip()]

    def wait(status: str, timeout: float = 600) -> float:
        """Seconds until a notification of that status about VllmQueueBuildUp reaches the webhook."""
        start, known = time.perf_counter(), len(received())
        while not any(
            a["status"] == status and a["labels"].get("alertname") == "VllmQueueBuildUp"
            for n in received()[known:] for a in n["alerts"]
        ):  # fmt: skip
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"no {status} VllmQueueBuildUp within {timeout:.0f} s")
            time.sleep(0.5)
        return time.perf_counter() - start

    # The floor (the issue's): one scrape interval to see the queue, the alert's `for`, Alertmanager's group_wait
    # (the fleet's: 15 s, 60 s, 2 s). The bound adds what the floor leaves out: the simulated queue passing 10
    # (2 a second, 6 s) and two evaluations on a 15 s grid (pending, then firing).
    for_ = int(harness.FAST_ALERTS["fleet_alert_vllm_queue_build_up_for"].removesuffix("s"))
    scrape, evaluation, group_wait, group_interval = 15, 15, 2, 10
    floor = scrape + for_ + group_wait
    print(f"alert latency: VllmQueueBuildUp, fault to webhook (floor = scrape {scrape} s + for {for_} s + "
          f"group_wait {group_wait} s = {floor} s)")  # fmt: skip
    for attempt in (1, 2, 3):
        scenario("queue_buildup")
        try:
            firing = wait("firing")
        finally:
            scenario(None)
        resolved = wait("resolved")
        bound = floor + 6 + 2 * evaluation
        verdict = "ok" if firing <= bound else "OVER BOUND"
        print(f"  {'run ' + str(attempt) + ': fault injected to firing notification':<48} {firing:>10.2f} s   "
              f"floor {floor} s   ratio {firing / floor:5.2f}   bound {bound} s  {verdict}")  # fmt: skip
        row(
            f"run {attempt}: fault cleared to resolved notification",
            resolved,
            "s",
            scrape + evaluation + group_interval,
        )
        time.sleep(scrape + evaluation)  # the queue's empty samples settle before the next run


def bench_dashboards(fleet: str) -> None:
    """Median and p95 time of every dashboard's queries on a fleet's Prometheus (bench/dashboards.py)."""
    subprocess.run([sys.executable, str(BENCH / "dashboards.py"), "--fleet", fleet], check=True)


def bench_script(name: str, quick: bool) -> None:
    """One of the exporters package's benchmarks (bench/exporters/NAME.py), in its own process."""
    script = BENCH / "exporters" / f"{name}.py"
    subprocess.run([sys.executable, str(script), *(["--quick"] if quick else [])], check=True)


# dashboards: on the running demo fleet (make demo); converge measures them on its own fleet too.
SECTIONS = ["file_sd", "converge", "exporters", "llm", "ollama_proxy", "rules", "dashboards"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=SECTIONS, action="append")
    parser.add_argument("--quick", action="store_true", help="smaller runs where a section supports it")
    args = parser.parse_args()
    sections = args.only or SECTIONS
    if "file_sd" in sections:
        bench_file_sd()
    if "converge" in sections:
        bench_converge()
    scripts = {"exporters": "run", "llm": "llm", "ollama_proxy": "ollama_proxy"}
    for section, script in scripts.items():
        if section in sections:
            bench_script(script, args.quick)
    if "rules" in sections:
        subprocess.run([sys.executable, str(BENCH / "rules.py"), *(["--quick"] if args.quick else [])], check=True)
    if "dashboards" in sections and args.only:
        bench_dashboards("demo")
    return 0


if __name__ == "__main__":
    sys.exit(main())

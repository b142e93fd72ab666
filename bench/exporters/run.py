#!/usr/bin/env python3
"""Benchmarks of the llm_monitor exporters (requests only to 127.0.0.1; bench containers always removed).

    python bench/exporters/run.py            # full: 8 simulated GPUs, 1,000 scrapes; 50 and 100 containers
    python bench/exporters/run.py --quick    # smaller: 200 scrapes, 20 containers, fewer stats samples
    python bench/exporters/run.py --skip-containers

Figures printed:
- GPU exporter (subprocess, 8 simulated H100s): scrape latency p50/p99 over N keep-alive scrapes
  (target p99 < 5 ms), CPU time per collection cycle (in-process, collection + rendering), RSS after the
  scrapes (target < 40 MB).
- Container exporter with 50 and 100 running busybox containers: collection time (in-process, cgroup +
  /proc reads + rendering; target < 200 ms at 100), side by side with the Docker SDK's
  ``stats(stream=False)`` and ``stats(stream=False, one_shot=True)`` loops, each timed on a sample of
  containers and extrapolated (printed as such; target >= 20x faster than one_shot), RSS of the exporter
  process after N scrapes (target < 40 MB).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXPORTERS = ROOT / "files" / "exporters"
# the simulated upstreams (test doubles) are their own distribution, files/testkit
TESTKIT = ROOT / "files" / "testkit"
sys.path.insert(0, str(TESTKIT / "src"))
sys.path.insert(0, str(EXPORTERS / "src"))

from llm_monitor_exporters.core.collector import SnapshotLoop  # noqa: E402
from llm_monitor_exporters.gpu.gpu import GpuCollector, GpuConfig  # noqa: E402
from llm_monitor_exporters.gpu.nvml_simulation import SimulatedNvml  # noqa: E402

IMAGE = "llm-monitor-test/busybox:1"
PREFIX = "lmx-bench-"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def exporter(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_monitor_exporters",
            *args,
            "--listen-address",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "PYTHONPATH": str(EXPORTERS / "src"), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                scrape_once(http.client.HTTPConnection("127.0.0.1", port, timeout=2))
                break
            except OSError:
                time.sleep(0.1)
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def scrape_once(conn: http.client.HTTPConnection) -> bytes:
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"scrape failed: {resp.status}")
    return body


def scrape_loop(port: int, n: int) -> tuple[list[float], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    latencies = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        size = len(scrape_once(conn))
        latencies.append(time.perf_counter() - t0)
    conn.close()
    return latencies, size


def _cycles(loop: SnapshotLoop, n: int) -> tuple[list[float], list[float]]:
    loop.run_once()
    cpu, wall = [], []
    for _ in range(n):
        c0, t0 = time.thread_time(), time.perf_counter()
        loop.run_once()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return cpu, wall


def _scrapes(args: list[str], scrapes: int, env: dict[str, str] | None = None) -> tuple[float, float, float, int]:
    with exporter(*args, env=env) as (proc, port):
        time.sleep(1.5)  # XID and GPM helper threads running, a few cycles done
        lat, size = scrape_loop(port, scrapes)
        return pct(lat, 50) * 1e3, pct(lat, 99) * 1e3, rss_mb(proc.pid), size


def bench_gpu(scrapes: int) -> None:
    """8 GPUs: the simulation, then the C NVML double through the real pynvml (GPM on), side by side."""
    print("== GPU exporter: 8 x H200 (busy), simulation backend vs NVML backend on the C NVML double ==")
    sim = SimulatedNvml(gpus=8, model="H200", scenario="busy")
    collector = GpuCollector(GpuConfig(backend="simulation", xid_events=False, profiling=False), sim)
    sim_cpu, sim_wall = _cycles(SnapshotLoop(collector, interval=1), 200)
    collector.close()
    sim_scrape = _scrapes(["gpu", "--simulate", "--simulate-gpus", "8", "--simulate-model", "H200",
                           "--interval", "1"], scrapes)  # fmt: skip

    sys.path.insert(0, str(EXPORTERS / "tests"))
    from nvml_double import NvmlDouble

    double = NvmlDouble.load("current")
    double.reset("h200", 8)
    collector = GpuCollector(GpuConfig(backend="nvml", xid_events=False, profiling=False))
    nv_cpu, nv_wall = _cycles(SnapshotLoop(collector, interval=1), 200)
    calls = double.counter("calls")
    collector.close()
    # GPM: one sample per GPU and the metrics between two samples, as the profiling thread does
    from llm_monitor_exporters.gpu.nvml import GPM_METRICS, PynvmlBackend

    backend = PynvmlBackend()
    backend.init()
    handles = [backend.handle(i) for i in range(8)]
    previous = [backend.gpm_sample(h) for h in handles]
    gpm = []
    for _ in range(50):
        t0 = time.perf_counter()
        for i, h in enumerate(handles):
            sample = backend.gpm_sample(h)
            backend.gpm_metrics(previous[i], sample, list(GPM_METRICS))
            backend.gpm_free(previous[i])
            previous[i] = sample
        gpm.append((time.perf_counter() - t0) / 8)
    for sample in previous:
        backend.gpm_free(sample)
    backend.shutdown()
    collector = GpuCollector(GpuConfig(backend="nvml", xid_events=True, profiling=True, profiling_interval=1))
    gpm_cpu, gpm_wall = _cycles(SnapshotLoop(collector, interval=1), 200)
    collector.close()
    nv_scrape = _scrapes(["gpu", "--interval", "1", "--profiling-interval", "1"], scrapes,
                         env=NvmlDouble.env("current", profile="h200", gpus=8))  # fmt: skip

    def row(label: str, simulated: float, nvml: float, unit: str = "ms") -> None:
        print(f"  {label:<44} {simulated:9.2f} {nvml:9.2f} {unit:<3} x{nvml / simulated if simulated else 0:.2f}")

    print(f"  {'':<44} {'simulate':>9} {'double':>9}     ratio double/simulation")
    row("collection cycle CPU, mean", statistics.mean(sim_cpu) * 1e3, statistics.mean(nv_cpu) * 1e3)
    row("collection cycle wall, p50", pct(sim_wall, 50) * 1e3, pct(nv_wall, 50) * 1e3)
    row("collection cycle wall, p99", pct(sim_wall, 99) * 1e3, pct(nv_wall, 99) * 1e3)
    row("scrape latency p50", sim_scrape[0], nv_scrape[0])
    row("scrape latency p99", sim_scrape[1], nv_scrape[1])
    row("exporter RSS", sim_scrape[2], nv_scrape[2], "MB")
    row("exposition size", sim_scrape[3] / 1024, nv_scrape[3] / 1024, "KiB")
    print(f"  NVML calls per cycle on the double: {calls // 201}")
    print(f"  with XID and GPM threads on: cycle CPU mean {statistics.mean(gpm_cpu) * 1e3:.2f} ms, wall p99 "
          f"{pct(gpm_wall, 99) * 1e3:.2f} ms")  # fmt: skip
    print(f"  one GPM sample + metrics per GPU on the double: mean {statistics.mean(gpm) * 1e6:.0f} us, "
          f"p99 {pct(gpm, 99) * 1e6:.0f} us (off the scrape path: its own thread)")  # fmt: skip
    print(f"  scrape p99 target < 5 ms: simulation {'OK' if sim_scrape[1] < 5 else 'MISSED'}, "
          f"double {'OK' if nv_scrape[1] < 5 else 'MISSED'}")  # fmt: skip


def make_containers(client: Any, n: int, first: int = 0) -> list[Any]:
    def start(i: int) -> Any:
        return client.containers.run(
            IMAGE,
            ["sleep", "3600"],
            name=f"{PREFIX}{os.getpid()}-{i}",
            detach=True,
            network_mode="none",
            labels={"com.docker.compose.project": "lmxbench", "com.docker.compose.service": f"svc{i % 5}"},
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(start, range(first, first + n)))


def remove_bench_containers(client: Any) -> None:
    for c in client.containers.list(all=True, filters={"name": PREFIX}):
        with contextlib.suppress(Exception):
            c.remove(force=True)


def bench_containers(counts: list[int], scrapes: int, sample: int, sample_slow: int) -> None:
    import docker
    from llm_monitor_exporters.containers.containers import ContainerCollector, ContainersConfig

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        print(f"== container exporter: SKIPPED, no Docker engine answers ({exc}) ==")
        return
    subprocess.run(["bash", str(EXPORTERS / "tests" / "build_busybox_image.sh")], check=True)
    running: list[Any] = []
    try:
        for n in counts:
            print(f"== container exporter: {n} running containers ==")
            t0 = time.perf_counter()
            running += make_containers(client, n - len(running), first=len(running))
            print(f"(started {n} containers in {time.perf_counter() - t0:.1f} s)")
            collector = ContainerCollector(ContainersConfig(resync_interval=300))
            loop = SnapshotLoop(collector, interval=1)
            collector.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                up, metas, _ = collector.metadata.snapshot()
                if up and sum(1 for m in metas.values() if m.name.startswith(PREFIX)) >= n:
                    break
                time.sleep(0.2)
            loop.run_once()
            times, cpus = [], []
            for _ in range(20):
                c0, t1 = time.thread_time(), time.perf_counter()
                loop.run_once()
                times.append(time.perf_counter() - t1)
                cpus.append(time.thread_time() - c0)
            collector.close()
            ours = statistics.median(times)
            print(
                f"exporter collection (cgroup files + /proc, rendering incl.), median of 20: {ours * 1e3:.1f} ms "
                f"(CPU {statistics.median(cpus) * 1e3:.1f} ms)"
                + (f" (target < 200 ms at 100: {'OK' if ours < 0.2 else 'MISSED'})" if n >= 100 else "")
            )
            picked = running[:sample]
            t1 = time.perf_counter()
            for c in picked:
                client.api.stats(c.id, stream=False, one_shot=True)
            one_shot = (time.perf_counter() - t1) / len(picked) * n
            picked_slow = running[:sample_slow]
            t1 = time.perf_counter()
            for c in picked_slow:
                client.api.stats(c.id, stream=False)
            full = (time.perf_counter() - t1) / len(picked_slow) * n
            print(
                f"docker stats(stream=False, one_shot=True): {one_shot * 1e3:.0f} ms for {n} "
                f"(EXTRAPOLATED from {len(picked)} sampled containers)"
            )
            print(
                f"docker stats(stream=False):                {full:.1f} s for {n} "
                f"(EXTRAPOLATED from {len(picked_slow)} sampled containers)"
            )
            ratio = one_shot / ours
            print(
                f"ratio: exporter is {ratio:.0f}x faster than one_shot stats (target >= 20x: "
                f"{'OK' if ratio >= 20 else 'MISSED'}), {full / ours:.0f}x faster than stats(stream=False)"
            )
            with exporter("containers", "--interval", "1") as (proc, port):
                time.sleep(2)
                lat, size = scrape_loop(port, scrapes)
                mem = rss_mb(proc.pid)
                print(
                    f"exporter process: {scrapes} scrapes ({size / 1024:.0f} KiB each) "
                    f"p50 {pct(lat, 50) * 1e3:.2f} ms, p99 {pct(lat, 99) * 1e3:.2f} ms; "
                    f"RSS {mem:.1f} MB (target < 40 MB: "
                    f"{'OK' if mem < 40 else 'MISSED'})"
                )
    finally:
        remove_bench_containers(client)
        print(f"(removed bench containers {PREFIX}*)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer scrapes, 20 containers, fewer samples")
    parser.add_argument("--skip-containers", action="store_true", help="GPU exporter only (no Docker needed)")
    parser.add_argument("--skip-gpu", action="store_true", help="container exporter only")
    parser.add_argument("--containers", default="50,100", help="container counts for the full run (default 50,100)")
    args = parser.parse_args()
    scrapes = 200 if args.quick else 1000
    if not args.skip_gpu:
        bench_gpu(scrapes)
    if not args.skip_containers:
        if args.quick:
            bench_containers([20], scrapes, sample=5, sample_slow=2)
        else:
            bench_containers([int(x) for x in args.containers.split(",")], scrapes, sample=10, sample_slow=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

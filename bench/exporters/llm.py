#!/usr/bin/env python3
"""Benchmarks of the vllm, litellm and langfuse exporters (requests only to 127.0.0.1).

    python bench/exporters/llm.py            # 8 simulated vLLM servers, 200 cycles/scrapes
    python bench/exporters/llm.py --quick    # 50 cycles/scrapes

Figures printed per exporter: collection time per cycle (in-process, p50/p99, probing/polling +
rendering; Langfuse and LiteLLM cycles served from cache are timed separately from polling ones),
and the RSS of the exporter process (subprocess, CLI) after N scrapes. LiteLLM runs against a real
proxy when .cache/litellm-venv exists (tests build it), else it is skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files" / "exporters" / "tests"))

from llm_monitor_exporters.core.collector import Collector, SnapshotLoop
from llm_monitor_exporters.langfuse.langfuse import LangfuseCollector, LangfuseConfig, LangfuseProject
from llm_monitor_exporters.litellm.litellm import LitellmCollector, LitellmConfig
from llm_monitor_exporters.vllm.vllm import StaticEndpoint, VllmCollector, VllmConfig
from llm_monitor_testkit.langfuse_sim import SimulatedLangfuse, SimulatedLangfuseServer
from llm_monitor_testkit.vllm_sim import SimulatedVllm, SimulatedVllmServer
from run import exporter, free_port, pct, rss_mb, scrape_loop


def cycles(collector: Collector, n: int) -> list[float]:
    loop = SnapshotLoop(collector, 1)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        loop.run_once()
        out.append(time.perf_counter() - t0)
    return out


def show(name: str, times: list[float]) -> None:
    print(
        f"{name}: collection p50 {pct(times, 50) * 1000:.2f} ms, p99 {pct(times, 99) * 1000:.2f} ms "
        f"({len(times)} cycles)"
    )


def rss(args: list[str], scrapes: int) -> None:
    with exporter(*args) as (proc, port):
        time.sleep(1.5)
        lat, size = scrape_loop(port, scrapes)
        print(
            f"exporter RSS after {scrapes} scrapes: {rss_mb(proc.pid):.1f} MB; scrape p99 "
            f"{pct(lat, 99) * 1000:.2f} ms, {size} bytes"
        )


def bench_vllm(n: int, servers: int, tmp: Path) -> None:
    print(f"== vllm exporter: {servers} simulated vLLM servers (static endpoints, Docker discovery off) ==")
    sims = []
    for _ in range(servers):
        srv = SimulatedVllmServer(("127.0.0.1", 0), SimulatedVllm())
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        sims.append(srv)
    eps = [StaticEndpoint(address=f"127.0.0.1:{s.port}", name=f"sim{i}") for i, s in enumerate(sims)]
    col = VllmCollector(VllmConfig(docker=False, static_endpoints=eps, models_refresh=60))
    show("vllm", cycles(col, n))
    col.close()
    cfg = tmp / "vllm.yml"
    cfg.write_text(
        "vllm:\n  docker: false\n  static_endpoints:\n" + "".join(f"    - address: 127.0.0.1:{s.port}\n" for s in sims)
    )
    rss(["vllm", "--config", str(cfg), "--interval", "0.5"], n)
    for s in sims:
        s.shutdown()
        s.server_close()


def bench_langfuse(n: int, tmp: Path) -> None:
    print("== langfuse exporter: 1 project against the simulated Langfuse API ==")
    srv = SimulatedLangfuseServer(("127.0.0.1", 0), SimulatedLangfuse("pk", "sk"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    secret = tmp / "sk"
    secret.write_text("sk\n")
    project = LangfuseProject(
        name="bench", host=f"http://127.0.0.1:{srv.port}", public_key="pk", secret_key_file=str(secret)
    )
    polling = cycles(LangfuseCollector(LangfuseConfig(projects=[project], poll_interval=1)), 1) + [
        cycles(LangfuseCollector(LangfuseConfig(projects=[project])), 1)[0] for _ in range(min(n, 30))
    ]
    show("langfuse (polling cycles, 4 API calls)", polling)
    show("langfuse (cached cycles)", cycles(LangfuseCollector(LangfuseConfig(projects=[project])), n)[1:])
    cfg = tmp / "langfuse.yml"
    cfg.write_text(
        f"langfuse:\n  projects:\n    - name: bench\n      host: http://127.0.0.1:{srv.port}\n"
        f"      public_key: pk\n      secret_key_file: {secret}\n"
    )
    rss(["langfuse", "--config", str(cfg)], n)
    srv.shutdown()
    srv.server_close()


def bench_litellm(n: int, tmp: Path) -> None:
    from litellm_proxy import MASTER_KEY, VENV, LitellmProxy

    if not (VENV / "bin" / "litellm").exists():
        print(f"== litellm exporter: SKIPPED, no LiteLLM venv at {VENV} (run the tests once to build it) ==")
        return
    print("== litellm exporter: real LiteLLM proxy 1.106.2, 2 mock deployments, no database ==")
    proxy = LitellmProxy(tmp, free_port())
    proxy.start()
    try:
        key = tmp / "master.key"
        key.write_text(MASTER_KEY + "\n")
        col = LitellmCollector(LitellmConfig(base_url=proxy.url, master_key_file=str(key)))
        times = cycles(col, n)
        show("litellm (first cycle: /model/info, /health, spend)", times[:1])
        show("litellm (steady cycles: liveliness + readiness)", times[1:])
        cfg = tmp / "litellm.yml"
        cfg.write_text(f"litellm:\n  base_url: {proxy.url}\n  master_key_file: {key}\n")
        rss(["litellm", "--config", str(cfg)], n)
    finally:
        proxy.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ns = ap.parse_args()
    n = 50 if ns.quick else 200
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_vllm(n, 8, tmp)
        bench_langfuse(n, tmp)
        bench_litellm(n, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

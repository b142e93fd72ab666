#!/usr/bin/env python3
"""Record the /metrics of this collection's exporters into tests/unit/fixtures/expositions/llm_monitor_<name>.prom.

tests/unit/test_rule_metrics.py checks every metric and label the alert rules use against these recordings (and
against the recorded upstreams: node_exporter, Prometheus, Alertmanager, vLLM, LiteLLM). Each exporter runs
in-process, as ``llm-monitor-exporter <name>`` would run it (its collector in a SnapshotLoop, or the Ollama proxy's
aiohttp server), against the test doubles of files/testkit, the real local Docker engine (throwaway busybox
containers named lmx-record-*, removed afterwards) and, for LiteLLM, a small local HTTP server answering with the
bodies recorded from a real LiteLLM 1.106.2 (files/exporters/tests/fixtures/litellm). Each exporter is driven so
that every series it can emit appears at least once.

    .venv/bin/python tests/harness/record_expositions.py                   # all of them
    .venv/bin/python tests/harness/record_expositions.py vllm containers   # some
    .venv/bin/python tests/harness/record_expositions.py --out /tmp/x      # elsewhere

Needs the venv of files/exporters and files/testkit (README of files/exporters: "Install") and, for the vllm and
containers exporters, a running Docker engine with the image llm-monitor-test/busybox:1
(files/exporters/tests/build_busybox_image.sh builds it). Prints each file it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
from llm_monitor_exporters import __version__ as EXPORTERS_VERSION
from llm_monitor_exporters.containers.containers import ContainerCollector, ContainersConfig
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.core.webconfig import WebConfig
from llm_monitor_exporters.gpu.gpu import GpuCollector, GpuConfig
from llm_monitor_exporters.gpu.nvml_simulation import SimulatedNvml
from llm_monitor_exporters.langfuse.langfuse import LangfuseCollector, LangfuseConfig, LangfuseProject
from llm_monitor_exporters.litellm.litellm import LitellmCollector, LitellmConfig
from llm_monitor_exporters.ollama.ollama_proxy import OllamaProxy, OllamaProxyConfig
from llm_monitor_exporters.vllm.vllm import StaticEndpoint, VllmCollector, VllmConfig
from llm_monitor_testkit.langfuse_sim import SimulatedLangfuse, SimulatedLangfuseServer
from llm_monitor_testkit.ollama_sim import OllamaSimulator
from llm_monitor_testkit.vllm_sim import SimulatedVllm, SimulatedVllmServer

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests/unit/fixtures/expositions"
LITELLM_RECORDED = REPO / "files/exporters/tests/fixtures/litellm"
TEST_IMAGE = "llm-monitor-test/busybox:1"
DOCKER_URL = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
PREFIX = "lmx-record"  # fixed names, so that a new recording differs from the last only where the exporter does
VLLM_MODEL = "simulated/llama-3-8b-instruct"


def wait_for(check: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def header(exporter: str, how: str) -> str:
    return (
        f"# recorded by tests/harness/record_expositions.py: llm-monitor-exporter {exporter} "
        f"(llm_monitor_exporters {EXPORTERS_VERSION}), {how}\n"
    )


# --- Docker (the CLI, as a user would) -------------------------------------------------------------------------


def docker(*args: str) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout.strip()


@contextlib.contextmanager
def containers(*specs: tuple[str, list[str], list[str]]) -> Iterator[list[str]]:
    """Start throwaway busybox containers (suffix, docker run options, command); yields their names; removes them."""
    try:
        docker("image", "inspect", TEST_IMAGE)
    except RuntimeError:
        subprocess.run(["bash", str(REPO / "files/exporters/tests/build_busybox_image.sh")], check=True, timeout=300)
    names: list[str] = []
    try:
        for suffix, options, command in specs:
            name = f"{PREFIX}-{suffix}"
            names.append(name)  # before run: a container that fails to start is removed too
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)  # one left by a killed run
            docker("run", "-d", "--name", name, *options, TEST_IMAGE, *command)
        yield names
    finally:
        for name in names:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def health(name: str) -> str:
    return docker("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", name)


_NAME_LABEL = re.compile(r'[{,]name="((?:[^"\\]|\\.)*)"')


def only_containers(text: str, names: list[str]) -> str:
    """The exposition without the samples of containers other than ``names`` (other jobs' containers on this
    engine), so that the recording does not depend on what else runs here."""
    keep = []
    for line in text.splitlines():
        m = _NAME_LABEL.search(line) if not line.startswith("#") else None
        if m is None or m.group(1) in names:
            keep.append(line)
    return "\n".join(keep) + "\n"


# --- the exporters ---------------------------------------------------------------------------------------------


def record_vllm() -> str:
    """A static endpoint to the simulated vLLM (answering) and a labelled container (discovered through Docker,
    with a GPU assigned; busybox does not speak HTTP, so it is the unreachable server)."""
    sim = SimulatedVllm(VLLM_MODEL, max_model_len=32768)
    server = SimulatedVllmServer(("127.0.0.1", 0), sim)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    label = f"{PREFIX}-vllm"
    cfg = VllmConfig(
        docker_url=DOCKER_URL,
        advertise_host="node-1",
        host_label="node-1",
        match_label=f"{label}=true",
        match_images=[],
        match_commands=[],
        probe_timeout=0.5,
        static_endpoints=[StaticEndpoint(address=f"127.0.0.1:{server.port}", name="vllm-static")],
    )
    col = VllmCollector(cfg)
    loop = SnapshotLoop(col, 1)
    col.start()
    try:
        run = ["--label", f"{label}=true", "--label", "llm-monitor.vllm.port=8000", "-p", "127.0.0.1::8000"]
        run += ["-e", "NVIDIA_VISIBLE_DEVICES=1"]
        with containers(("vllm", run, ["sh", "-c", "sleep 600"])) as names:

            def both_discovered() -> bool:
                loop.run_once()
                return {g["labels"]["container"] for g in json.loads(col.sd_document()[2])} == {*names, "vllm-static"}

            wait_for(both_discovered, 20, "the vLLM exporter to discover the container and the static endpoint")
            loop.run_once()
            text = loop.latest().decode()
    finally:
        col.close()
        server.shutdown()
        server.server_close()
    return header("vllm", "a static endpoint to SimulatedVllm and a labelled container found through Docker") + text


def record_containers() -> str:
    """Three containers: running and healthy (compose labels, a memory limit, a GPU), running and unhealthy,
    exited with code 3."""
    col = ContainerCollector(ContainersConfig(docker_url=DOCKER_URL, resync_interval=60))
    loop = SnapshotLoop(col, 1)
    col.start()
    compose = ["--label", "com.docker.compose.project=lmx-record", "--label", "com.docker.compose.service=app"]
    healthy = ["--health-cmd", "true", "--health-interval", "1s", "--memory", "64m", "-e", "NVIDIA_VISIBLE_DEVICES=0"]
    unhealthy = ["--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1"]
    try:
        with containers(
            ("healthy", [*compose, *healthy], ["sh", "-c", "dd if=/dev/zero of=/tmp/f bs=1M count=4; sleep 600"]),
            ("unhealthy", unhealthy, ["sh", "-c", "sleep 600"]),
            ("exited", [], ["sh", "-c", "exit 3"]),
        ) as names:
            wait_for(lambda: health(names[0]) == "healthy", 30, f"{names[0]} to be healthy")
            wait_for(lambda: health(names[1]) == "unhealthy", 30, f"{names[1]} to be unhealthy")
            wait_for(lambda: docker("inspect", "-f", "{{.State.Status}}", names[2]) == "exited", 30, "exit")

            def all_seen() -> bool:
                loop.run_once()
                text = loop.latest().decode()
                return all(f'name="{n}"' in text for n in names) and 'status="unhealthy"} 1' in text

            wait_for(all_seen, 20, "the container exporter to see the three containers")
            text = only_containers(loop.latest().decode(), names)
    finally:
        col.close()
    return header("containers", "three busybox containers on the local Docker engine") + text


class _FakeLitellm(BaseHTTPRequestHandler):
    """The endpoints the LiteLLM exporter calls, answering as LiteLLM 1.106.2 does: /model/info and /health with
    the bodies recorded from a real proxy; /health/liveliness, /health/readiness and /global/spend/* as its source
    answers them (litellm/proxy/health_endpoints/_health_endpoints.py, spend_management_endpoints.py). Without a
    database the spend endpoints fail with 500 {"detail": {"error": "No db connected"}}; ``database`` answers them
    with rows of LiteLLM's views (Last30dKeysBySpend, Last30dModelsBySpend; /global/spend/teams' own shape)."""

    database = False
    key = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health/liveliness":
            return self._send(200, "I'm alive!")
        if path == "/health/readiness":
            return self._send(200, {"status": "healthy", "db": "connected" if self.database else "Not connected"})
        if self.headers.get("Authorization") != f"Bearer {self.key}":
            return self._send(401, {"error": {"message": "Authentication Error", "type": "auth_error", "code": "401"}})
        if path == "/model/info":
            return self._send(200, json.loads((LITELLM_RECORDED / "model_info.json").read_text()))
        if path == "/health":
            return self._send(200, json.loads((LITELLM_RECORDED / "health.json").read_text()))
        if path.startswith("/global/spend/"):
            if not self.database:
                return self._send(500, {"detail": {"error": "No db connected"}})
            if path == "/global/spend/keys":
                row = {"api_key": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"}
                return self._send(
                    200, [{**row, "key_alias": "team-a-key", "key_name": "sk-...Xa1b", "total_spend": 1.25}]
                )
            if path == "/global/spend/models":
                return self._send(200, [{"model": "gpt-4o-mini", "total_spend": 1.25}])
            if path == "/global/spend/teams":
                per_team = [{"team_id": "team-a", "total_spend": 1.25}]
                return self._send(200, {"daily_spend": [], "teams": ["team-a"], "total_spend_per_team": per_team})
        return self._send(404, {"detail": "Not Found"})


def record_litellm(database: bool) -> str:
    handler = type("Handler", (_FakeLitellm,), {"database": database, "key": "sk-lmx-record"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        keyfile = Path(tmp) / "master_key"
        keyfile.write_text("sk-lmx-record\n")
        col = LitellmCollector(
            LitellmConfig(base_url=f"http://127.0.0.1:{server.server_address[1]}", master_key_file=str(keyfile))
        )
        loop = SnapshotLoop(col, 1)
        try:
            loop.run_once()
            text = loop.latest().decode()
        finally:
            col.close()
            server.shutdown()
            server.server_close()
    how = "a local server answering with the bodies of a real LiteLLM 1.106.2, " + (
        "spend endpoints answering with rows shaped as LiteLLM's database views" if database else "no database"
    )
    return header("litellm", how) + text


def record_langfuse() -> str:
    """Three projects on three simulated servers: prod (Langfuse v4 events_only, v2 metrics API, hobby plan: the
    call budgets), legacy (Langfuse v3, self-hosted: the v1 API), limited (rate-limited: 429s and the back-off)."""
    servers: list[SimulatedLangfuseServer] = []
    projects = []
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / "secret"
        secret.write_text("sk-lf-record\n")
        for name, server, mode, plan in (
            ("prod", "v4_events_only", "normal", "hobby"),
            ("legacy", "v3", "normal", "self_hosted"),
            ("limited", "v4_events_only", "rate_limited", "self_hosted"),
        ):
            sim = SimulatedLangfuse("pk-lf-record", "sk-lf-record", mode, retry_after=120, server=server, plan=plan)
            servers.append(SimulatedLangfuseServer(("127.0.0.1", 0), sim))
            threading.Thread(target=servers[-1].serve_forever, daemon=True).start()
            host = f"http://127.0.0.1:{servers[-1].port}"
            projects.append(
                LangfuseProject(name=name, host=host, public_key="pk-lf-record", secret_key_file=str(secret), plan=plan)
            )
        col = LangfuseCollector(LangfuseConfig(projects=projects, timeout=2.0))
        loop = SnapshotLoop(col, 1)
        try:
            loop.run_once()
            text = loop.latest().decode()
        finally:
            col.close()
            for s in servers:
                s.shutdown()
                s.server_close()
    return header("langfuse", "three projects on SimulatedLangfuse (v4 hobby, v3 self-hosted, rate-limited)") + text


async def _ollama() -> str:
    sim = OllamaSimulator("normal", tokens=16, token_interval=0.02, first_token_delay=0.02, thinking_tokens=4)
    port = await sim.start("127.0.0.1", 0)
    proxy = OllamaProxy(OllamaProxyConfig(upstream_url=f"http://127.0.0.1:{port}"), WebConfig(), poll_interval=3600)
    await proxy.start("127.0.0.1:0", "127.0.0.1:0")
    url = f"http://127.0.0.1:{proxy.proxy_port}"
    user = [{"role": "user", "content": "Why is the sky blue?"}]
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # the first background poll (/api/ps, /api/tags, /api/version)
                if proxy.self_metrics.collections:
                    break
                await asyncio.sleep(0.05)
            for path, payload in (
                ("/api/generate", {"model": "llama3.2", "prompt": "hi"}),  # streamed (no "stream": NDJSON)
                ("/api/chat", {"model": "qwen3:4b", "messages": user}),  # streamed, thinking first
                ("/api/chat", {"model": "llama3.2", "messages": user, "stream": False}),
                ("/api/embed", {"model": "all-minilm", "input": ["a", "b"]}),
                ("/v1/chat/completions", {"model": "llama3.2", "messages": user, "stream": True}),
                ("/api/generate", {"model": "no-such-model", "prompt": "hi"}),  # 404: model "other"
            ):
                async with session.post(url + path, json=payload) as r:
                    await r.read()
            for path in ("/api/tags", "/api/ps", "/api/version"):
                async with session.get(url + path) as r:
                    await r.read()
            # a client that goes away after the first chunk
            async with session.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "long"}) as r:
                await r.content.readline()
                r.close()
            text = ""
            for _ in range(100):  # until the proxy has seen the disconnect
                async with session.get(f"http://127.0.0.1:{proxy.metrics_port}/metrics") as m:
                    text = await m.text()
                if "llm_monitor_ollama_client_disconnects_total{" in text:
                    break
                await asyncio.sleep(0.05)
            return text
    finally:
        await proxy.close()
        await sim.close()


def record_ollama_proxy() -> str:
    text = asyncio.run(asyncio.wait_for(_ollama(), 60))
    how = "OllamaSimulator behind the proxy: streamed generate and chat (thinking model), chat, embed, OpenAI chat, "
    return header("ollama_proxy", how + "a 404, the poll endpoints, a client that went away") + text


def record_gpu(model: str, driver: str, scenario: str) -> str:
    """The H200 exposition is tests/unit/fixtures/gpu_exporter_h200(_mig).prom; these add what other GPUs serve
    and an H200 does not (retired pages before Ampere, the fan of a workstation board) and the self-metrics."""
    cfg = GpuConfig(backend="simulation")
    backend = SimulatedNvml(gpus=2, model=model, scenario=scenario, mig_devices=0, driver=driver)
    col = GpuCollector(cfg, backend)
    loop = SnapshotLoop(col, 1)
    col.start()  # the XID and GPM threads
    try:
        loop.run_once()
        loop.run_once()
        text = loop.latest().decode()
    finally:
        col.close()
    return header("gpu", f"simulation backend, 2 x {backend.model.name}, driver {driver}, scenario {scenario}") + text


RECORDERS: dict[str, tuple[str, Callable[[], str]]] = {
    "vllm": ("llm_monitor_vllm.prom", record_vllm),
    "containers": ("llm_monitor_containers.prom", record_containers),
    "litellm": ("llm_monitor_litellm.prom", lambda: record_litellm(database=False)),
    "litellm_database": ("llm_monitor_litellm_database.prom", lambda: record_litellm(database=True)),
    "langfuse": ("llm_monitor_langfuse.prom", record_langfuse),
    "ollama_proxy": ("llm_monitor_ollama_proxy.prom", record_ollama_proxy),
    "gpu_p100": ("llm_monitor_gpu_p100.prom", lambda: record_gpu("P100", "470.256.02", "ecc_errors")),
    "gpu_rtx6000": ("llm_monitor_gpu_rtx6000.prom", lambda: record_gpu("RTX 6000", "550.127.05", "busy")),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "exporters", nargs="*", metavar="EXPORTER", help=f"any of {', '.join(RECORDERS)} (default: all)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"directory (default {OUT.relative_to(REPO)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.exporters) - set(RECORDERS))
    if unknown:
        parser.error(f"unknown exporter {', '.join(unknown)} (known: {', '.join(RECORDERS)})")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.exporters or list(RECORDERS):
        file, record = RECORDERS[name]
        text = record()
        path = args.out / file
        path.write_text(text)
        samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        print(f"wrote {path} ({samples} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

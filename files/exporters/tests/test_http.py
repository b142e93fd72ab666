"""HTTP serving: plain scrape, TLS + basic auth (exporter-toolkit web config), hang isolation."""

from __future__ import annotations

import base64
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port, parse_samples, scrape, value
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.core.httpserver import ListenError, MetricsServer, parse_listen_address
from llm_monitor_exporters.core.webconfig import WebConfig, load_web_config
from llm_monitor_exporters.gpu.gpu import GpuCollector, GpuConfig
from llm_monitor_exporters.gpu.nvml_simulation import SimulatedNvml


@pytest.fixture
def sim_loop() -> Iterator[tuple[SnapshotLoop, SimulatedNvml]]:
    sim = SimulatedNvml(gpus=2, scenario="busy")
    collector = GpuCollector(GpuConfig(backend="simulation", xid_events=False, profiling=False), sim)
    loop = SnapshotLoop(collector, interval=0.1)
    loop.run_once()
    yield loop, sim
    loop.stop(timeout=1)
    collector.close()


def serve(loop: SnapshotLoop, web: WebConfig | None = None) -> MetricsServer:
    server = MetricsServer(f"127.0.0.1:{free_port()}", loop, web or WebConfig())
    server.serve_in_thread()
    return server


def test_plain_scrape_and_paths(sim_loop: tuple[SnapshotLoop, SimulatedNvml]) -> None:
    loop, _ = sim_loop
    server = serve(loop)
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = scrape(base + "/metrics")
        assert value(parse_samples(text), "llm_monitor_gpu_up", gpu="1") == 1
        assert "Metrics" in scrape(base + "/")
        with pytest.raises(urllib.error.HTTPError) as info:
            scrape(base + "/nope")
        assert info.value.code == 404
        req = urllib.request.Request(base + "/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    finally:
        server.shutdown()
        server.server_close()


def test_scrape_stays_fast_while_upstream_hangs(sim_loop: tuple[SnapshotLoop, SimulatedNvml]) -> None:
    """The driver hangs for 10 s (longer than a 1 s scrape timeout): scrapes answer from the last snapshot."""
    loop, sim = sim_loop
    server = serve(loop)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        sim.hang(10)
        loop.start()
        time.sleep(0.3)  # the loop is now blocked inside NVML
        t0 = time.perf_counter()
        for _ in range(20):
            text = scrape(url, timeout=1)
        per_scrape = (time.perf_counter() - t0) / 20
        assert per_scrape < 0.1
        s = parse_samples(text)
        assert value(s, "llm_monitor_gpu_up", gpu="0") == 1
        assert value(s, "llm_monitor_exporter_snapshot_age_seconds") >= 0.2
    finally:
        sim.hang(0)
        server.shutdown()
        server.server_close()


def test_port_in_use(sim_loop: tuple[SnapshotLoop, SimulatedNvml]) -> None:
    loop, _ = sim_loop
    server = serve(loop)
    try:
        with pytest.raises(ListenError, match=f"127.0.0.1:{server.port}: address already in use"):
            MetricsServer(f"127.0.0.1:{server.port}", loop, WebConfig())
    finally:
        server.shutdown()
        server.server_close()


def test_parse_listen_address() -> None:
    assert parse_listen_address(":9835") == ("", 9835)
    assert parse_listen_address("[::1]:9417") == ("::1", 9417)
    with pytest.raises(ListenError):
        parse_listen_address("9835")
    with pytest.raises(ListenError):
        parse_listen_address("host:http")


def _get(url: str, ctx: ssl.SSLContext, user: str | None = None, password: str = "") -> tuple[int, str, dict[str, str]]:
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def test_tls_and_basic_auth(sim_loop: tuple[SnapshotLoop, SimulatedNvml], tls_files: Path) -> None:
    loop, _ = sim_loop
    web = load_web_config(tls_files / "web.yml")
    server = serve(loop, web)
    ctx = ssl.create_default_context(cafile=str(tls_files / "server.crt"))
    url = f"https://127.0.0.1:{server.port}/metrics"
    try:
        code, body, headers = _get(url, ctx, "prometheus", "s3cret")
        assert code == 200
        assert "llm_monitor_gpu_up" in body
        assert headers.get("X-Content-Type-Options") == "nosniff"
        code, _, headers = _get(url, ctx, "prometheus", "wrong")
        assert code == 401
        assert "Basic" in headers.get("WWW-Authenticate", "")
        assert _get(url, ctx)[0] == 401
        assert _get(url, ctx, "nobody", "s3cret")[0] == 401
        # plain HTTP against the TLS port does not get metrics
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            scrape(f"http://127.0.0.1:{server.port}/metrics", timeout=2)
        # cached bcrypt: 20 authenticated scrapes stay fast
        t0 = time.perf_counter()
        for _ in range(20):
            assert _get(url, ctx, "prometheus", "s3cret")[0] == 200
        assert (time.perf_counter() - t0) / 20 < 0.1
    finally:
        server.shutdown()
        server.server_close()


def test_slow_tls_client_does_not_block_others(sim_loop: tuple[SnapshotLoop, SimulatedNvml], tls_files: Path) -> None:
    import socket

    loop, _ = sim_loop
    server = serve(loop, load_web_config(tls_files / "web.yml"))
    ctx = ssl.create_default_context(cafile=str(tls_files / "server.crt"))
    stalled = socket.create_connection(("127.0.0.1", server.port))  # never sends a ClientHello
    try:
        done = threading.Event()

        def worker() -> None:
            if _get(f"https://127.0.0.1:{server.port}/metrics", ctx, "prometheus", "s3cret")[0] == 200:
                done.set()

        threading.Thread(target=worker, daemon=True).start()
        assert done.wait(5)
    finally:
        stalled.close()
        server.shutdown()
        server.server_close()

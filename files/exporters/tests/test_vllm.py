"""vLLM exporter: discovery rules, probes against the simulated vLLM, HTTP SD (with basic auth), faults, Docker."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import bcrypt
import pytest
from llm_monitor_testkit.vllm_sim import SimulatedVllm, SimulatedVllmServer

from conftest import free_port, parse_samples, value, wait_for
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.core.config import ConfigError
from llm_monitor_exporters.core.httpserver import MetricsServer
from llm_monitor_exporters.core.webconfig import load_web_config
from llm_monitor_exporters.vllm.vllm import StaticEndpoint, VllmCollector, VllmConfig, parse_models
from llm_monitor_exporters.vllm.vllm_discovery import matches, server_port, target_for

MODEL = "simulated/llama-3-8b-instruct"


def _inspect(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "Id": "abc123",
        "Name": "/vllm-a",
        "RestartCount": 2,
        "Path": "python3",
        "Args": ["-m", "vllm.entrypoints.openai.api_server", "--model", "m", "--port", "8001"],
        "Config": {
            "Image": "vllm/vllm-openai:v0.11.0",
            "Labels": {},
            "Env": ["CUDA_VISIBLE_DEVICES=2,3"],
            "Entrypoint": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
            "Cmd": ["--model", "m", "--port", "8001"],
        },
        "HostConfig": {
            "NetworkMode": "bridge",
            "DeviceRequests": [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0"], "Capabilities": [["gpu"]]}],
        },
        "NetworkSettings": {
            "Ports": {"8001/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18001"}, {"HostIp": "::", "HostPort": "18001"}]},
            "Networks": {"bridge": {"IPAddress": "172.17.0.5"}},
        },
    }
    data.update(over)
    return data


def test_matching_rules() -> None:
    images, label, cmds = ["vllm/vllm-openai*"], "llm-monitor.vllm=true", ["vllm serve", "vllm.entrypoints.openai"]
    assert matches(_inspect(), images, label, cmds) == "image"
    other = _inspect(Config={"Image": "busybox", "Labels": {"llm-monitor.vllm": "True"}, "Cmd": ["sleep"]})
    assert matches(other, images, label, cmds) == "label"
    cmd = _inspect(Config={"Image": "my/llm:1", "Cmd": ["vllm", "serve", "Qwen/Qwen3"]})
    assert matches(cmd, images, label, cmds) == "command"
    assert matches(_inspect(Config={"Image": "busybox", "Cmd": ["sleep"]}), images, label, cmds) is None


def test_address_derivation() -> None:
    t = target_for(_inspect(), mode="auto", advertise_host="gpu-node-1", network="", default_port=8000, port_label="")
    assert t is not None
    assert (t.address, t.probe, t.container) == ("gpu-node-1:18001", "127.0.0.1:18001", "vllm-a")
    assert t.gpus == ("0", "2", "3") and t.restarts == 2
    t = target_for(_inspect(), mode="container_ip", advertise_host="h", network="", default_port=8000, port_label="")
    assert t is not None and t.address == "172.17.0.5:8001"
    host_net = _inspect(HostConfig={"NetworkMode": "host"}, NetworkSettings={"Ports": {}, "Networks": {}})
    t = target_for(host_net, mode="auto", advertise_host="h", network="", default_port=8000, port_label="")
    assert t is not None and (t.address, t.probe) == ("h:8001", "127.0.0.1:8001")
    bound = _inspect(NetworkSettings={"Ports": {"8001/tcp": [{"HostIp": "10.0.0.5", "HostPort": "9000"}]}})
    t = target_for(bound, mode="published", advertise_host="h", network="", default_port=8000, port_label="")
    assert t is not None and t.address == "10.0.0.5:9000"
    none = _inspect(NetworkSettings={"Ports": {}, "Networks": {}})
    assert target_for(none, mode="auto", advertise_host="h", network="", default_port=8000, port_label="") is None
    labelled = _inspect(Config={"Labels": {"p": "7000"}, "Cmd": ["vllm", "serve", "--port=8001"]})
    assert server_port(labelled, 8000, "p") == 7000 and server_port(labelled, 8000, "") == 8001


def test_parse_models() -> None:
    assert parse_models({"data": [{"id": "a", "max_model_len": 4096}, {"id": "b"}]}) == [("a", 4096), ("b", None)]
    assert parse_models({"data": [{"no": "id"}]}) is None
    assert parse_models([]) is None


@pytest.fixture
def sim() -> Iterator[tuple[SimulatedVllm, int]]:
    s = SimulatedVllm(MODEL, max_model_len=32768)
    server = SimulatedVllmServer(("127.0.0.1", 0), s)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield s, server.port
    server.shutdown()
    server.server_close()


def _static(port: int, **kw: Any) -> VllmCollector:
    cfg = VllmConfig(
        docker=False,
        static_endpoints=[StaticEndpoint(address=f"127.0.0.1:{port}", name="static-a")],
        host_label="node-1",
        **kw,
    )
    return VllmCollector(cfg)


def _samples(loop: SnapshotLoop) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    loop.run_once()
    text = loop.latest().decode()
    return text, parse_samples(text)


def test_static_endpoint_metrics_and_sd(sim: tuple[SimulatedVllm, int], promtool: Callable[[str], None]) -> None:
    s, port = sim
    col = _static(port)
    loop = SnapshotLoop(col, 1)
    text, samples = _samples(loop)
    promtool(text)
    lbl = {"target": f"127.0.0.1:{port}", "container": "static-a", "source": "static"}
    assert value(samples, "llm_monitor_vllm_up", **lbl) == 1
    assert value(samples, "llm_monitor_vllm_model_info", model=MODEL, **lbl) == 1
    assert value(samples, "llm_monitor_vllm_max_model_len", model=MODEL, **lbl) == 32768
    assert value(samples, "llm_monitor_vllm_servers", source="static") == 1
    code, ctype, body = col.sd_document()
    assert code == 200 and ctype == "application/json"
    assert json.loads(body) == [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"host": "node-1", "container": "static-a", "model": MODEL}}
    ]
    assert value(samples, "llm_monitor_vllm_http_reachable", **lbl) == 1
    # a dead engine: /health 503 with an empty body while /metrics still answers 200 -> down, but reachable
    s.set_scenario("engine_dead")
    assert _get(port, "/metrics")[0] == 200 and _get(port, "/health") == (503, b"")
    _text, samples = _samples(loop)
    assert value(samples, "llm_monitor_vllm_up", **lbl) == 0
    assert value(samples, "llm_monitor_vllm_http_reachable", **lbl) == 1
    assert value(samples, "llm_monitor_exporter_collection_errors_total", kind="engine_unhealthy") == 1
    # everything 503 -> the same
    s.set_scenario("upstream_down")
    _text, samples = _samples(loop)
    assert value(samples, "llm_monitor_vllm_up", **lbl) == 0
    assert value(samples, "llm_monitor_exporter_collection_errors_total", kind="engine_unhealthy") == 2
    s.set_scenario("normal")
    _text, samples = _samples(loop)
    assert value(samples, "llm_monitor_vllm_up", **lbl) == 1
    col.close()


def test_sd_labels_ride_on_every_target_and_bad_names_are_refused(sim: tuple[SimulatedVllm, int]) -> None:
    _s, port = sim
    col = _static(port, sd_labels={"team": "research", "datacenter": "dc1"})
    SnapshotLoop(col, 1).run_once()
    (group,) = json.loads(col.sd_document()[2])
    assert group["labels"] == {"team": "research", "datacenter": "dc1", "host": "node-1", "container": "static-a",
                               "model": MODEL}  # fmt: skip
    col.close()
    for bad in ("host", "__meta_x", "9rack", "model"):
        with pytest.raises(ConfigError, match=f"vllm.sd_labels: '{bad}'"):
            _static(port, sd_labels={bad: "x"})


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_server_gone_is_unreachable() -> None:
    port = free_port()
    col = _static(port)
    loop = SnapshotLoop(col, 1)
    _text, samples = _samples(loop)
    lbl = {"target": f"127.0.0.1:{port}", "container": "static-a", "source": "static"}
    assert value(samples, "llm_monitor_vllm_up", **lbl) == 0
    assert value(samples, "llm_monitor_vllm_http_reachable", **lbl) == 0
    assert value(samples, "llm_monitor_exporter_collection_errors_total", kind="probe_unreachable") == 1
    col.close()


def _bad_server(handler: Callable[[socket.socket], None]) -> tuple[int, Callable[[], None]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def run() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=run, daemon=True).start()

    def close() -> None:
        stop.set()
        srv.close()

    return srv.getsockname()[1], close


def test_faults_slow_malformed_refused() -> None:
    def slow(conn: socket.socket) -> None:
        time.sleep(3)
        conn.close()

    def malformed(conn: socket.socket) -> None:
        req = conn.recv(4096)
        body = b"{not json" if b"/v1/models" in req else b""
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        conn.close()

    slow_port, close_slow = _bad_server(slow)
    bad_port, close_bad = _bad_server(malformed)
    dead_port = free_port()
    cfg = VllmConfig(
        docker=False,
        probe_timeout=0.5,
        static_endpoints=[
            StaticEndpoint(address=f"127.0.0.1:{slow_port}"),
            StaticEndpoint(address=f"127.0.0.1:{bad_port}"),
            StaticEndpoint(address=f"127.0.0.1:{dead_port}"),
        ],
    )
    col = VllmCollector(cfg)
    loop = SnapshotLoop(col, 0.2)
    web = load_web_config(None)
    server = MetricsServer("127.0.0.1:0", loop, web)
    server.serve_in_thread()
    loop.start()
    try:
        assert loop.first_cycle_done.wait(10)
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert time.perf_counter() - t0 < 0.5, "a scrape must not wait for a slow upstream"
        s = parse_samples(text)
        assert value(s, "llm_monitor_vllm_up", target=f"127.0.0.1:{slow_port}") == 0
        assert value(s, "llm_monitor_vllm_up", target=f"127.0.0.1:{bad_port}") == 1
        assert value(s, "llm_monitor_vllm_up", target=f"127.0.0.1:{dead_port}") == 0
        errors = {
            k: value(s, "llm_monitor_exporter_collection_errors_total", kind=k) or 0
            for k in ("probe_timeout", "models_malformed", "probe_unreachable")
        }
        assert all(v >= 1 for v in errors.values()), errors
    finally:
        server.shutdown()
        server.server_close()
        loop.stop()
        col.close()
        close_slow()
        close_bad()
    with pytest.raises(ConfigError, match="HOST:PORT"):
        VllmCollector(VllmConfig(docker=False, static_endpoints=[StaticEndpoint(address="nohost")]))


def test_sd_endpoint_behind_basic_auth(sim: tuple[SimulatedVllm, int], tmp_path: Any) -> None:
    _s, port = sim
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    wc = tmp_path / "web.yml"
    wc.write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
    col = _static(port)
    loop = SnapshotLoop(col, 1)
    loop.run_once()
    server = MetricsServer("127.0.0.1:0", loop, load_web_config(str(wc)))
    server.serve_in_thread()
    url = f"http://127.0.0.1:{server.port}/sd/vllm"
    try:
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(url, timeout=5)
        assert exc.value.code == 401
        req = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"prom:pw").decode()})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            assert json.loads(resp.read())[0]["targets"] == [f"127.0.0.1:{port}"]
    finally:
        server.shutdown()
        server.server_close()
        col.close()


@pytest.mark.docker
def test_docker_label_discovery(docker_client: Any, sim: tuple[SimulatedVllm, int]) -> None:
    """A labelled container started after the exporter appears in SD within one interval; removed -> gone."""
    _s, sim_port = sim
    url = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    cfg = VllmConfig(
        docker_url=url,
        advertise_host="node-1",
        match_label=f"lmx-vllm-test={os.getpid()}",
        match_images=[],
        match_commands=[],
        probe_timeout=0.3,
        static_endpoints=[StaticEndpoint(address=f"127.0.0.1:{sim_port}", name="sim")],
    )
    col = VllmCollector(cfg)
    loop = SnapshotLoop(col, 0.5)
    col.start()
    name = f"lmx-vllm-test-{os.getpid()}"
    container = None
    try:
        assert wait_for(
            lambda: (
                (
                    loop.run_once(),
                    value(parse_samples(loop.latest().decode()), "llm_monitor_exporter_up", upstream="docker"),
                )[1]
                == 1
            ),
            timeout=15,
        )
        container = docker_client.containers.run(
            "llm-monitor-test/busybox:1",
            ["sh", "-c", "sleep 600"],
            name=name,
            detach=True,
            labels={"lmx-vllm-test": str(os.getpid()), "llm-monitor.vllm.port": "8000"},
            ports={"8000/tcp": ("127.0.0.1", None)},
            environment={"NVIDIA_VISIBLE_DEVICES": "1"},
        )

        def sd_names() -> set[str]:
            loop.run_once()
            return {g["labels"]["container"] for g in json.loads(col.sd_document()[2])}

        t0 = time.monotonic()
        assert wait_for(lambda: sd_names() == {name, "sim"}, timeout=10)
        assert time.monotonic() - t0 < 5, "container must appear within one discovery interval (events)"
        s = parse_samples(loop.latest().decode())
        container.reload()
        host_port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
        lbl = {"target": f"127.0.0.1:{host_port}", "container": name, "source": "docker"}
        assert value(s, "llm_monitor_vllm_up", **lbl) == 0  # busybox does not speak HTTP
        assert value(s, "llm_monitor_vllm_gpu_assigned", gpu="1", **lbl) == 1
        assert value(s, "llm_monitor_vllm_container_restarts_total", **lbl) == 0
        container.remove(force=True)
        container = None
        assert wait_for(lambda: sd_names() == {"sim"}, timeout=10)
    finally:
        if container is not None:
            container.remove(force=True)
        col.close()

"""Simulated vLLM server: format, traffic, scenarios, CLI (the Langfuse simulator: test_langfuse_sim.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import FIXTURES, free_port, parse_samples, value, wait_for
from llm_monitor_testkit.vllm_sim import SimulatedVllm, SimulatedVllmServer

MODEL = "simulated/llama-3-8b-instruct"


@pytest.fixture
def vllm() -> Iterator[tuple[SimulatedVllm, str]]:
    sim = SimulatedVllm(MODEL)
    server = SimulatedVllmServer(("127.0.0.1", 0), sim)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield sim, f"http://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def promtool_lint(text: str) -> list[str]:
    """promtool check metrics problems, less the one every real vLLM output has (':' in names)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed")
    res = subprocess.run([path, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    return [
        line
        for line in (res.stdout + res.stderr).splitlines()
        if line.strip()
        # upstream's own names: ':' in every vLLM name, and the histogram vllm:iteration_tokens_total
        and "should not contain ':'" not in line
        and "vllm:iteration_tokens_total non-counter" not in line
    ]


def test_metrics_format_matches_recorded_vllm_sample(vllm: tuple[SimulatedVllm, str]) -> None:
    _sim, url = vllm
    code, body = _get(url + "/metrics")
    assert code == 200
    text = body.decode()
    assert promtool_lint(text) == []
    assert promtool_lint((FIXTURES / "vllm" / "metrics_sample.txt").read_text()) == []
    recorded = (FIXTURES / "vllm" / "metrics_sample.txt").read_text()
    rec = _families(recorded)
    ours = _families(text)
    for name, kind in rec.items():
        assert ours.get(name) == kind, f"{name}: recorded {kind}, simulated {ours.get(name)}"
    # label layout as in the recorded sample: sorted, engine first, model_name last
    assert f'vllm:num_requests_running{{engine="0",model_name="{MODEL}"}}' in text
    assert f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.001",model_name="{MODEL}"}}' in text
    assert "_created" not in text


def test_traffic_moves_counters(vllm: tuple[SimulatedVllm, str]) -> None:
    _sim, url = vllm
    s0 = parse_samples(_get(url + "/metrics")[1].decode())
    code, body = _post(
        url + "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 8},
    )
    assert code == 200
    answer = json.loads(body)
    assert answer["usage"]["completion_tokens"] == 8 and answer["choices"][0]["message"]["role"] == "assistant"
    code, body = _post(url + "/v1/completions", {"model": MODEL, "prompt": "hi there", "stream": True})
    assert code == 200
    events = [line for line in body.decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]" and len(events) == 17
    json.loads(events[0].removeprefix("data: "))
    s1 = parse_samples(_get(url + "/metrics")[1].decode())
    lbl = {"model_name": MODEL, "engine": "0"}
    gen0 = value(s0, "vllm:generation_tokens_total", **lbl) or 0
    assert (value(s1, "vllm:generation_tokens_total", **lbl) or 0) >= gen0 + 24
    assert (value(s1, "vllm:e2e_request_latency_seconds_count", **lbl) or 0) >= 2
    code, body = _post(url + "/v1/chat/completions", {"model": MODEL, "messages": "x"})
    assert code == 400 and json.loads(body)["error"]["param"] == "body.messages"  # upstream's validation
    code, body = _get(url + "/v1/models")
    assert json.loads(body)["data"][0]["max_model_len"] == 8192


@pytest.mark.parametrize("scenario", ["queue_buildup", "kv_cache_full", "latency_spike", "error_burst", "normal"])
def test_scenarios_evolve(scenario: str) -> None:
    now = [0.0]
    sim = SimulatedVllm(MODEL, scenario, clock=lambda: now[0])
    first = parse_samples(sim.render_metrics().decode())
    now[0] += 10
    later = parse_samples(sim.render_metrics().decode())
    lbl = {"model_name": MODEL}
    if scenario == "queue_buildup":
        assert (value(later, "vllm:num_requests_waiting", **lbl) or 0) > (
            value(first, "vllm:num_requests_waiting", **lbl) or 0
        ) + 10
    elif scenario == "kv_cache_full":
        assert (value(later, "vllm:kv_cache_usage_perc", **lbl) or 0) >= 0.95
        assert (value(later, "vllm:num_preemptions_total", **lbl) or 0) > 0
    elif scenario == "latency_spike":
        assert (value(later, "vllm:e2e_request_latency_seconds_sum", **lbl) or 0) / 10 > 5
    elif scenario == "error_burst":
        assert (value(later, "vllm:request_success_total", finished_reason="abort", **lbl) or 0) >= 10
    else:
        assert (value(later, "vllm:kv_cache_usage_perc", **lbl) or 1) < 0.5


def test_upstream_down_and_error_burst(vllm: tuple[SimulatedVllm, str]) -> None:
    sim, url = vllm
    sim.set_scenario("upstream_down")
    assert _get(url + "/health")[0] == 503
    assert _get(url + "/metrics")[0] == 503
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        _post(url + "/v1/chat/completions", {"model": MODEL, "messages": []})
    sim.set_scenario("error_burst")
    codes = {_post(url + "/v1/completions", {"model": MODEL, "prompt": "x"})[0] for _ in range(30)}
    assert codes == {200, 500}
    with pytest.raises(ValueError, match="unknown scenario"):
        SimulatedVllm(MODEL, "nope")


def test_simulate_cli(tmp_path: Any) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_monitor_testkit",
            "simulate",
            "vllm",
            "--listen",
            f"127.0.0.1:{port}",
            "--scenario",
            "kv_cache_full",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: _get(f"http://127.0.0.1:{port}/health")[0] == 200, timeout=15)
        assert "vllm:kv_cache_usage_perc" in _get(f"http://127.0.0.1:{port}/metrics")[1].decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "SIMULATED" in err
    res = subprocess.run(
        [sys.executable, "-m", "llm_monitor_testkit", "simulate", "vllm", "--scenario", "bogus"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert res.returncode == 2 and "invalid choice" in res.stderr

"""Traffic generator: bounds, percentiles, and short runs against the simulator (counts must match)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from llm_monitor_testkit.ollama_sim import OllamaSimulator

from conftest import free_port, parse_samples, value, wait_for
from llm_monitor_exporters.traffic import PROMPTS, Options, UsageError, execute, main, percentile, validate
from ollama_support import FAST, stack
from ollama_support import run as arun


def test_prompt_set_has_enough_categories() -> None:
    assert len(PROMPTS) >= 8
    assert {"coding", "creative", "analysis", "math", "summarisation", "translation", "trivia", "reasoning"} <= set(
        PROMPTS
    )
    assert all(len(p) >= 2 for p in PROMPTS.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "unbounded"),
        ({"duration": 4000.0}, "duration"),
        ({"count": 2_000_000}, "count"),
        ({"count": 1, "rate": 1.0, "concurrency": 2}, "either"),
        ({"count": 1, "concurrency": 5000}, "concurrency"),
        ({"count": 1, "rate": 1e6}, "rate"),
        ({"count": 1, "categories": ("nope",)}, "categories"),
    ],
)
def test_refuses_unbounded_or_out_of_range(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate(Options(target="http://127.0.0.1:1", **kwargs))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="http"):
        validate(Options(target="ftp://x", count=1))


def test_cli_refuses_without_bound(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "http://127.0.0.1:1"]) == 2
    assert "refusing to run unbounded" in capsys.readouterr().err


def test_percentile_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 90) == 90 and percentile(values, 99) == 99
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0


@pytest.mark.parametrize("api", ["generate", "chat", "openai"])
def test_concurrency_run_matches_simulator_counters(api: str) -> None:
    async def body() -> None:
        sim = OllamaSimulator(**FAST)  # type: ignore[arg-type]
        port = await sim.start("127.0.0.1", 0)
        try:
            o = Options(target=f"http://127.0.0.1:{port}", api=api, concurrency=4, count=24, seed=1)
            s = await execute(o)
        finally:
            await sim.close()
        st = sim.stats
        assert s["requests"] == s["ok"] == 24 == st.as_dict()["requests_total"]
        assert s["tokens"]["generated"] == st.tokens_generated == 24 * FAST["tokens"]
        assert st.streams_completed == 24
        assert s["ttft_seconds"]["p50"] is not None and s["latency_seconds"]["p99"] >= s["latency_seconds"]["p50"]
        assert sum(s["by_category"].values()) == 24 and len(s["by_category"]) >= 8
        assert s["errors"] == dict.fromkeys(s["errors"], 0)

    arun(body)


def test_rate_run_through_proxy_matches_sim_and_proxy_metrics() -> None:
    async def body() -> None:
        async with stack() as st:
            o = Options(target=st.url, rate=40, duration=1.0, stream=False, seed=2)
            s = await execute(o)
            samples = parse_samples(await st.metrics_text())
        n = s["requests"]
        assert 25 <= n <= 45  # about 40 req/s for 1 s
        assert n == st.sim.stats.requests["/api/generate"] == s["ok"]
        assert (
            value(samples, "llm_monitor_ollama_requests_total", model="llama3.2", endpoint="generate", status="200")
            == n
        )
        assert (
            value(samples, "llm_monitor_ollama_generated_tokens_total", model="llama3.2", endpoint="generate")
            == s["tokens"]["generated"]
        )
        assert s["ttft_seconds"]["p50"] is None  # not streamed

    arun(body)


@pytest.mark.parametrize(
    ("scenario", "kind"),
    [
        ("error_burst", "http_5xx"),
        ("server_busy", "http_5xx"),  # a full Ollama queue: 503 (Ollama never answers 429)
        ("truncated_stream", "truncated"),
        ("malformed_json", "malformed"),
    ],
)
def test_errors_by_kind(scenario: str, kind: str) -> None:
    async def body() -> None:
        sim = OllamaSimulator(scenario, **FAST)  # type: ignore[arg-type]
        port = await sim.start("127.0.0.1", 0)
        try:
            s = await execute(Options(target=f"http://127.0.0.1:{port}", concurrency=2, count=6))
        finally:
            await sim.close()
        assert s["requests"] == 6 and s["errors"][kind] == 6 and s["ok"] == 0

    arun(body)


def test_connect_errors_and_burst_profile() -> None:
    async def body() -> None:
        s = await execute(Options(target=f"http://127.0.0.1:{free_port()}", rate=20, count=5, timeout=2))
        assert s["errors"]["connect"] == 5
        sim = OllamaSimulator(**FAST)  # type: ignore[arg-type]
        port = await sim.start("127.0.0.1", 0)
        try:
            # burst: a 5 s cycle's requests all go out in its first second
            s = await execute(Options(target=f"http://127.0.0.1:{port}", rate=4, duration=1.5, profile="burst"))
        finally:
            await sim.close()
        assert 15 <= s["requests"] <= 22 and s["ok"] == s["requests"]

    arun(body)


def test_cli_subprocesses_sim_proxy_traffic(tmp_path: Path) -> None:
    """The three command lines end to end (testkit simulator, proxy, traffic), each in its own process, bounded and
    shut down by SIGTERM."""
    sim_port, proxy_port, metrics_port = free_port(), free_port(), free_port()
    exe = [sys.executable, "-m", "llm_monitor_exporters"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llm_monitor_testkit",
                "simulate",
                "ollama",
                "--listen",
                f"127.0.0.1:{sim_port}",
                "--tokens",
                "4",
                "--token-interval",
                "0.002",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        ),
        subprocess.Popen(
            [
                *exe,
                "ollama_proxy",
                "--proxy-listen-address",
                f"127.0.0.1:{proxy_port}",
                "--upstream-url",
                f"http://127.0.0.1:{sim_port}",
                "--listen-address",
                f"127.0.0.1:{metrics_port}",
                "--interval",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        ),
    ]
    try:
        import urllib.request

        def up() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1) as r:
                return b"llm_monitor_ollama_up 1.0" in r.read()

        assert wait_for(up, timeout=15)
        out = tmp_path / "summary.json"
        res = subprocess.run(
            [
                *exe,
                "traffic",
                "--target",
                f"http://127.0.0.1:{proxy_port}",
                "--api",
                "chat",
                "--concurrency",
                "3",
                "--count",
                "12",
                "--json",
                str(out),
                "--quiet",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert res.returncode == 0, res.stderr
        assert "requests 12 ok 12" in res.stdout
        summary = json.loads(out.read_text())
        assert summary["requests"] == 12 and summary["tokens"]["generated"] == 48
        with urllib.request.urlopen(f"http://127.0.0.1:{sim_port}/_sim/stats", timeout=2) as r:
            assert json.loads(r.read())["requests"]["/api/chat"] == 12
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                rc = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            assert rc == 0, p.stderr.read() if p.stderr else ""


def test_profiles_rate_shape() -> None:
    from llm_monitor_exporters.traffic import Run

    steady = Run(o=Options(target="http://127.0.0.1:1", rate=10, duration=10))
    assert steady.rate_at(0) == steady.rate_at(7.3) == 10
    ramp = Run(o=Options(target="http://127.0.0.1:1", rate=10, duration=10, profile="ramp"))
    assert ramp.rate_at(0) == pytest.approx(0.5) and ramp.rate_at(5) == pytest.approx(5) and ramp.rate_at(20) == 10
    burst = Run(o=Options(target="http://127.0.0.1:1", rate=10, duration=10, profile="burst"))
    assert burst.rate_at(0.5) == 50 and burst.rate_at(2) == 0 and burst.rate_at(5.2) == 50

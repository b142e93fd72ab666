"""Langfuse exporter against the simulated Langfuse API: values, caching, back-off, call counting, faults."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llm_monitor_testkit.langfuse_sim import SimulatedLangfuse, SimulatedLangfuseServer

from conftest import parse_samples, value
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.core.config import ConfigError
from llm_monitor_exporters.langfuse.langfuse import (
    LangfuseCollector,
    LangfuseConfig,
    LangfuseProject,
    parse_daily,
    parse_error_count,
    parse_latency,
)

SECRET = "sk-lf-test-secret-0000"


@pytest.fixture
def api() -> Iterator[tuple[SimulatedLangfuse, str]]:
    sim = SimulatedLangfuse("pk-lf-test", SECRET, retry_after=120)
    server = SimulatedLangfuseServer(("127.0.0.1", 0), sim)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield sim, f"http://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _collector(url: str, tmp_path: Path, secret: str = SECRET, **kw: object) -> tuple[LangfuseCollector, Clock]:
    f = tmp_path / "secret"
    f.write_text(secret + "\n")
    cfg = LangfuseConfig(
        projects=[LangfuseProject(name="prod", host=url, public_key="pk-lf-test", secret_key_file=str(f))],
        timeout=1.0,
        **kw,
    )  # type: ignore[arg-type]
    clock = Clock()
    return LangfuseCollector(cfg, clock=clock), clock


def _scrape(loop: SnapshotLoop) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    loop.run_once()
    text = loop.latest().decode()
    return text, parse_samples(text)


def test_values_and_caching(
    api: tuple[SimulatedLangfuse, str],
    tmp_path: Path,
    promtool: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, url = api
    col, clock = _collector(url, tmp_path)
    loop = SnapshotLoop(col, 1)
    for _ in range(10):
        text, s = _scrape(loop)
    promtool(text)
    assert sim.total_calls() == 4, "one poll per poll_interval, cached in between"
    assert SECRET not in text and SECRET not in caplog.text
    p = {"project": "prod"}
    assert value(s, "llm_monitor_langfuse_up", **p) == 1
    assert value(s, "llm_monitor_langfuse_daily_traces", **p) == 360
    assert value(s, "llm_monitor_langfuse_daily_cost_usd", **p) == 3.75
    assert value(s, "llm_monitor_langfuse_daily_model_tokens", model="gpt-4o-mini", type="input", **p) == 60000
    assert value(s, "llm_monitor_langfuse_latency_seconds", percentile="p95", view="traces", **p) == 2.4
    assert value(s, "llm_monitor_langfuse_error_observations", **p) == 7
    assert value(s, "llm_monitor_langfuse_api_requests_total", endpoint="metrics_daily", status="200", **p) == 1
    age = value(s, "llm_monitor_langfuse_data_age_seconds", **p)
    assert age is not None and 0 <= age < 5
    clock.t += 301
    _scrape(loop)
    assert sim.total_calls() == 8


def test_rate_limited_backs_off_with_retry_after(api: tuple[SimulatedLangfuse, str], tmp_path: Path) -> None:
    sim, url = api
    col, clock = _collector(url, tmp_path, min_backoff=30)
    loop = SnapshotLoop(col, 1)
    sim.mode = "rate_limited"
    _text, s = _scrape(loop)
    assert (
        value(s, "llm_monitor_langfuse_api_requests_total", project="prod", endpoint="metrics_daily", status="429") == 1
    )
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="rate_limited") == 1
    assert value(s, "llm_monitor_langfuse_backoff_seconds", project="prod") == 120  # Retry-After wins
    calls = sim.total_calls()
    for _ in range(5):
        clock.t += 20
        _scrape(loop)
    assert sim.total_calls() == calls, "no calls during the back-off"
    clock.t += 30
    _scrape(loop)
    assert sim.total_calls() == calls + 2  # health + daily (429 again)
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_backoff_seconds", project="prod") == 240  # doubled
    sim.mode = "normal"
    clock.t += 241
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_up", project="prod") == 1
    assert value(s, "llm_monitor_langfuse_backoff_seconds", project="prod") == 0


@pytest.mark.parametrize(
    ("mode", "kind"), [("server_error", "http_5xx"), ("malformed", "malformed"), ("slow", "timeout")]
)
def test_faults_keep_serving(api: tuple[SimulatedLangfuse, str], tmp_path: Path, mode: str, kind: str) -> None:
    sim, url = api
    sim.slow_seconds = 2.0
    col, clock = _collector(url, tmp_path, min_backoff=10)
    loop = SnapshotLoop(col, 1)
    _scrape(loop)  # good data first
    sim.mode = mode
    clock.t += 301
    _text, s = _scrape(loop)
    assert (value(s, "llm_monitor_exporter_collection_errors_total", kind=kind) or 0) >= 1
    assert value(s, "llm_monitor_langfuse_up", project="prod") == 0
    assert value(s, "llm_monitor_langfuse_daily_traces", project="prod") == 360  # cached data kept
    if mode != "malformed":
        assert value(s, "llm_monitor_langfuse_backoff_seconds", project="prod") == 10
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_exporter_collections_total") == 3


def test_invalid_credentials(api: tuple[SimulatedLangfuse, str], tmp_path: Path) -> None:
    _sim, url = api
    col, _clock = _collector(url, tmp_path, secret="sk-wrong")
    loop = SnapshotLoop(col, 1)
    text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_up", project="prod") == 0
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="auth") == 3
    assert (
        value(s, "llm_monitor_langfuse_api_requests_total", project="prod", endpoint="metrics_daily", status="401") == 1
    )
    assert value(s, "llm_monitor_langfuse_data_age_seconds", project="prod") == -1
    assert "sk-wrong" not in text


def test_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="at least one project"):
        LangfuseCollector(LangfuseConfig())
    monkeypatch.delenv("LMX_NOPE", raising=False)
    with pytest.raises(ConfigError, match="LMX_NOPE is not set"):
        LangfuseCollector(
            LangfuseConfig(projects=[LangfuseProject(name="a", public_key="pk", secret_key_env="LMX_NOPE")])
        )
    monkeypatch.setenv("LMX_SK", "sk-x")
    col = LangfuseCollector(
        LangfuseConfig(projects=[LangfuseProject(name="a", public_key="pk", secret_key_env="LMX_SK")])
    )
    assert "sk-x" not in repr(col.projects[0].__dict__.get("name"))


def test_parsers() -> None:
    assert parse_daily({"data": []}) == {"traces": 0.0, "observations": 0.0, "cost": 0.0, "models": {}}
    assert parse_daily({"data": [{"date": "2026-01-01"}]}) is None
    assert parse_latency({"data": [{"p50_latency": "1500"}]}) == {"p50": 1.5}
    assert parse_latency({"data": "x"}) is None
    assert (
        parse_error_count({"data": [{"level": "ERROR", "count_count": "4"}, {"level": "DEFAULT", "count_count": "9"}]})
        == 4
    )

"""Langfuse exporter against the simulated Langfuse (v4.16.0 events_only / legacy, v3.225.4): API choice,
values, caching, plan quotas and call budgets, back-off, call counting, faults."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from llm_monitor_exporters.langfuse.quota import CallBudget, interval_for, resolve_plan

SECRET = "sk-lf-test-secret-0000"
P = {"project": "prod"}
Samples = dict[str, list[tuple[dict[str, str], float]]]


class Clock:
    """The exporter's monotonic clock and the simulator's wall clock, moved together by the tests."""

    def __init__(self) -> None:
        self.t = 1_790_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_api(clock: Clock) -> Iterator[Callable[..., tuple[SimulatedLangfuse, str]]]:
    servers: list[SimulatedLangfuseServer] = []

    def start(**kw: Any) -> tuple[SimulatedLangfuse, str]:
        sim = SimulatedLangfuse("pk-lf-test", SECRET, retry_after=120, clock=clock, **kw)
        servers.append(SimulatedLangfuseServer(("127.0.0.1", 0), sim))
        threading.Thread(target=servers[-1].serve_forever, daemon=True).start()
        return sim, f"http://127.0.0.1:{servers[-1].port}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def api(make_api: Callable[..., tuple[SimulatedLangfuse, str]]) -> tuple[SimulatedLangfuse, str]:
    return make_api()


def _collector(
    url: str,
    tmp_path: Path,
    clock: Clock,
    secret: str = SECRET,
    projects: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> LangfuseCollector:
    f = tmp_path / "secret"
    f.write_text(secret + "\n")
    cfg = LangfuseConfig(
        projects=[
            LangfuseProject(host=url, public_key="pk-lf-test", secret_key_file=str(f), **p)
            for p in (projects or [{"name": "prod"}])
        ],
        timeout=1.0,
        **kw,
    )
    return LangfuseCollector(cfg, clock=clock, wall=clock)


def _scrape(loop: SnapshotLoop) -> tuple[str, Samples]:
    loop.run_once()
    text = loop.latest().decode()
    return text, parse_samples(text)


def _info(s: Samples, project: str = "prod") -> dict[str, str]:
    (labels,) = [lbl for lbl, _ in s["llm_monitor_langfuse_server_info"] if lbl["project"] == project]
    return labels


def test_v4_events_only_uses_v2(
    api: tuple[SimulatedLangfuse, str],
    tmp_path: Path,
    clock: Clock,
    promtool: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, url = api
    loop = SnapshotLoop(_collector(url, tmp_path, clock), 1)
    for _ in range(10):
        text, s = _scrape(loop)
    promtool(text)
    assert sim.total_calls() == 5, "health + 4 v2 queries per poll_interval, cached in between"
    assert sim.total_calls("/api/public/metrics/daily") == 0, "v2 answered: v1 is not asked"
    assert SECRET not in text and SECRET not in caplog.text
    assert _info(s) == {**P, "version": "4.16.0", "metrics_api": "v2", "plan": "self_hosted"}
    assert value(s, "llm_monitor_langfuse_up", **P) == 1
    assert value(s, "llm_monitor_langfuse_daily_traces", **P) == 360
    assert value(s, "llm_monitor_langfuse_daily_observations", **P) == 2040
    assert value(s, "llm_monitor_langfuse_daily_cost_usd", **P) == 3.75
    assert value(s, "llm_monitor_langfuse_daily_model_tokens", model="gpt-4o-mini", type="input", **P) == 60000
    assert value(s, "llm_monitor_langfuse_daily_model_cost_usd", model="llama-3-8b", **P) == 1.5
    assert not [lbl for lbl, _ in s["llm_monitor_langfuse_daily_model_cost_usd"] if lbl["model"] == "unknown"], (
        "spans without a model and without tokens are not a model"
    )
    assert value(s, "llm_monitor_langfuse_daily_models_truncated", **P) == 0
    assert value(s, "llm_monitor_langfuse_latency_seconds", percentile="p95", view="observations", **P) == 2.4
    assert value(s, "llm_monitor_langfuse_error_observations", **P) == 7
    assert value(s, "llm_monitor_langfuse_api_requests_total", endpoint="metrics_v2_models", status="200", **P) == 1
    assert value(s, "llm_monitor_langfuse_poll_interval_seconds", **P) == 300
    assert "llm_monitor_langfuse_api_budget_calls" not in s, "self-hosted: no quota"
    age = value(s, "llm_monitor_langfuse_data_age_seconds", **P)
    assert age is not None and 0 <= age < 5
    clock.t += 301
    _scrape(loop)
    assert sim.total_calls() == 10


@pytest.mark.parametrize("server", ["v3", "v4_legacy"])
def test_older_servers_fall_back_to_v1_and_ask_again_later(
    make_api: Callable[..., tuple[SimulatedLangfuse, str]], tmp_path: Path, clock: Clock, server: str
) -> None:
    sim, url = make_api(server=server)
    loop = SnapshotLoop(_collector(url, tmp_path, clock, latency_view="traces"), 1)
    _text, s = _scrape(loop)
    assert _info(s)["metrics_api"] == "v1"
    assert _info(s)["version"] == ("3.225.4" if server == "v3" else "4.16.0")
    assert value(s, "llm_monitor_langfuse_up", **P) == 1
    assert value(s, "llm_monitor_langfuse_daily_traces", **P) == 360
    assert value(s, "llm_monitor_langfuse_daily_observations", **P) == 2040
    assert value(s, "llm_monitor_langfuse_latency_seconds", percentile="p99", view="traces", **P) == 4.1
    assert value(s, "llm_monitor_langfuse_api_requests_total", endpoint="metrics_v2_totals", status="404", **P) == 1
    assert value(s, "llm_monitor_langfuse_api_requests_total", endpoint="metrics_daily", status="200", **P) == 1
    assert sim.total_calls() == 5  # health, v2 (404), daily, latency, errors
    clock.t += 301
    _scrape(loop)
    assert sim.total_calls("/api/public/v2/metrics") == 1, "v1 remembered: v2 not asked every poll"
    clock.t += 86400
    _scrape(loop)
    assert sim.total_calls("/api/public/v2/metrics") == 2, "asked again after redetect_interval"


def test_api_gone_after_a_migration_is_detected_again(
    api: tuple[SimulatedLangfuse, str], tmp_path: Path, clock: Clock
) -> None:
    sim, url = api
    loop = SnapshotLoop(_collector(url, tmp_path, clock), 1)
    _text, s = _scrape(loop)
    assert _info(s)["metrics_api"] == "v2"
    sim.server = "v4_legacy"  # rolled back to the legacy write mode
    clock.t += 301
    _text, s = _scrape(loop)
    assert _info(s)["metrics_api"] == "none" and value(s, "llm_monitor_langfuse_up", **P) == 0
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="api_unavailable") == 1
    clock.t += 301
    _text, s = _scrape(loop)
    assert _info(s)["metrics_api"] == "v1" and value(s, "llm_monitor_langfuse_up", **P) == 1


def test_forced_v1_on_events_only_reports_no_api(
    api: tuple[SimulatedLangfuse, str], tmp_path: Path, clock: Clock
) -> None:
    _sim, url = api
    loop = SnapshotLoop(_collector(url, tmp_path, clock, api="v1"), 1)
    _text, s = _scrape(loop)
    assert _info(s)["metrics_api"] == "none"
    assert value(s, "llm_monitor_langfuse_up", **P) == 0
    assert value(s, "llm_monitor_langfuse_api_requests_total", endpoint="metrics_daily", status="404", **P) == 1


@pytest.mark.parametrize(
    ("plan", "server", "interval", "budget"),
    [
        ("hobby", "v4_events_only", 4320, ("public-api-v2-metrics", 80)),  # 4 calls, 80 of 100 a day
        ("core", "v4_events_only", 300, ("public-api-v2-metrics", 80)),  # 4 calls, 80 of 100 an hour: 180 s < 300
        ("hobby", "v4_legacy", 10800, ("public-api-daily-metrics-legacy", 8)),  # daily: 8 of 10 a day
    ],
)
def test_plan_quota_sets_the_schedule_and_is_never_exceeded(
    make_api: Callable[..., tuple[SimulatedLangfuse, str]],
    tmp_path: Path,
    clock: Clock,
    plan: str,
    server: str,
    interval: int,
    budget: tuple[str, int],
) -> None:
    sim, url = make_api(server=server, plan=plan)
    loop = SnapshotLoop(_collector(url, tmp_path, clock, projects=[{"name": "prod", "plan": plan}]), 1)
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_poll_interval_seconds", **P) == interval
    resource, calls = budget
    org = {"organization": url.split("://")[1], "resource": resource}
    assert value(s, "llm_monitor_langfuse_api_budget_calls", **org) == calls
    for _ in range(3 * 24 * 12):  # three days, a scrape every 5 minutes
        clock.t += 300
        _text, s = _scrape(loop)
    assert sim.total_calls(status=429) == 0, "the plan's quota was never exceeded"
    assert value(s, "llm_monitor_langfuse_up", **P) == 1
    left = value(s, "llm_monitor_langfuse_api_budget_remaining_calls", **org)
    assert left is not None and 0 <= left <= calls
    polls = sim.total_calls("/api/public/health")
    assert polls >= 3 * 86400 // (interval + 300) - 1, "and the schedule uses it (a poll at most a scrape late)"


def test_projects_of_one_organisation_share_the_quota(
    make_api: Callable[..., tuple[SimulatedLangfuse, str]], tmp_path: Path, clock: Clock
) -> None:
    sim, url = make_api(plan="hobby")
    projects = [{"name": n, "plan": "hobby", "organization": "acme"} for n in ("a", "b")]
    loop = SnapshotLoop(_collector(url, tmp_path, clock, projects=projects), 1)
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_poll_interval_seconds", project="a") == 8640  # twice one project's
    for _ in range(2 * 24 * 12):
        clock.t += 300
        _scrape(loop)
    assert sim.total_calls(status=429) == 0


def test_quota_spent_by_someone_else_backs_off_to_the_window(
    make_api: Callable[..., tuple[SimulatedLangfuse, str]], tmp_path: Path, clock: Clock
) -> None:
    sim, url = make_api(plan="core")
    for _ in range(100):  # another client of the organisation spends the hour's v2 quota
        sim.consume("public-api-v2-metrics")
    loop = SnapshotLoop(_collector(url, tmp_path, clock, projects=[{"name": "prod", "plan": "core"}]), 1)
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_up", **P) == 0
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="rate_limited") == 1
    assert value(s, "llm_monitor_langfuse_backoff_seconds", **P) == 3600, "Retry-After: the window's end"
    clock.t += 3601
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_up", **P) == 1


def test_rate_limited_backs_off_with_retry_after(
    api: tuple[SimulatedLangfuse, str], tmp_path: Path, clock: Clock
) -> None:
    sim, url = api
    loop = SnapshotLoop(_collector(url, tmp_path, clock, min_backoff=30), 1)
    sim.mode = "rate_limited"
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_api_requests_total", endpoint="metrics_v2_totals", status="429", **P) == 1
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="rate_limited") == 1
    assert value(s, "llm_monitor_langfuse_backoff_seconds", **P) == 120  # Retry-After wins
    calls = sim.total_calls()
    for _ in range(5):
        clock.t += 20
        _scrape(loop)
    assert sim.total_calls() == calls, "no calls during the back-off"
    clock.t += 30
    _scrape(loop)
    assert sim.total_calls() == calls + 2  # health + totals (429 again)
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_backoff_seconds", **P) == 240  # doubled
    sim.mode = "normal"
    clock.t += 241
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_up", **P) == 1
    assert value(s, "llm_monitor_langfuse_backoff_seconds", **P) == 0


@pytest.mark.parametrize(
    ("mode", "kind"), [("server_error", "http_5xx"), ("malformed", "malformed"), ("slow", "timeout")]
)
def test_faults_keep_serving(
    api: tuple[SimulatedLangfuse, str], tmp_path: Path, clock: Clock, mode: str, kind: str
) -> None:
    sim, url = api
    sim.slow_seconds = 2.0
    loop = SnapshotLoop(_collector(url, tmp_path, clock, min_backoff=10), 1)
    _scrape(loop)  # good data first
    sim.mode = mode
    clock.t += 301
    _text, s = _scrape(loop)
    assert (value(s, "llm_monitor_exporter_collection_errors_total", kind=kind) or 0) >= 1
    assert value(s, "llm_monitor_langfuse_up", **P) == 0
    assert value(s, "llm_monitor_langfuse_daily_traces", **P) == 360  # cached data kept
    if mode != "malformed":
        assert value(s, "llm_monitor_langfuse_backoff_seconds", **P) == 10
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_exporter_collections_total") == 3


def test_more_models_than_the_row_limit_is_reported(
    make_api: Callable[..., tuple[SimulatedLangfuse, str]], tmp_path: Path, clock: Clock
) -> None:
    _sim, url = make_api(extra_models=1200)
    loop = SnapshotLoop(_collector(url, tmp_path, clock), 1)
    _text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_daily_models_truncated", **P) == 1
    assert len(s["llm_monitor_langfuse_daily_model_cost_usd"]) == 1000
    assert value(s, "llm_monitor_langfuse_daily_model_cost_usd", model="gpt-4o-mini", **P) == 2.25, "costliest kept"


def test_invalid_credentials(api: tuple[SimulatedLangfuse, str], tmp_path: Path, clock: Clock) -> None:
    _sim, url = api
    loop = SnapshotLoop(_collector(url, tmp_path, clock, secret="sk-wrong"), 1)
    text, s = _scrape(loop)
    assert value(s, "llm_monitor_langfuse_up", **P) == 0
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="auth") == 4
    assert value(s, "llm_monitor_langfuse_api_requests_total", endpoint="metrics_v2_totals", status="401", **P) == 1
    assert value(s, "llm_monitor_langfuse_data_age_seconds", **P) == -1
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
    project = LangfuseProject(name="a", public_key="pk", secret_key_env="LMX_SK")
    with pytest.raises(ConfigError, match="latency_view.*no 'traces' view"):
        LangfuseCollector(LangfuseConfig(projects=[project], api="v2", latency_view="traces"))
    with pytest.raises(ConfigError, match="budget_share: at most 1"):
        LangfuseCollector(LangfuseConfig(projects=[project], budget_share=1.5))
    col = LangfuseCollector(LangfuseConfig(projects=[project]))
    assert col.projects[0].plan == "hobby", "Langfuse Cloud defaults to the smallest plan"


def test_quota_helpers() -> None:
    assert resolve_plan("auto", "https://us.cloud.langfuse.com") == "hobby"
    assert resolve_plan("auto", "http://langfuse.internal:3000") == "self_hosted"
    assert resolve_plan("pro", "http://x") == "pro"
    assert interval_for("self_hosted", {"public-api-v2-metrics": 4}, 0.8, 1) == 0
    assert interval_for("pro", {"public-api-v2-metrics": 4}, 0.8, 1) == 36
    b = CallBudget(3, 100.0)
    for t in (0.0, 10.0, 20.0):
        b.take(t)
    assert b.remaining(50.0) == 0 and b.ready_at(50.0, 1) == 100.0 and b.ready_at(50.0, 2) == 110.0
    assert b.ready_at(50.0, 4) == float("inf") and b.remaining(100.0) == 1


def test_parsers() -> None:
    assert parse_daily({"data": []}) is not None
    assert parse_daily({"data": [{"date": "2026-01-01"}]}) is None
    assert parse_latency({"data": [{"p50_latency": "1500"}]}) == {"p50": 1.5}
    assert parse_latency({"data": "x"}) is None
    assert (
        parse_error_count({"data": [{"level": "ERROR", "count_count": "4"}, {"level": "DEFAULT", "count_count": "9"}]})
        == 4
    )

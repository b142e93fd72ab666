"""Simulated Langfuse (v4.16.0 / v3.225.4): the recorded answer fields, API generations, query validation, quotas."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from llm_monitor_testkit.langfuse_sim import SERVERS, SimulatedLangfuse, SimulatedLangfuseServer

AUTH = {"Authorization": "Basic " + base64.b64encode(b"pk:sk").decode()}
RECORDED: dict[str, Any] = json.loads(
    resources.files("llm_monitor_testkit").joinpath("samples/langfuse/fields.json").read_text()
)
DAY = {"fromTimestamp": "2026-12-01T00:00:00.000Z", "toTimestamp": "2026-12-01T12:00:00.000Z"}


class Api:
    def __init__(self, sim: SimulatedLangfuse) -> None:
        self.sim = sim
        self.server = SimulatedLangfuseServer(("127.0.0.1", 0), sim)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.port}"

    def get(self, path: str, auth: bool = True, **params: str) -> tuple[int, Any, dict[str, str]]:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, headers=AUTH if auth else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                code, raw, headers = r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as exc:
            code, raw, headers = exc.code, exc.read(), dict(exc.headers)
        try:
            return code, json.loads(raw), headers
        except ValueError:
            return code, raw, headers

    def query(self, path: str, **q: Any) -> tuple[int, Any, dict[str, str]]:
        return self.get(path, query=json.dumps({**DAY, **q}))


@pytest.fixture
def make() -> Iterator[Any]:
    started: list[Api] = []

    def start(**kw: Any) -> Api:
        started.append(Api(SimulatedLangfuse("pk", "sk", **kw)))
        return started[-1]

    yield start
    for a in started:
        a.server.shutdown()
        a.server.server_close()


COUNT = [{"measure": "count", "aggregation": "count"}]


@pytest.mark.parametrize("server", SERVERS)
def test_each_server_answers_the_recorded_statuses(make: Any, server: str) -> None:
    api = make(server=server)
    for path, status in RECORDED["status"][server].items():
        if path.endswith("/daily"):
            got = api.get(path)[0]
        else:
            got = api.query(path, view="observations", metrics=COUNT)[0]
        assert got == status, (server, path)
    code, body, _ = api.get("/api/public/health", auth=False)
    assert code == 200 and sorted(body) == RECORDED["health"]
    assert body["version"] == ("3.225.4" if server == "v3" else "4.16.0")


def test_recorded_fields_v1(make: Any) -> None:
    api = make(server="v4_legacy")
    _, body, _ = api.get("/api/public/metrics/daily")
    assert sorted(body) == RECORDED["metrics_daily"]
    assert sorted(body["meta"]) == RECORDED["metrics_daily_meta"]
    for day in body["data"]:
        assert sorted(day) == RECORDED["metrics_daily_day"]
        for usage in day["usage"]:
            assert sorted(usage) == RECORDED["metrics_daily_usage"]
    _, body, _ = api.query("/api/public/metrics", view="traces", metrics=[{"measure": "latency", "aggregation": "p95"}])
    assert sorted(body) == RECORDED["metrics"] and body["data"] == [{"p95_latency": 2400.0}]
    cloud = make(server="v4_legacy", plan="pro")
    _, body, _ = cloud.get("/api/public/metrics/daily")
    assert sorted(body) == RECORDED["metrics_daily_cloud"]
    assert sorted(body["_deprecation"]) == RECORDED["deprecation"]
    _, body, _ = cloud.query("/api/public/metrics", view="observations", metrics=COUNT)
    assert sorted(body) == RECORDED["metrics_cloud_v1"]


def test_recorded_fields_errors(make: Any) -> None:
    api = make()
    code, body, _ = api.get("/api/public/metrics/daily", auth=False)
    assert code == 404 and sorted(body) == RECORDED["error_events_only"] and "events_only" in body["message"]
    code, body, _ = api.query("/api/public/v2/metrics", view="traces", metrics=COUNT)
    assert code == 400 and sorted(body) == RECORDED["error"]
    code, body, _ = api.get("/api/public/v2/metrics", auth=False, query="{}")
    assert code == 401 and sorted(body) == RECORDED["error"]
    legacy = make(server="v4_legacy")
    code, body, _ = legacy.query("/api/public/v2/metrics", view="observations", metrics=COUNT)
    assert code == 404 and sorted(body) == RECORDED["error"] and "v4 write mode" in body["message"]
    code, body, _ = make(server="v3").query("/api/public/v2/metrics", view="observations", metrics=COUNT)
    assert code == 404 and isinstance(body, bytes) and body.startswith(b"<!DOCTYPE html>")


def test_v2_rows_keys_and_row_limit(make: Any) -> None:
    api = make(extra_models=150)
    metrics = [{"measure": "inputTokens", "aggregation": "sum"}, {"measure": "totalCost", "aggregation": "sum"}]
    code, body, _ = api.query("/api/public/v2/metrics", view="observations", metrics=metrics,
                              dimensions=[{"field": "providedModelName"}])  # fmt: skip
    assert code == 200 and len(body["data"]) == 100, "default row_limit 100"
    assert sorted(body["data"][0]) == ["providedModelName", "sum_inputTokens", "sum_totalCost"]
    assert body["data"][0]["sum_inputTokens"] == "60000", "64-bit integers arrive as strings"
    code, body, _ = api.query("/api/public/v2/metrics", view="observations", metrics=metrics,
                              dimensions=[{"field": "providedModelName"}], config={"row_limit": 1000})  # fmt: skip
    assert len(body["data"]) == 153 and body["data"][-1]["providedModelName"] is None
    assert body["data"][-1]["sum_inputTokens"] is None, "sums over no values are null"
    totals = [
        {"measure": "count", "aggregation": "count"},
        {"measure": "traceId", "aggregation": "uniq"},
        {"measure": "totalCost", "aggregation": "sum"},
    ]
    _, body, _ = make().query("/api/public/v2/metrics", view="observations", metrics=totals)
    assert body["data"] == [{"count_count": "2040", "uniq_traceId": "360", "sum_totalCost": 3.75}]


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ({"view": "traces", "metrics": COUNT}, "traces view is v1 only"),
        ({"view": "observations", "metrics": [{"measure": "bogus", "aggregation": "sum"}]}, "unknown measure"),
        ({"view": "observations", "metrics": [{"measure": "count", "aggregation": "p42"}]}, "unknown aggregation"),
        ({"view": "observations", "metrics": COUNT, "dimensions": [{"field": "nope"}]}, "unknown dimension"),
        ({"view": "observations", "metrics": COUNT, "config": {"row_limit": 5000}}, "row_limit over 1000"),
        ({"view": "observations", "metrics": COUNT, "toTimestamp": "2026-11-30T00:00:00Z"}, "from after to"),
        ({"view": "observations", "metrics": []}, "no metrics"),
    ],
)
def test_v2_refuses_what_langfuse_refuses(make: Any, query: dict[str, Any], why: str) -> None:
    code, body, _ = make().query("/api/public/v2/metrics", **query)
    assert code == 400, why
    assert body["error"] == "InvalidRequestError"


def test_cloud_quota_fixed_window(make: Any) -> None:
    now = [1_000_000.0]
    api = make(plan="hobby", clock=lambda: now[0])
    for _ in range(100):
        assert api.query("/api/public/v2/metrics", view="observations", metrics=COUNT)[0] == 200
    code, body, headers = api.query("/api/public/v2/metrics", view="observations", metrics=COUNT)
    assert code == 429 and sorted(body) == RECORDED["error_rate_limited"]
    assert sorted(body["details"]) == RECORDED["error_rate_limited_details"]
    assert {h for h in headers if h.startswith(("Retry", "X-RateLimit"))} == set(RECORDED["rate_limit_headers"])
    assert headers["Retry-After"] == "86400" and headers["X-RateLimit-Limit"] == "100"
    now[0] += 86400
    assert api.query("/api/public/v2/metrics", view="observations", metrics=COUNT)[0] == 200, "a new window"
    core = make(plan="core", server="v4_legacy", clock=lambda: now[0])
    for _ in range(10):
        assert core.get("/api/public/metrics/daily")[0] == 200
    assert api.sim.total_calls("/api/public/v2/metrics", 429) == 1


def test_events_only_404_costs_no_quota(make: Any) -> None:
    api = make(plan="hobby")
    for _ in range(20):
        assert api.get("/api/public/metrics/daily")[0] == 404
    assert api.query("/api/public/v2/metrics", view="observations", metrics=COUNT)[0] == 200


def test_fault_modes(make: Any) -> None:
    api = make(mode="rate_limited")
    code, _, headers = api.query("/api/public/v2/metrics", view="observations", metrics=COUNT)
    assert code == 429 and headers["Retry-After"] == "2"
    api.sim.mode = "server_error"
    assert api.query("/api/public/v2/metrics", view="observations", metrics=COUNT)[0] == 500
    assert api.get("/api/public/health", auth=False)[0] == 503
    api.sim.mode = "malformed"
    code, body, _ = api.query("/api/public/v2/metrics", view="observations", metrics=COUNT)
    assert code == 200 and isinstance(body, bytes)
    with pytest.raises(ValueError, match="unknown server"):
        SimulatedLangfuse(server="v5")
    with pytest.raises(ValueError, match="unknown plan"):
        SimulatedLangfuse(plan="free")

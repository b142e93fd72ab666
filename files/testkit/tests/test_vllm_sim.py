"""Simulated vLLM against the recorded upstream series (samples/vllm/series.json) and upstream's failures.

Each test reads what an operator or the exporter would: the families and labels on /metrics, the HTTP statuses and
error bodies, the stream's chunks, /health while the engine is dead or asleep.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import llm_monitor_testkit
from conftest import free_port, parse_samples, value, wait_for
from llm_monitor_testkit.vllm_sim import SimulatedVllm, SimulatedVllmServer, one_two_five_buckets

MODEL = "simulated/llama-3-8b-instruct"
RECORDED = json.loads((Path(llm_monitor_testkit.__file__).parent / "samples" / "vllm" / "series.json").read_text())
GROUPS: dict[str, Any] = RECORDED["groups"]
Series = dict[str, tuple[str, frozenset[str]]]


def series_of(text: str) -> Series:
    """name (as the TYPE line spells it) -> (type, label names), from an exposition."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {k for s in family.samples for k in s.labels if k not in ("le", "quantile")}
        out[name] = (family.type, frozenset(labels))
    return out


def expected(*groups: str) -> Series:
    """The recorded base set with the named groups on top (a group's family replaces the base one of its name)."""
    out: Series = {}
    for group in ("base", *groups):
        for fam in GROUPS[group]["families"]:
            out[fam["name"]] = (fam["type"], frozenset(fam["labels"]))
    return out


def label_values(text: str, metric: str, label: str) -> list[str]:
    return [labels[label] for labels, _ in parse_samples(text).get(metric, [])]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[SimulatedVllmServer] = []

    def start(sim: SimulatedVllm) -> str:
        server = SimulatedVllmServer(("127.0.0.1", 0), sim)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: bytes | dict[str, Any], timeout: float = 5) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _events(body: bytes) -> list[Any]:
    out: list[Any] = []
    for event in body.decode().split("\n\n"):
        if event:
            payload = event.removeprefix("data: ")
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def _metrics(url: str) -> str:
    code, body = _get(url + "/metrics")
    assert code == 200
    return body.decode()


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 4}

# -- the recorded series, per configuration ---------------------------------------------------------


def test_a_fresh_engine_serves_exactly_the_recorded_base_set() -> None:
    text = SimulatedVllm(MODEL).render_metrics().decode()
    assert series_of(text) == expected()
    values = RECORDED["label_values"]
    assert label_values(text, "vllm:request_success_total", "finished_reason") == values["finished_reason"]
    assert label_values(text, "vllm:num_requests_waiting_by_reason", "reason") == values["reason"]
    assert label_values(text, "vllm:engine_sleep_state", "sleep_state") == values["sleep_state"]
    assert (
        label_values(text, "vllm:prompt_tokens_by_source_total", "source")
        == values["vllm:prompt_tokens_by_source_total source"]
    )
    assert (
        label_values(text, "vllm:prompt_tokens_cached_by_source_total", "source")
        == values["vllm:prompt_tokens_cached_by_source_total source"]
    )
    assert label_values(text, "vllm:scheduler_policy_info", "policy") == values["policy"]
    # every finished_reason exists from 0, so a rate() on "error" or "repetition" has a series to read
    samples = parse_samples(text)
    assert all(v == 0 for _, v in samples["vllm:request_success_total"])
    assert value(samples, "vllm:scheduler_policy_info", policy="fcfs") == 1
    assert value(samples, "vllm:scheduler_policy_info", policy="priority") == 0
    assert "_created" not in text and "process_" not in text


@pytest.mark.parametrize(
    ("options", "scenario", "groups"),
    [
        ({}, "normal", ()),
        ({"spec_decode": 3}, "normal", ("spec_decode",)),
        ({"lora_adapters": ["sql-lora", "chat-lora"]}, "normal", ("lora",)),
        ({"scheduling_policy": "priority"}, "normal", ("priority",)),
        ({}, "sleeping", ("sleep_snapshot",)),
        ({}, "engine_dead", ()),
        (
            {"spec_decode": 2, "lora_adapters": ["a"], "scheduling_policy": "priority"},
            "normal",
            ("spec_decode", "lora", "priority"),
        ),
    ],
)
def test_each_configuration_serves_exactly_its_recorded_groups(
    options: dict[str, Any], scenario: str, groups: tuple[str, ...]
) -> None:
    clock = Clock()
    sim = SimulatedVllm(MODEL, scenario, clock=clock, **options)
    clock.now += 5  # a few engine steps of background traffic (none while asleep or dead)
    assert series_of(sim.render_metrics().decode()) == expected(*groups)


def test_http_families_appear_with_the_first_instrumented_request(serve: Any) -> None:
    url = serve(SimulatedVllm(MODEL, clock=Clock()))
    assert _get(url + "/health")[0] == 200
    before = _metrics(url)
    assert series_of(before) == expected()  # /health and /metrics are not instrumented
    assert _get(url + "/v1/models")[0] == 200
    text = _metrics(url)
    assert series_of(text) == {**expected(), **expected("http")}
    samples = parse_samples(text)
    assert value(samples, "http_requests_total", handler="/v1/models", method="GET", status="2xx") == 1
    assert value(samples, "http_requests_total", handler="/metrics") is None
    assert _get(url + "/nowhere")[0] == 404
    samples = parse_samples(_metrics(url))
    assert value(samples, "http_requests_total", handler="none", method="GET", status="4xx") == 1


def test_token_histograms_use_1_2_5_buckets_up_to_max_model_len() -> None:
    assert one_two_five_buckets(100) == (1, 2, 5, 10, 20, 50, 100)
    for max_model_len, top in ((32768, "20000.0"), (8192, "5000.0")):
        text = SimulatedVllm(MODEL, max_model_len=max_model_len).render_metrics().decode()
        for name in ("vllm:request_prompt_tokens", "vllm:request_generation_tokens", "vllm:request_params_max_tokens"):
            bounds = label_values(text, name + "_bucket", "le")
            assert bounds[0] == "1.0" and bounds[-2:] == [top, "+Inf"], (name, bounds)


def test_cache_config_info_carries_every_cache_config_field() -> None:
    text = SimulatedVllm(MODEL, num_gpu_blocks=8192, gpu_memory_utilization=0.9).render_metrics().decode()
    (labels, v) = parse_samples(text)["vllm:cache_config_info"][0]
    assert v == 1
    assert labels["num_gpu_blocks"] == "8192" and labels["gpu_memory_utilization"] == "0.9"
    assert labels["block_size"] == "16" and labels["enable_prefix_caching"] == "True" and labels["engine"] == "0"
    assert labels["num_cpu_blocks"] == "None" and labels["kv_cache_dtype_skip_layers"] == "[]"


# -- HTTP errors: the instrumentator counts them, the engine never sees them -------------------------


def _error(body: bytes) -> dict[str, Any]:
    doc = json.loads(body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}
    err: dict[str, Any] = doc["error"]
    return err


def test_http_errors_count_in_http_requests_total_not_in_request_success(serve: Any) -> None:
    sim = SimulatedVllm(MODEL, clock=Clock())
    url = serve(sim)
    code, body = _post(url + "/v1/chat/completions", b"{not json")
    err = _error(body)
    assert code == 400 and err["code"] == 400 and err["type"] == "Bad Request" and err["param"] == "body.1"
    assert "json_invalid" in err["message"]
    code, body = _post(url + "/v1/chat/completions", {"model": "nope", "messages": []})
    err = _error(body)
    assert code == 404 and err == {
        "message": "The model `nope` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    code, body = _post(url + "/v1/completions", {"model": MODEL})
    assert code == 400 and _error(body)["param"] == "body.prompt"
    code, body = _post(url + "/v1/chat/completions", {"model": MODEL, "messages": "x"})
    assert code == 400 and _error(body)["param"] == "body.messages"
    code, body = _post(url + "/v1/completions", {"model": MODEL, "prompt": "x", "priority": 3})
    assert code == 400 and _error(body)["message"] == "Got priority 3 but Priority scheduling is not enabled."
    sim.set_scenario("error_burst")
    codes = [_post(url + "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 2})[0] for _ in range(30)]
    assert set(codes) == {200, 500}
    samples = parse_samples(_metrics(url))
    assert value(samples, "http_requests_total", handler="/v1/chat/completions", method="POST", status="4xx") == 3
    assert value(samples, "http_requests_total", handler="/v1/completions", method="POST", status="4xx") == 2
    assert value(samples, "http_requests_total", handler="/v1/completions", status="5xx") == codes.count(500)
    assert value(samples, "http_requests_total", handler="/v1/completions", status="2xx") == codes.count(200)
    finished = {labels["finished_reason"]: v for labels, v in samples["vllm:request_success_total"]}
    # only the answered requests reached the engine; a rule on finished_reason="error" reads 0 in such a burst
    assert sum(finished.values()) == codes.count(200) and finished["error"] == 0


def test_error_bodies_for_an_error_burst_and_a_dead_engine(serve: Any) -> None:
    sim = SimulatedVllm(MODEL, "error_burst", clock=Clock())
    url = serve(sim)
    bodies = [_post(url + "/v1/completions", {"prompt": "x"}) for _ in range(20)]
    err = next(_error(b) for c, b in bodies if c == 500)
    assert err == {"message": "", "type": "InternalServerError", "param": None, "code": 500}


# -- streams -------------------------------------------------------------------------------------------


def test_streams_carry_usage_only_when_asked(serve: Any) -> None:
    url = serve(SimulatedVllm(MODEL, clock=Clock()))
    code, body = _post(url + "/v1/chat/completions", {**CHAT, "stream": True})
    events = _events(body)
    assert code == 200 and events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert all("usage" not in c for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] == "length"
    code, body = _post(
        url + "/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    chunks = _events(body)[:-1]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert chunks[-1]["usage"]["prompt_tokens"] == 3 and chunks[-1]["usage"]["total_tokens"] == 7
    assert all("usage" not in c for c in chunks[:-1])
    code, body = _post(
        url + "/v1/completions",
        {
            "prompt": "a b",
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        },
    )
    chunks = _events(body)[:-1]
    assert [c["usage"]["completion_tokens"] for c in chunks] == [1, 2, 3, 3] and chunks[-1]["choices"] == []
    code, body = _post(url + "/v1/completions", {"prompt": "a", "stream_options": {"include_usage": True}})
    assert code == 400 and "stream=True" in _error(body)["message"]


# -- a dead engine, a sleeping engine --------------------------------------------------------------------


def _engine_part(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("vllm:")]


def test_a_dead_engine_fails_health_and_completions_while_metrics_freeze(serve: Any) -> None:
    clock = Clock()
    sim = SimulatedVllm(MODEL, clock=clock)
    url = serve(sim)
    clock.now += 3
    assert _post(url + "/v1/chat/completions", CHAT)[0] == 200
    sim.set_scenario("engine_dead")
    frozen = _engine_part(_metrics(url))
    code, body = _get(url + "/health")
    assert (code, body) == (503, b"")
    code, body = _post(url + "/v1/chat/completions", CHAT)
    assert code == 500 and _error(body) == {
        "message": "EngineCore encountered an issue. See stack trace (above) for the root cause.",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
    assert _get(url + "/v1/models")[0] == 200  # the API server answers what it knows without the engine
    clock.now += 30
    text = _metrics(url)
    assert _engine_part(text) == frozen
    samples = parse_samples(text)
    assert value(samples, "http_requests_total", handler="/v1/chat/completions", status="5xx") == 1
    sim.set_scenario("upstream_down")  # the process itself gone: unchanged from before
    assert _get(url + "/health")[0] == 503 and _get(url + "/metrics")[0] == 503


def test_a_sleeping_engine_is_healthy_and_holds_requests_until_woken(serve: Any) -> None:
    clock = Clock()
    sim = SimulatedVllm(MODEL, clock=clock)
    url = serve(sim)
    assert _post(url + "/sleep?level=1", b"")[0] == 200
    assert (_get(url + "/health")) == (200, b"")
    assert json.loads(_get(url + "/is_sleeping")[1]) == {"is_sleeping": True}
    samples = parse_samples(_metrics(url))
    assert value(samples, "vllm:engine_sleep_state", sleep_state="awake") == 0
    assert value(samples, "vllm:engine_sleep_state", sleep_state="weights_offloaded") == 1
    assert value(samples, "vllm:engine_sleep_resource_state", resource="weights", state="offloaded") == 1
    assert value(samples, "vllm:engine_fully_awake") == 0
    prompt_tokens = value(samples, "vllm:prompt_tokens_total")
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(_post(url + "/v1/chat/completions", CHAT, 20)[0]))
    worker.start()
    assert wait_for(lambda: value(parse_samples(_metrics(url)), "vllm:num_requests_waiting") == 1, timeout=5)
    clock.now += 30  # asleep: no engine steps, no background traffic
    samples = parse_samples(_metrics(url))
    assert value(samples, "vllm:prompt_tokens_total") == prompt_tokens and not answers
    assert value(samples, "vllm:num_requests_waiting_by_reason", reason="capacity") == 1
    assert value(samples, "vllm:kv_cache_usage_perc") == 0 and value(samples, "vllm:num_requests_running") == 0
    time.sleep(0.3)
    assert _post(url + "/wake_up", b"")[0] == 200
    worker.join(10)
    assert answers == [200]
    samples = parse_samples(_metrics(url))
    assert value(samples, "vllm:engine_sleep_state", sleep_state="awake") == 1
    assert value(samples, "vllm:engine_fully_awake") == 1  # the snapshot series stay once created
    assert (value(samples, "vllm:request_queue_time_seconds_sum") or 0) >= 0.3
    assert value(samples, "vllm:num_requests_waiting") == 0


def test_a_request_held_past_the_limit_gets_no_answer(serve: Any) -> None:
    sim = SimulatedVllm(MODEL, "sleeping", clock=Clock(), sleep_hold_seconds=0.2)
    url = serve(sim)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        _post(url + "/v1/completions", {"prompt": "x"})
    sim.sleep(2)
    samples = parse_samples(sim.render_metrics().decode())
    assert value(samples, "vllm:engine_sleep_state", sleep_state="discard_all") == 1
    assert value(samples, "vllm:engine_sleep_resource_state", resource="weights", state="discarded") == 1


# -- speculative decoding, LoRA, priority scheduling -----------------------------------------------------


def test_speculative_decoding_counters_are_consistent() -> None:
    clock = Clock()
    sim = SimulatedVllm(MODEL, clock=clock, spec_decode=4)
    clock.now += 10
    sim.record_request(10, 40, 1.0, "stop")
    samples = parse_samples(sim.render_metrics().decode())
    drafts = value(samples, "vllm:spec_decode_num_drafts_total") or 0
    draft_tokens = value(samples, "vllm:spec_decode_num_draft_tokens_total") or 0
    accepted = value(samples, "vllm:spec_decode_num_accepted_tokens_total") or 0
    per_pos = {
        int(labels["position"]): v for labels, v in samples["vllm:spec_decode_num_accepted_tokens_per_pos_total"]
    }
    assert sorted(per_pos) == [0, 1, 2, 3]
    assert drafts > 0 and draft_tokens == 4 * drafts and 0 < accepted < draft_tokens
    assert sum(per_pos.values()) == accepted
    assert [per_pos[i] for i in range(4)] == sorted(per_pos.values(), reverse=True)
    mean_acceptance_length = 1 + accepted / drafts  # what a dashboard computes
    assert 1 < mean_acceptance_length <= 5


def test_lora_adapters_are_served_and_reported(serve: Any) -> None:
    clock = Clock()
    wall = [1_800_000_000.0]
    sim = SimulatedVllm(MODEL, clock=clock, lora_adapters=["sql-lora", "chat-lora"], wall_clock=lambda: wall[0])
    url = serve(sim)
    models = json.loads(_get(url + "/v1/models")[1])["data"]
    assert [m["id"] for m in models] == [MODEL, "sql-lora", "chat-lora"]
    assert models[1]["parent"] == MODEL
    assert _post(url + "/v1/chat/completions", {**CHAT, "model": "sql-lora"})[0] == 200
    text = _metrics(url)
    samples = parse_samples(text)
    info = samples["vllm:lora_requests_info"]
    assert info == [
        ({"max_lora": "2", "running_lora_adapters": "sql-lora", "waiting_lora_adapters": ""}, 1_800_000_000.0)
    ]
    assert "1.8e+09" in text  # the Python client's spelling of a large value
    wall[0] += 5
    clock.now += 3  # background traffic takes turns: the base model, sql-lora, chat-lora
    info = parse_samples(_metrics(url))["vllm:lora_requests_info"]
    assert len(info) == 2  # the old combination stays, with the time it was last seen
    assert max(info, key=lambda s: s[1])[0]["running_lora_adapters"] == "sql-lora,chat-lora"


def test_priority_scheduling_labels_finished_requests(serve: Any) -> None:
    sim = SimulatedVllm(MODEL, clock=Clock(), scheduling_policy="priority")
    url = serve(sim)
    text = _metrics(url)
    assert "vllm:e2e_request_latency_seconds" not in text  # no finished request, no bucket yet
    for priority in (5, -1, 0):
        assert _post(url + "/v1/completions", {"prompt": "x", "priority": priority})[0] == 200
    samples = parse_samples(_metrics(url))
    assert value(samples, "vllm:scheduler_policy_info", policy="priority") == 1
    assert value(samples, "vllm:scheduler_policy_info", policy="fcfs") == 0
    buckets = {labels["priority"] for labels, _ in samples["vllm:e2e_request_latency_seconds_count"]}
    assert buckets == {">1", "-1", "0"}
    assert value(samples, "vllm:request_success_total", finished_reason="stop", priority=">1") == 1
    assert value(samples, "vllm:request_success_total", finished_reason="error", priority=">1") == 0
    assert value(samples, "vllm:request_priority_count") == 3
    assert value(samples, "vllm:request_priority_bucket", le="1.0") == 2
    assert value(samples, "vllm:request_priority_bucket", le="10.0") == 3
    assert all("priority" not in labels for labels, _ in samples["vllm:inter_token_latency_seconds_count"])


# -- values still evolve with the clock ------------------------------------------------------------------


def test_background_traffic_moves_the_new_series() -> None:
    clock = Clock()
    sim = SimulatedVllm(MODEL, clock=clock)
    first = parse_samples(sim.render_metrics().decode())
    clock.now += 10
    later = parse_samples(sim.render_metrics().decode())
    for name in (
        "vllm:iteration_tokens_total_count",
        "vllm:request_inference_time_seconds_count",
        "vllm:request_time_per_output_token_seconds_count",
        "vllm:request_params_max_tokens_count",
        "vllm:prompt_tokens_cached_total",
    ):
        assert (value(later, name) or 0) > (value(first, name) or 0), name
    cached = value(later, "vllm:prompt_tokens_cached_total") or 0
    by_source = {labels["source"]: v for labels, v in later["vllm:prompt_tokens_by_source_total"]}
    assert by_source["local_cache_hit"] == cached and by_source["external_kv_transfer"] == 0
    assert by_source["local_compute"] + cached == value(later, "vllm:prompt_tokens_total")
    assert value(later, "vllm:prompt_tokens_cached_by_source_total", source="device") == cached
    assert math.isclose(value(later, "vllm:prefix_cache_hits_total") or 0, cached)


def test_cli_options_reach_the_simulator() -> None:
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
            "--spec-decode",
            "2",
            "--lora-adapter",
            "sql-lora",
            "--scheduling-policy",
            "priority",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _get(url + "/health")[0] == 200, timeout=15)
        # the LoRA and priority families come with the first engine steps of the background traffic
        want = expected("spec_decode", "lora", "priority")
        assert wait_for(lambda: series_of(_metrics(url)) == want, timeout=10)
        assert [m["id"] for m in json.loads(_get(url + "/v1/models")[1])["data"]] == [MODEL, "sql-lora"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0

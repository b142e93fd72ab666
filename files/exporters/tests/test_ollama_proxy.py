"""Ollama monitoring proxy: unit tests on recorded samples, streaming, pooling, cardinality, faults."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from llm_monitor_testkit.ollama_sim import SAMPLES, UPSTREAM_VERSION, load_sample

from conftest import parse_samples, value
from llm_monitor_exporters.core.webconfig import WebConfig
from llm_monitor_exporters.ollama.ollama_metrics import Histogram, ModelLabels, OllamaMetrics, normalise_endpoint
from llm_monitor_exporters.ollama.ollama_proxy import Inspector, inspect_request, parse_ps, parse_tags
from ollama_support import run as arun
from ollama_support import stack

GEN = "llm_monitor_ollama_generated_tokens_total"
TTFT = "llm_monitor_ollama_time_to_first_token_seconds"
TTFC = "llm_monitor_ollama_time_to_first_content_seconds"
USER = [{"role": "user", "content": "why is the sky blue?"}]
#: a generation request (Ollama only loads the model when the prompt or the messages are missing)
ASK = {"model": "llama3.2", "prompt": "why is the sky blue?"}
CHAT = {"model": "llama3.2", "messages": USER}


# --- units -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/api/generate", "generate"),
        ("/api/chat", "chat"),
        ("/api/embed", "embed"),
        ("/api/embeddings", "embeddings"),
        ("/api/tags", "tags"),
        ("/api/ps", "ps"),
        ("/api/show", "show"),
        ("/api/pull", "pull"),
        ("/api/push", "push"),
        ("/api/create", "create"),
        ("/api/copy", "copy"),
        ("/api/delete", "delete"),
        ("/api/version", "version"),
        ("/v1/chat/completions", "openai_chat"),
        ("/v1/completions", "openai_completions"),
        ("/v1/embeddings", "openai_embeddings"),
        ("/v1/models", "openai_models"),
        ("/api/status", "status"),
        ("/v1/responses", "openai_responses"),
        ("/v1/messages", "anthropic_messages"),
        ("/v1/audio/transcriptions", "openai_transcriptions"),
        ("/v1/models/llama3", "openai_retrieve_model"),
        ("/v1/models/hf.co%2Fuser%2Fm:q4", "openai_retrieve_model"),
        ("/api/generate/", "generate"),
        ("/api/tags?x=1", "tags"),
        ("/", "other"),
        ("/api/blobs/sha256:abc", "other"),
        ("/v1/models/", "openai_models"),
        ("/api/me", "other"),
        ("/../etc/passwd", "other"),
    ],
)
def test_normalise_endpoint(path: str, endpoint: str) -> None:
    assert normalise_endpoint(path) == endpoint


def test_missing_stream_means_streaming() -> None:
    assert inspect_request(b'{"model":"llama3.2","prompt":"hi"}', "generate") == ("llama3.2", True, True)
    assert inspect_request(b'{"model":"m","messages":[]}', "chat") == ("m", True, True)
    assert inspect_request(b'{"model":"m","stream":false}', "chat") == ("m", False, True)
    assert inspect_request(b'{"model":"m","stream":true}', "generate") == ("m", True, True)
    # OpenAI-compatible endpoints do not stream unless asked
    assert inspect_request(b'{"model":"m"}', "openai_chat") == ("m", False, True)
    assert inspect_request(b'{"model":"m","stream":true}', "openai_chat") == ("m", True, True)
    assert inspect_request(b"not json", "generate") == (None, True, False)
    assert inspect_request(b"[1,2]", "chat") == (None, True, False)
    assert inspect_request(b'{"name":"llama3"}', "show") == ("llama3", False, True)


def test_model_label_cap() -> None:
    labels = ModelLabels(limit=3)
    assert [labels.admit(m) for m in ("a", "b", "a", "c", "d", "e", "b")] == ["a", "b", "a", "c", "other", "other", "b"]
    assert labels.admit(None) == "unknown"
    assert labels.admit(42) == "unknown"
    assert ModelLabels(5).admit("x" * 500) == "other"
    # a name Ollama has not confirmed keeps no label of its own and takes no room
    labels = ModelLabels(limit=2)
    assert [labels.lookup(m) for m in ("a", "b", "c")] == ["other", "other", "other"]
    assert labels.lookup(None) == "unknown"
    labels.listed(["llama3.2:latest"])
    assert labels.lookup("llama3.2") == "llama3.2"  # Ollama's alias of a listed model
    assert labels.lookup("llama3.2:latest") == "llama3.2:latest"
    assert labels.admitted == 2
    assert labels.admit("gemma2:2b") == "other"  # the budget is full


def test_histogram_buckets() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 5.0, float("nan")):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert h.count == 4
    assert h.sum == pytest.approx(5.65)


def _feed_in_pieces(insp: Inspector, data: bytes, seed: int) -> None:
    rng = random.Random(seed)
    i = 0
    while i < len(data):
        n = rng.randint(1, 40)
        insp.feed(data[i : i + n])
        i += n
    insp.finish()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_inspector_recorded_generate_stream(seed: int) -> None:
    m = OllamaMetrics()
    insp = Inspector(m, "llama3.2", "generate", True, time.perf_counter(), True)
    _feed_in_pieces(insp, (SAMPLES / "generate_stream.ndjson").read_bytes(), seed)
    assert insp.final_seen and insp.first_token_seen and not insp.malformed
    key = ("llama3.2", "generate")
    assert m.prompt_tokens[key] == 26
    assert m.generated_tokens[key] == 259
    assert m.total_duration[key].sum == pytest.approx(10.706818083)
    assert m.load_duration[key].sum == pytest.approx(6.338219291)
    assert m.tokens_per_second[key].sum == pytest.approx(259 / 4.23271)
    assert m.ttft[key].count == 1


def test_inspector_recorded_chat_nonstream_and_openai() -> None:
    m = OllamaMetrics()
    insp = Inspector(m, "gemma2:2b", "chat", True, time.perf_counter(), True)
    _feed_in_pieces(insp, (SAMPLES / "chat_stream.ndjson").read_bytes(), 7)
    assert m.generated_tokens[("gemma2:2b", "chat")] == 17
    assert m.tokens_per_second[("gemma2:2b", "chat")].sum == pytest.approx(17 / 4.032296)

    insp = Inspector(m, "gemma3", "generate", False, time.perf_counter(), True)
    _feed_in_pieces(insp, (SAMPLES / "generate_nostream.json").read_bytes(), 8)
    assert m.prompt_tokens[("gemma3", "generate")] == 11
    assert m.generated_tokens[("gemma3", "generate")] == 18
    assert ("gemma3", "generate") not in m.ttft  # no streamed first token without streaming

    insp = Inspector(m, "llama3.2", "openai_chat", False, time.perf_counter(), True)
    _feed_in_pieces(insp, (SAMPLES / "openai_chat.json").read_bytes(), 9)
    assert m.generated_tokens[("llama3.2", "openai_chat")] == 10

    insp = Inspector(m, "llama3.2", "openai_chat", True, time.perf_counter(), True)
    _feed_in_pieces(insp, (SAMPLES / "openai_chat_stream.txt").read_bytes(), 10)
    assert insp.final_seen and insp.first_token_seen and not insp.malformed


def test_inspector_flags_malformed_and_truncated_lines() -> None:
    m = OllamaMetrics()
    insp = Inspector(m, "x", "generate", True, time.perf_counter(), True)
    lines = (SAMPLES / "generate_stream.ndjson").read_bytes().splitlines(keepends=True)
    insp.feed(b"".join(lines[:2]) + b'{"model":"x","resp\n')
    insp.finish()
    assert insp.malformed and not insp.final_seen


def test_parse_recorded_ps_and_tags() -> None:
    loaded = parse_ps(load_sample("ps.json"))
    assert len(loaded) == 1
    assert loaded[0].name == "mistral:latest" and loaded[0].size_vram == 5137025024
    assert loaded[0].expires_at == pytest.approx(1717537111.83753)  # 2024-06-04T14:38:31.83753-07:00
    installed = parse_tags(load_sample("tags.json"))
    assert {i.name for i in installed} >= {"codellama:13b", "llama3.2:latest"}
    cl = next(i for i in installed if i.name == "codellama:13b")
    assert (cl.family, cl.parameter_size, cl.quantization, cl.size) == ("llama", "13B", "Q4_0", 7365960935)
    assert parse_ps({"models": None}) == [] and parse_tags("garbage") == []


# --- end to end (simulator + proxy in one loop) ---------------------------------------------------
def test_metrics_pass_promtool_and_report_models(promtool: Callable[[str], None]) -> None:
    async def body() -> str:
        async with stack() as st:
            for payload, path in (
                ({"model": "llama3.2", "prompt": "hi"}, "/api/generate"),
                ({"model": "llama3.2", "messages": USER, "stream": False}, "/api/chat"),
                ({"model": "all-minilm", "input": ["a", "b"]}, "/api/embed"),
                ({"model": "llama3.2", "messages": USER, "stream": True}, "/v1/chat/completions"),
            ):
                async with st.session.post(st.url + path, json=payload) as r:
                    assert r.status == 200
                    await r.read()
            async with st.session.get(st.url + "/api/tags") as r:
                assert r.status == 200
            return await st.metrics_text()

    text = arun(body)
    promtool(text)
    s = parse_samples(text)
    assert value(s, "llm_monitor_ollama_requests_total", model="llama3.2", endpoint="generate", status="200") == 1
    assert value(s, "llm_monitor_ollama_requests_total", model="none", endpoint="tags", status="200") == 1
    assert value(s, GEN, model="llama3.2", endpoint="generate") == 8
    assert value(s, GEN, model="llama3.2", endpoint="openai_chat") == 8
    assert value(s, "llm_monitor_ollama_prompt_tokens_total", model="all-minilm", endpoint="embed") == 2
    assert value(s, "llm_monitor_ollama_time_to_first_token_seconds_count", model="llama3.2", endpoint="generate") == 1
    assert value(s, "llm_monitor_ollama_time_to_first_token_seconds_count", model="llama3.2", endpoint="chat") is None
    assert value(s, "llm_monitor_ollama_loaded_model_vram_bytes", model="mistral:latest") == 5137025024
    assert value(s, "llm_monitor_ollama_model_info", model="llama3.2:latest", quantization="Q4_K_M") == 1
    assert value(s, "llm_monitor_ollama_up") == 1
    assert value(s, "llm_monitor_ollama_version_info", version=UPSTREAM_VERSION) == 1
    assert value(s, "llm_monitor_exporter_up", exporter="ollama", upstream="ollama") == 1
    assert all(v == 0 for _l, v in s["llm_monitor_ollama_in_flight_requests"])


def test_streaming_is_chunk_by_chunk() -> None:
    async def body() -> None:
        async with stack(sim_kwargs={"tokens": 20, "token_interval": 0.05}) as st:
            t0 = time.perf_counter()
            # no "stream" key: Ollama streams, and so must the proxy
            async with st.session.post(st.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as r:
                first = await r.content.readline()
                t_first = time.perf_counter() - t0
                # the simulator is still producing: the proxy did not wait for the whole answer
                assert st.sim.stats.streams_completed == 0
                assert st.sim.stats.tokens_generated < 20
                assert json.loads(first)["response"] == "The"
                rest = await r.read()
            total = time.perf_counter() - t0
            assert t_first < 0.4 < total
            lines = [json.loads(x) for x in (first + rest).splitlines()]
            assert len(lines) == 21 and lines[-1]["done"] is True
            s = await st.samples()
            assert (
                value(s, "llm_monitor_ollama_time_to_first_token_seconds_count", model="llama3.2", endpoint="generate")
                == 1
            )
            ttft_sum = value(
                s, "llm_monitor_ollama_time_to_first_token_seconds_sum", model="llama3.2", endpoint="generate"
            )
            assert ttft_sum is not None and ttft_sum < 0.4

    arun(body)


def test_upstream_connections_are_reused() -> None:
    async def body() -> None:
        async with stack() as st:
            before_sim, before_proxy = st.sim.stats.connections, st.proxy.upstream_connections
            for i in range(20):
                payload = {"model": "llama3.2", "prompt": f"q{i}", "stream": i % 2 == 0}
                async with st.session.post(st.url + "/api/generate", json=payload) as r:
                    assert r.status == 200
                    await r.read()
            # 20 sequential requests over the connections the first poll left in the pool: none new
            assert st.proxy.upstream_connections - before_proxy <= 1
            assert st.sim.stats.connections - before_sim <= 1
            assert st.sim.stats.requests["/api/generate"] == 20

    arun(body)


def test_model_cardinality_cap_end_to_end() -> None:
    async def body() -> None:
        # the simulated Ollama lists 7 models (installed, mistral:latest also loaded): the first poll admits them
        # all; llama3.2 (answered 200) takes the 8th and last label; llama3 answers 200 too but finds the budget
        # full; m1..m3 do not exist (404) and never get a label of their own
        async with stack(max_models=8) as st:
            for name in ("llama3.2", "gemma2:2b", "m1", "m2", "m3", "llama3", "llama3.2"):
                async with st.session.post(st.url + "/api/chat", json={"model": name, "messages": USER}) as r:
                    await r.read()
            s = await st.samples()
            models = {lbl["model"] for lbl, _v in s["llm_monitor_ollama_requests_total"]}
            assert models == {"llama3.2", "gemma2:2b", "other"}
            assert value(s, "llm_monitor_ollama_requests_total", model="other", endpoint="chat", status="404") == 3
            assert value(s, "llm_monitor_ollama_requests_total", model="other", endpoint="chat", status="200") == 1
            assert value(s, "llm_monitor_ollama_requests_total", model="llama3.2", endpoint="chat", status="200") == 2
            assert value(s, "llm_monitor_ollama_requests_total", model="gemma2:2b", endpoint="chat", status="200") == 1
            paths = {lbl["endpoint"] for lbl, _v in s["llm_monitor_ollama_requests_total"]}
            assert paths == {"chat"}

    arun(body)


def test_unknown_models_do_not_use_up_the_label_budget() -> None:
    """60 requests for models that do not exist (404, as Ollama answers) leave room for the real ones."""

    async def body() -> None:
        async with stack() as st:  # max_models 50
            for i in range(60):
                async with st.session.post(st.url + "/api/generate", json={"model": f"nope-{i}", "prompt": "x"}) as r:
                    assert r.status == 404
                    assert await r.json() == {"error": f"model 'nope-{i}' not found"}
            # a model pulled since the last poll (Ollama answers for it, its listing does not show it yet) and one
            # the poll listed
            st.sim.installed.add("phi3:mini")
            async with st.session.post(st.url + "/api/generate", json={"model": "phi3:mini", "prompt": "x"}) as r:
                assert r.status == 200
                await r.read()
            async with st.session.post(st.url + "/api/generate", json={"model": "gemma2:2b", "prompt": "x"}) as r:
                await r.read()
            s = await st.samples()
            assert value(s, "llm_monitor_ollama_requests_total", model="other", endpoint="generate", status="404") == 60
            assert {lbl["model"] for lbl, _v in s["llm_monitor_ollama_requests_total"]} == {
                "other",
                "phi3:mini",
                "gemma2:2b",
            }
            assert value(s, GEN, model="phi3:mini", endpoint="generate") == 8
            assert value(s, GEN, model="gemma2:2b", endpoint="generate") == 8
            assert (
                value(s, "llm_monitor_ollama_time_to_first_token_seconds_count", model="phi3:mini", endpoint="generate")
                == 1
            )
            assert all(not lbl["model"].startswith("nope-") for fam in s.values() for lbl, _v in fam if "model" in lbl)

    arun(body)


def test_listed_model_keeps_its_label_for_errors() -> None:
    """A model Ollama listed (or answered for) is labelled by name in its 5xx and 502s too, not only in its 200s."""

    async def body() -> None:
        async with stack("error_burst") as st:  # 500 for every generation; the poll still lists the models
            async with st.session.post(st.url + "/api/generate", json={"model": "gemma2:2b", "prompt": "x"}) as r:
                assert r.status == 500
            s = await st.samples()
            assert (
                value(s, "llm_monitor_ollama_requests_total", model="gemma2:2b", endpoint="generate", status="500") == 1
            )
        async with stack() as st:
            st.sim.installed.add("phi3:mini")  # pulled since the poll: only the 200 below says it exists
            async with st.session.post(st.url + "/api/generate", json={**ASK, "model": "phi3:mini"}) as r:
                assert r.status == 200
                await r.read()
            await st.sim.close()  # Ollama goes away
            async with st.session.post(st.url + "/api/generate", json={**ASK, "model": "phi3:mini"}) as r:
                assert r.status == 502
            async with st.session.post(st.url + "/api/generate", json={"model": "phi4"}) as r:
                assert r.status == 502  # never confirmed
            s = await st.samples()
            assert (
                value(s, "llm_monitor_ollama_requests_total", model="phi3:mini", endpoint="generate", status="502") == 1
            )
            assert value(s, "llm_monitor_ollama_requests_total", model="other", endpoint="generate", status="502") == 1

    arun(body)


def test_upstream_down_502_then_still_serving() -> None:
    async def body() -> None:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        async with stack(upstream_port=dead, connect_timeout=1) as st:
            for _ in range(2):
                async with st.session.post(st.url + "/api/generate", json=ASK) as r:
                    assert r.status == 502
                    assert "cannot connect" in (await r.json())["error"]
            assert await st.error_count("upstream_connect") == 2
            s = await st.samples()
            assert value(s, "llm_monitor_ollama_up") == 0
            # Ollama never answered, so nothing confirmed that llama3.2 exists: "other" (a model it listed or
            # answered for keeps its label: test_listed_model_keeps_its_label_for_errors)
            assert value(s, "llm_monitor_ollama_requests_total", model="other", endpoint="generate", status="502") == 2
        async with stack("upstream_down") as st:  # accepts, then closes without answering
            async with st.session.post(st.url + "/api/chat", json=CHAT) as r:
                assert r.status == 502
            async with st.session.get(st.url + "/api/tags") as r:
                assert r.status == 502
            assert await st.error_count("upstream_connect") == 2
            assert (await st.metrics_text()).startswith("# HELP")

    arun(body)


def test_slow_upstream_times_out_504() -> None:
    async def body() -> None:
        async with stack("slow", sim_kwargs={"slow_delay": 3.0}, upstream_timeout=0.3) as st:
            t0 = time.perf_counter()
            async with st.session.post(st.url + "/api/generate", json=ASK) as r:
                assert r.status == 504
                assert "did not answer" in (await r.json())["error"]
            assert time.perf_counter() - t0 < 2
            assert await st.error_count("upstream_timeout") == 1
            await st.still_serving()

    arun(body)


def test_malformed_upstream_json_passed_through_and_counted() -> None:
    async def body() -> None:
        async with stack("malformed_json") as st:
            async with st.session.post(st.url + "/api/generate", json={**ASK, "stream": False}) as r:
                assert r.status == 200
                raw = await r.read()
            assert raw.startswith(b'{"model":"llama3.2"')
            with pytest.raises(ValueError, match="."):
                json.loads(raw)
            async with st.session.post(st.url + "/api/generate", json=ASK) as r:
                lines = (await r.read()).splitlines()
            assert len(lines) == 9 and lines[0].startswith(b'{"model":"llama3.2","created_at":"')
            assert await st.error_count("upstream_malformed") == 2
            assert await st.error_count("truncated_stream") == 0
            await st.still_serving()

    arun(body)


def test_truncated_stream_reaches_client_as_truncated() -> None:
    async def body() -> None:
        async with stack("truncated_stream") as st:
            got = bytearray()

            async def read_all() -> None:
                async with st.session.post(st.url + "/api/chat", json=CHAT) as r:
                    assert r.status == 200
                    async for chunk in r.content.iter_any():
                        got.extend(chunk)

            with pytest.raises(aiohttp.ClientPayloadError):
                await read_all()
            assert b'"done":true' not in got and bytes(got).count(b"\n") == 4
            assert await st.error_count("truncated_stream") == 1
            await st.still_serving()

    arun(body)


@pytest.mark.parametrize(
    ("scenario", "status", "kind"), [("error_burst", 500, "upstream_5xx"), ("server_busy", 503, "upstream_busy")]
)
def test_upstream_error_status_passed_through(scenario: str, status: int, kind: str) -> None:
    """Ollama's errors reach the client unchanged; a full queue (503 "server busy", no Retry-After: Ollama never
    answers 429) counts as upstream_busy, not as a server failure."""

    async def body() -> None:
        async with stack(scenario) as st:
            direct = f"http://127.0.0.1:{st.proxy.upstream.rsplit(':', 1)[1]}/api/generate"
            async with st.session.post(direct, json=ASK) as r:
                direct_body, direct_headers = await r.read(), r.headers
            async with st.session.post(st.url + "/api/generate", json=ASK) as r:
                assert r.status == status
                assert await r.read() == direct_body
                assert r.headers["Content-Type"] == direct_headers["Content-Type"]
                assert "Retry-After" not in r.headers
            assert await st.error_count(kind) == 1
            other = {"upstream_5xx": "upstream_busy", "upstream_busy": "upstream_5xx"}[kind]
            assert await st.error_count(other) == 0
            s = await st.samples()
            assert (
                value(s, "llm_monitor_ollama_requests_total", model="llama3.2", endpoint="generate", status=str(status))
                == 1
            )
            await st.still_serving()

    arun(body)


def test_client_disconnect_cancels_upstream() -> None:
    async def body() -> None:
        async with stack(sim_kwargs={"tokens": 200, "token_interval": 0.02}) as st:
            async with (
                aiohttp.ClientSession() as own,
                own.post(st.url + "/api/generate", json=ASK) as r,
            ):
                await r.content.readline()
                r.close()  # drop the connection mid-stream
            for _ in range(100):
                if st.sim.stats.streams_cancelled:
                    break
                await asyncio.sleep(0.02)
            assert st.sim.stats.streams_cancelled == 1
            assert st.sim.stats.streams_completed == 0
            assert await st.error_count("client_disconnect") == 1
            s = await st.samples()
            assert value(s, "llm_monitor_ollama_client_disconnects_total", endpoint="generate") == 1
            assert (
                value(s, "llm_monitor_ollama_requests_total", model="llama3.2", endpoint="generate", status="499") == 1
            )
            assert value(s, "llm_monitor_ollama_in_flight_requests", endpoint="generate") == 0
            await st.still_serving()

    arun(body)


def test_oversized_body_413() -> None:
    async def body() -> None:
        async with stack(max_body_bytes=1024) as st:
            big = json.dumps({"model": "llama3.2", "prompt": "x" * 5000}).encode()
            async with st.session.post(st.url + "/api/generate", data=big) as r:
                assert r.status == 413
                assert "larger than 1024" in (await r.json())["error"]

            async def chunks():  # no Content-Length: chunked upload
                for _ in range(10):
                    yield b"y" * 200

            async with st.session.post(st.url + "/api/generate", data=chunks()) as r:
                assert r.status == 413
            assert st.sim.stats.requests.get("/api/generate", 0) == 0
            assert await st.error_count("body_too_large") == 2
            await st.still_serving()

    arun(body)


def test_invalid_request_json_forwarded_unchanged() -> None:
    async def body() -> None:
        async with stack() as st:
            raw = b'{"model": "llama3.2", "prompt": "unterminated'
            async with st.session.post(
                st.url + "/api/generate", data=raw, headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status == 400
                assert "invalid character" in (await r.json())["error"]
            assert st.sim.last_request_body == raw
            s = await st.samples()
            assert (
                value(s, "llm_monitor_ollama_requests_total", model="unknown", endpoint="generate", status="400") == 1
            )
            assert await st.error_count("bad_request") == 1
            # valid bodies are forwarded byte for byte too (key order, spacing)
            raw2 = b'{ "stream" : false,  "prompt":"hi", "model":"llama3.2" }'
            async with st.session.post(st.url + "/api/generate", data=raw2) as r:
                assert r.status == 200
            assert st.sim.last_request_body == raw2
            await st.still_serving()

    arun(body)


def test_every_endpoint_passes_through() -> None:
    async def body() -> None:
        async with stack() as st:
            async with st.session.get(st.url + "/") as r:
                assert r.status == 200 and await r.text() == "Ollama is running"
            async with st.session.get(st.url + "/api/unknown/thing") as r:
                assert r.status == 404  # the upstream's own answer, relayed
            async with st.session.get(st.url + "/v1/models") as r:
                assert r.status == 200 and (await r.json())["object"] == "list"
            s = await st.samples()
            assert value(s, "llm_monitor_ollama_requests_total", model="none", endpoint="other", status="404") == 1

    arun(body)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_metrics_basic_auth() -> None:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4))
    web = WebConfig(basic_auth_users={"prom": hashed}, headers={"X-Frame-Options": "deny"})

    async def body() -> None:
        async with stack(web=web) as st:
            async with st.session.get(st.metrics_url) as r:
                assert r.status == 401
            async with st.session.get(st.metrics_url, headers=_basic("prom", "secret")) as r:
                assert r.status == 200 and r.headers["X-Frame-Options"] == "deny"
            async with st.session.get(st.metrics_url, headers=_basic("prom", "wrong")) as r:
                assert r.status == 401
            # the proxy port itself is not behind the metrics auth
            await st.still_serving()

    arun(body)


def test_cli_check_config(tmp_path: Path) -> None:
    from conftest import cli

    res = cli("ollama_proxy", "--check-config")
    assert res.returncode == 0 and "exporter ollama_proxy" in res.stdout and "listen :9439" in res.stdout
    cfg = tmp_path / "ollama.yml"
    cfg.write_text("ollama_proxy:\n  upstream_url: localhost:11434\n")
    res = cli("ollama_proxy", "--config", str(cfg), "--check-config")
    assert res.returncode == 1 and "ollama_proxy.upstream_url" in res.stderr
    cfg.write_text("ollama_proxy:\n  max_models: 0\n")
    res = cli("ollama_proxy", "--config", str(cfg), "--check-config")
    assert res.returncode == 1 and "max_models" in res.stderr


def test_metrics_tls_from_web_config_file(tls_files: Path) -> None:
    import ssl

    from llm_monitor_exporters.core.webconfig import load_web_config

    web = load_web_config(tls_files / "web.yml")
    ctx = ssl.create_default_context(cafile=str(tls_files / "server.crt"))

    async def body() -> None:
        async with stack(web=web) as st:
            url = st.metrics_url.replace("http://", "https://")
            async with st.session.get(url, ssl=ctx, headers=_basic("prometheus", "s3cret")) as r:
                assert r.status == 200 and "llm_monitor_ollama_up 1.0" in await r.text()
            async with st.session.get(url, ssl=ctx) as r:
                assert r.status == 401
            with pytest.raises(aiohttp.ClientError):
                await st.session.get(st.metrics_url)  # plain HTTP on the TLS port

    arun(body)


# --- request duration by status, upstream connections, final-line detection ---------------------------------------
def test_request_duration_is_split_by_status() -> None:
    """Fast 404s/502s and 499 disconnects do not land in the latency histogram of the answers."""

    async def body() -> None:
        async with stack(sim_kwargs={"tokens": 8, "token_interval": 0.02}) as st:
            for _ in range(3):
                async with st.session.post(st.url + "/api/generate", json=ASK) as r:
                    assert r.status == 200
                    await r.read()
            async with st.session.post(st.url + "/api/generate", json={"model": "nope"}) as r:
                assert r.status == 404
            async with (
                aiohttp.ClientSession() as own,
                own.post(st.url + "/api/generate", json=ASK) as r,
            ):
                await r.content.readline()
                r.close()  # the client goes away mid-answer: 499
            for _ in range(100):
                if st.sim.stats.streams_cancelled:
                    break
                await asyncio.sleep(0.02)
            await st.sim.close()
            async with st.session.post(st.url + "/api/generate", json=ASK) as r:
                assert r.status == 502
            s = await st.samples()

        dur = "llm_monitor_ollama_request_duration_seconds"
        lbl = {"model": "llama3.2", "endpoint": "generate"}
        assert value(s, dur + "_count", **lbl, status="200") == 3
        assert value(s, dur + "_count", **lbl, status="499") == 1
        assert value(s, dur + "_count", **lbl, status="502") == 1
        assert value(s, dur + "_count", model="other", endpoint="generate", status="404") == 1
        # the answers' series holds only answers: 8 tokens 20 ms apart take at least 0.14 s each
        assert value(s, dur + "_sum", **lbl, status="200") >= 3 * 0.14
        assert value(s, dur + "_bucket", **lbl, status="200", le="0.1") == 0
        assert value(s, dur + "_bucket", **lbl, status="502", le="0.1") == 1
        # one series per (model, endpoint, status) of requests_total, with the same counts
        requests = {tuple(sorted(lb.items())): v for lb, v in s["llm_monitor_ollama_requests_total"]}
        counts = {tuple(sorted(lb.items())): v for lb, v in s[dur + "_count"]}
        assert counts == requests

    arun(body)


def test_upstream_connection_pool_is_exported() -> None:
    """Connection reuse is visible from Prometheus: opened vs reused connections, open ones active and idle."""

    async def body() -> None:
        async with stack(sim_kwargs={"tokens": 40, "token_interval": 0.02}) as st:
            s0 = await st.samples()
            opened0 = value(s0, "llm_monitor_ollama_upstream_connections_opened_total")
            reused0 = value(s0, "llm_monitor_ollama_upstream_connections_reused_total")
            assert opened0 is not None and opened0 >= 1  # the first poll's
            assert reused0 is not None
            assert value(s0, "llm_monitor_ollama_upstream_connections", state="active") == 0
            assert value(s0, "llm_monitor_ollama_upstream_connections", state="idle") >= 1
            for i in range(10):
                async with st.session.post(st.url + "/api/generate", json={"model": "llama3.2", "stream": False}) as r:
                    assert r.status == 200, i
                    await r.read()
            s1 = await st.samples()
            assert value(s1, "llm_monitor_ollama_upstream_connections_opened_total") - opened0 <= 1
            assert value(s1, "llm_monitor_ollama_upstream_connections_reused_total") - reused0 >= 9
            assert st.sim.stats.connections == value(s1, "llm_monitor_ollama_upstream_connections_opened_total")
            # two streams at once: two connections carry requests while they run
            streams = [asyncio.create_task(st.session.post(st.url + "/api/generate", json=ASK)) for _ in range(2)]
            responses = await asyncio.gather(*streams)
            await responses[0].content.readline()
            await responses[1].content.readline()
            s2 = await st.samples()
            assert value(s2, "llm_monitor_ollama_upstream_connections", state="active") == 2
            for r in responses:
                await r.read()
                r.release()
            s3 = await st.samples()
            assert value(s3, "llm_monitor_ollama_upstream_connections", state="active") == 0
            assert value(s3, "llm_monitor_ollama_upstream_connections", state="idle") >= 2

    arun(body)


async def _raw_upstream(pieces: list[bytes], delay: float = 0.002) -> tuple[aiohttp.web.AppRunner, int]:
    """An upstream that streams one recorded answer in exactly the given pieces (one write each)."""
    from aiohttp import web

    async def generate(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for piece in pieces:
            await resp.write(piece)
            await asyncio.sleep(delay)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/api/generate", generate)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def _final_split_inside_done(data: bytes) -> list[bytes]:
    cut = data.rindex(b'"done":true') + len(b'"done":tr')
    return [data[:cut], data[cut:]]


@pytest.mark.parametrize(
    "layout",
    ["one_write", "line_per_write", "final_split_inside_done", "byte_per_write", "python_spacing", "nested_done"],
)
def test_final_statistics_found_however_the_stream_is_cut(layout: str) -> None:
    """The proxy reads counts and durations from the final line only; these must come out right for any cut."""
    data = (SAMPLES / "generate_stream.ndjson").read_bytes()
    lines = data.splitlines(keepends=True)
    expected_tokens = 259
    if layout == "python_spacing":  # another encoder's spacing: "done": true
        data = b"".join(json.dumps(json.loads(line)).encode() + b"\n" for line in lines)
        lines = data.splitlines(keepends=True)
    if layout == "nested_done":  # a middle line carrying a nested "done":true (tool call arguments) is not final
        tool = {"model": "llama3.2", "created_at": "x", "response": "", "done": False,
                "message": {"tool_calls": [{"function": {"name": "f", "arguments": {"done": True}}}]}}  # fmt: skip
        lines.insert(2, json.dumps(tool, separators=(",", ":")).encode() + b"\n")
        data = b"".join(lines)
    if layout == "one_write":
        pieces = [data]
    elif layout == "final_split_inside_done":
        pieces = _final_split_inside_done(data)
    elif layout == "byte_per_write":
        pieces = [data[i : i + 1] for i in range(len(data))]
    else:
        pieces = lines

    async def body() -> None:
        runner, port = await _raw_upstream(pieces, delay=0 if layout == "byte_per_write" else 0.002)
        try:
            async with stack(upstream_port=port) as st:
                async with st.session.post(st.url + "/api/generate", json={"model": "llama3.2"}) as r:
                    assert r.status == 200
                    assert await r.read() == data  # relayed unchanged
                s = await st.samples()
        finally:
            await runner.cleanup()
        lbl = {"model": "llama3.2", "endpoint": "generate"}
        assert value(s, GEN, **lbl) == expected_tokens
        assert value(s, "llm_monitor_ollama_prompt_tokens_total", **lbl) == 26
        assert value(s, "llm_monitor_ollama_total_duration_seconds_sum", **lbl) == pytest.approx(10.706818083)
        assert value(s, "llm_monitor_ollama_load_duration_seconds_sum", **lbl) == pytest.approx(6.338219291)
        assert value(s, "llm_monitor_ollama_time_to_first_token_seconds_count", **lbl) == 1
        assert value(s, "llm_monitor_ollama_tokens_per_second_count", **lbl) == 1
        for kind in ("truncated_stream", "upstream_malformed"):
            assert value(s, "llm_monitor_ollama_errors_total", kind=kind) == 0, kind

    arun(body)


def test_broken_middle_line_is_counted_malformed() -> None:
    data = (SAMPLES / "generate_stream.ndjson").read_bytes()
    lines = data.splitlines(keepends=True)
    lines[2] = lines[2][:-10] + b"\n"  # a middle line cut short, after the first token

    async def body() -> None:
        runner, port = await _raw_upstream(lines)
        try:
            async with stack(upstream_port=port) as st:
                async with st.session.post(st.url + "/api/generate", json={"model": "llama3.2"}) as r:
                    assert r.status == 200
                    await r.read()
                s = await st.samples()
        finally:
            await runner.cleanup()
        assert value(s, "llm_monitor_ollama_errors_total", kind="upstream_malformed") == 1
        assert value(s, GEN, model="llama3.2", endpoint="generate") == 259  # the final line still counts

    arun(body)

"""Simulated Ollama: every answer carries exactly the fields Ollama's code gives it (samples/ollama_fields.json, the
commit it records); streams, failures and the queue behave as Ollama's do; scenarios behave as documented."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from conftest import FAST
from conftest import run as arun
from llm_monitor_testkit.ollama_sim import (
    ERROR_BUSY,
    SCENARIOS,
    UPSTREAM_COMMIT,
    OllamaSimulator,
    go_time,
    load_sample,
    parse_keep_alive,
)

RECORD = load_sample("ollama_fields.json")
SHAPES: dict[str, Any] = RECORD["shapes"]
ENDPOINTS: dict[str, str] = RECORD["endpoints"]
ZERO: tuple[object, ...] = ("", 0, False, None, [], {})
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
USER = [{"role": "user", "content": "why is the sky blue?"}]


def problems(obj: object, shape_name: str, path: str = "$") -> list[str]:
    """How ``obj`` differs from the recorded shape: unknown or missing fields, wrong order, zero values that Go's
    omitempty would have left out."""
    shape = SHAPES[shape_name]
    if not isinstance(obj, dict):
        return [f"{path}: {type(obj).__name__}, not an object ({shape_name})"]
    fields: list[str] = shape["fields"]
    omitempty = set(shape.get("omitempty", ()))
    omitnil = set(shape.get("omitnil", ()))
    out = [f"{path}.{k}: not a field of {shape_name}" for k in obj if k not in fields]
    present = [k for k in obj if k in fields]
    if present != sorted(present, key=fields.index):
        out.append(f"{path}: order {present} is not {shape_name}'s")
    for name in fields:
        if name not in obj:
            if name not in omitempty and name not in omitnil:
                out.append(f"{path}.{name}: missing ({shape_name})")
            continue
        v = obj[name]
        if name in omitempty and any(v == z and type(v) is type(z) for z in ZERO):
            out.append(f"{path}.{name}: zero value {v!r} that omitempty leaves out")
        if name in omitnil and v is None:
            out.append(f"{path}.{name}: null that omitempty leaves out")
        if name in shape.get("nested", {}) and v is not None:
            out += problems(v, shape["nested"][name], f"{path}.{name}")
        if name in shape.get("items", {}) and isinstance(v, list):
            for i, item in enumerate(v):
                out += problems(item, shape["items"][name], f"{path}.{name}[{i}]")
    return out


class Checked:
    """The endpoints of the record a test run has checked, so that none goes unchecked."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def check(self, endpoint: str, obj: object) -> None:
        assert endpoint in ENDPOINTS, endpoint
        self.seen.add(endpoint)
        found = problems(obj, ENDPOINTS[endpoint])
        assert not found, f"{endpoint}: {found}\n{json.dumps(obj)[:600]}"

    def check_event(self, prefix: str, event: str, obj: object) -> None:
        for endpoint in ENDPOINTS:
            if endpoint.startswith(prefix + " event ") and event in endpoint[len(prefix) + 7 :].split(", "):
                self.check(endpoint, obj)
                return
        raise AssertionError(f"{prefix}: event {event} is not recorded")


def sse(body: bytes) -> list[tuple[str, str]]:
    """(event, data) of each server-sent event."""
    out = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        event, data = "", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        out.append((event, data))
    return out


def ndjson(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(x) for x in body.splitlines() if x.strip()]


@asynccontextmanager
async def sim(scenario: str = "normal", **kw: Any) -> AsyncIterator[tuple[OllamaSimulator, str, aiohttp.ClientSession]]:
    s = OllamaSimulator(scenario, **{**FAST, "thinking_tokens": 4, **kw})
    port = await s.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        try:
            yield s, f"http://127.0.0.1:{port}", session
        finally:
            await s.close()


def _audio_form(model: str = "llama3.2", **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("model", model)
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("file", b"RIFF\x24\x00\x00\x00WAVEfmt ", filename="q.wav", content_type="audio/wav")
    return form


# --- the recorded fields ---------------------------------------------------------------------------------
def test_the_record_names_the_upstream_and_its_shapes_exist() -> None:
    assert RECORD["upstream"]["commit"] == UPSTREAM_COMMIT
    for endpoint, shape in ENDPOINTS.items():
        assert shape in SHAPES, endpoint
    for name, shape in SHAPES.items():
        for field_name in (*shape.get("omitempty", ()), *shape.get("omitnil", ()), *shape.get("nested", {})):
            assert field_name in shape["fields"], (name, field_name)
        if shape.get("sorted_keys"):
            assert shape["fields"] == sorted(shape["fields"]), name
        for target in (*shape.get("nested", {}).values(), *shape.get("items", {}).values()):
            assert target in SHAPES, (name, target)


def test_every_answer_carries_exactly_the_recorded_fields() -> None:
    """Each endpoint, streamed and not, a thinking model and another, and each API's errors: all as recorded."""
    checked = Checked()

    async def body() -> None:
        async with sim() as (_s, url, session):

            async def get(path: str) -> Any:
                async with session.get(url + path) as r:
                    assert r.status == 200, path
                    return await r.json(content_type=None)

            async def post(path: str, payload: Any, status: int = 200) -> bytes:
                kw = {"data": payload} if isinstance(payload, aiohttp.FormData) else {"json": payload}
                async with session.post(url + path, **kw) as r:
                    data = await r.read()
                    assert r.status == status, (path, payload, r.status, data[:300])
                    return data

            for model in ("llama3.2", "qwen3:4b"):
                lines = ndjson(await post("/api/generate", {"model": model, "prompt": "why?"}))
                for line in lines[:-1]:
                    checked.check("POST /api/generate stream chunk", line)
                checked.check("POST /api/generate stream final", lines[-1])
                one = json.loads(await post("/api/generate", {"model": model, "prompt": "why?", "stream": False}))
                checked.check("POST /api/generate", one)
                for line in ndjson(await post("/api/chat", {"model": model, "messages": USER})):
                    checked.check("POST /api/chat stream chunk", line)
                one = json.loads(await post("/api/chat", {"model": model, "messages": USER, "stream": False}))
                checked.check("POST /api/chat", one)
                for stream in (False, True):
                    payload = {"model": model, "messages": USER, "stream": stream}
                    payload["stream_options"] = {"include_usage": True}
                    raw = await post("/v1/chat/completions", payload)
                    if stream:
                        for _e, data in sse(raw)[:-1]:
                            checked.check("POST /v1/chat/completions stream chunk", json.loads(data))
                    else:
                        checked.check("POST /v1/chat/completions", json.loads(raw))
                    payload = {"model": model, "prompt": "why?", "stream": stream}
                    payload["stream_options"] = {"include_usage": True}
                    raw = await post("/v1/completions", payload)
                    if stream:
                        for _e, data in sse(raw)[:-1]:
                            checked.check("POST /v1/completions stream chunk", json.loads(data))
                    else:
                        checked.check("POST /v1/completions", json.loads(raw))
                    raw = await post("/v1/responses", {"model": model, "input": "why?", "stream": stream})
                    if stream:
                        for event, data in sse(raw):
                            checked.check_event("POST /v1/responses", event, json.loads(data))
                    else:
                        checked.check("POST /v1/responses", json.loads(raw))
                    payload = {"model": model, "max_tokens": 64, "messages": USER, "stream": stream}
                    raw = await post("/v1/messages", payload)
                    if stream:
                        for event, data in sse(raw):
                            checked.check_event("POST /v1/messages", event, json.loads(data))
                    else:
                        checked.check("POST /v1/messages", json.loads(raw))
                raw = await post("/v1/audio/transcriptions", _audio_form(model))
                checked.check("POST /v1/audio/transcriptions", json.loads(raw))
            checked.check(
                "POST /api/embed", json.loads(await post("/api/embed", {"model": "all-minilm", "input": "a"}))
            )
            embedding = json.loads(await post("/api/embeddings", {"model": "all-minilm", "prompt": "a"}))
            checked.check("POST /api/embeddings", embedding)
            listing = json.loads(await post("/v1/embeddings", {"model": "all-minilm", "input": ["a", "b"]}))
            checked.check("POST /v1/embeddings", listing)
            checked.check("GET /api/tags", await get("/api/tags"))
            checked.check("GET /api/ps", await get("/api/ps"))
            checked.check("GET /api/status", await get("/api/status"))
            checked.check("GET /api/version", await get("/api/version"))
            checked.check("GET /v1/models", await get("/v1/models"))
            checked.check("GET /v1/models/{model}", await get("/v1/models/llama3.2"))
            error = json.loads(await post("/api/chat", {"model": "nope", "messages": USER}, 404))
            checked.check("native error (any status; a stream's mid-stream error line)", error)
            error = json.loads(await post("/v1/chat/completions", {"model": "nope", "messages": USER}, 404))
            checked.check("OpenAI-compatible error (/v1/* but /v1/messages)", error)
            error = json.loads(await post("/v1/messages", {"model": "nope", "max_tokens": 9, "messages": USER}, 404))
            checked.check("POST /v1/messages error", error)
        assert checked.seen == set(ENDPOINTS)  # every recorded answer was produced and checked

    arun(body)


def test_recorded_formats_of_older_samples_still_match() -> None:
    """The chunk layout of the recorded native streams (samples/*.ndjson) is the one Ollama still writes."""
    recorded = load_sample("generate_stream.ndjson")

    async def body() -> None:
        async with sim() as (s, url, session):
            async with session.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "why?"}) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "application/x-ndjson"
                lines = ndjson(await r.read())
            assert len(lines) == FAST["tokens"] + 1
            assert list(lines[0]) == list(recorded[0])
            assert set(lines[-1]) == set(recorded[-1])
            final = lines[-1]
            assert final["done"] is True and final["done_reason"] == "stop"
            for k in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
                assert isinstance(final[k], int) and final[k] > 0
            assert final["eval_count"] == FAST["tokens"]
            assert final["total_duration"] >= final["eval_duration"]
            assert RFC3339.match(lines[0]["created_at"]) and lines[0]["created_at"].endswith("Z")
            assert s.stats.streams_completed == 1 and s.stats.tokens_generated == FAST["tokens"]

    arun(body)


# --- thinking models and the streams' shapes -------------------------------------------------------------
def test_thinking_model_streams_reasoning_before_the_answer() -> None:
    async def body() -> None:
        async with sim() as (s, url, session):
            async with session.post(url + "/api/chat", json={"model": "qwen3:4b", "messages": USER}) as r:
                lines = ndjson(await r.read())
            kinds = ["thinking" if x["message"].get("thinking") else "content" for x in lines[:-1]]
            assert kinds == ["thinking"] * 4 + ["content"] * FAST["tokens"]
            assert all(x["message"]["content"] == "" for x in lines[:4])  # content is not omitempty
            assert lines[-1]["eval_count"] == 4 + FAST["tokens"]  # eval_count counts the reasoning too
            async with session.post(url + "/api/generate", json={"model": "qwen3:4b", "prompt": "x"}) as r:
                lines = ndjson(await r.read())
            assert [bool(x.get("thinking")) for x in lines[:5]] == [True] * 4 + [False]
            payload = {"model": "qwen3:4b", "messages": USER, "think": False}
            async with session.post(url + "/api/chat", json=payload) as r:
                lines = ndjson(await r.read())
            assert not any(x["message"].get("thinking") for x in lines)
            # a model without the capability refuses think, as Ollama does
            payload = {"model": "llama3.2", "messages": USER, "think": True}
            async with session.post(url + "/api/chat", json=payload) as r:
                assert r.status == 400
                assert await r.json() == {"error": '"llama3.2" does not support thinking'}
            assert s.stats.tokens_generated == 2 * (4 + FAST["tokens"]) + FAST["tokens"]

    arun(body)


def test_openai_stream_role_first_reasoning_apart_finish_chunk_and_usage() -> None:
    async def body() -> None:
        async with sim() as (_s, url, session):
            payload = {"model": "qwen3:4b", "messages": USER, "stream": True}
            async with session.post(url + "/v1/chat/completions", json=payload) as r:
                assert r.headers["Content-Type"] == "text/event-stream"
                events = sse(await r.read())
            assert events[-1] == ("", "[DONE]")
            chunks = [json.loads(d) for _e, d in events[:-1]]
            deltas = [c["choices"][0]["delta"] for c in chunks]
            assert deltas[0]["role"] == "assistant" and all("role" not in d for d in deltas[1:])
            assert [("reasoning" in d, bool(d.get("content"))) for d in deltas[:5]] == [(True, False)] * 4 + [
                (False, True)
            ]
            assert deltas[-1] == {} and chunks[-1]["choices"][0]["finish_reason"] == "stop"
            assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
            assert len({c["created"] for c in chunks}) == 1  # one created value on every chunk
            assert not any("usage" in c for c in chunks)  # no include_usage: no usage at all
            payload["stream_options"] = {"include_usage": True}
            async with session.post(url + "/v1/chat/completions", json=payload) as r:
                events = sse(await r.read())
            usage_chunk = json.loads(events[-2][1])
            assert usage_chunk["choices"] == []
            assert usage_chunk["usage"]["completion_tokens"] == 4 + FAST["tokens"]
            non_stream = {"model": "qwen3:4b", "messages": USER}
            async with session.post(url + "/v1/chat/completions", json=non_stream) as r:
                message = (await r.json())["choices"][0]["message"]
            assert message["reasoning"].startswith("Okay") and message["content"].startswith("The sky")

    arun(body)


def test_responses_and_anthropic_streams() -> None:
    async def body() -> None:
        async with sim() as (_s, url, session):
            payload = {"model": "qwen3:4b", "input": "why?", "stream": True}
            async with session.post(url + "/v1/responses", json=payload) as r:
                assert r.headers["Content-Type"] == "text/event-stream"
                events = sse(await r.read())
            names = [e for e, _d in events]
            assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
            assert names.index("response.reasoning_summary_text.delta") < names.index("response.output_text.delta")
            assert names[-1] == "response.completed"
            assert [json.loads(d)["sequence_number"] for _e, d in events] == list(range(len(events)))
            usage = json.loads(events[-1][1])["response"]["usage"]
            assert usage["output_tokens"] == 4 + FAST["tokens"]
            payload = {"model": "qwen3:4b", "max_tokens": 100, "messages": USER, "stream": True}
            async with session.post(url + "/v1/messages", json=payload) as r:
                events = sse(await r.read())
            names = [e for e, _d in events]
            assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
            deltas = [json.loads(d)["delta"]["type"] for e, d in events if e == "content_block_delta"]
            assert deltas == ["thinking_delta"] * 4 + ["text_delta"] * FAST["tokens"]
            estimate = json.loads(events[0][1])["message"]["usage"]
            assert json.loads(events[-2][1])["usage"] == {**estimate, "output_tokens": 4 + FAST["tokens"]}
            # max_tokens is Ollama's num_predict: the answer stops there
            payload = {"model": "llama3.2", "max_tokens": 3, "messages": USER}
            async with session.post(url + "/v1/messages", json=payload) as r:
                answer = await r.json()
            assert answer["stop_reason"] == "max_tokens" and answer["usage"]["output_tokens"] == 3
            async with session.post(url + "/v1/messages", json={"model": "llama3.2", "messages": USER}) as r:
                assert r.status == 400
                err = await r.json()
            assert err["type"] == "error" and err["error"]["message"] == "max_tokens is required and must be positive"

    arun(body)


def test_transcription_answers_once_done_and_other_v1_endpoints() -> None:
    async def body() -> None:
        async with sim() as (_s, url, session):
            t0 = time.perf_counter()
            async with session.post(url + "/v1/audio/transcriptions", data=_audio_form()) as r:
                headers_after = time.perf_counter() - t0
                assert r.status == 200 and r.headers["Content-Type"] == "application/x-ndjson"  # gin's stream
                answer = await r.json(content_type=None)
            assert answer == {"text": "The sky appears blue because molecules in the"}  # 8 tokens
            assert headers_after < 0.04 + FAST["tokens"] * FAST["token_interval"]
            async with session.post(url + "/v1/audio/transcriptions", data=_audio_form(response_format="text")) as r:
                assert (await r.text()).startswith("The sky")
            async with session.post(url + "/v1/audio/transcriptions", json={"model": "llama3.2"}) as r:
                assert r.status == 400 and "multipart" in (await r.json())["error"]["message"]
            async with session.get(url + "/v1/models/nope") as r:
                assert r.status == 404
                assert await r.json() == {
                    "error": {
                        "message": "model 'nope' not found",
                        "type": "not_found_error",
                        "param": None,
                        "code": None,
                    }
                }
            async with session.get(url + "/api/status") as r:
                assert await r.json() == {"cloud": {"disabled": False, "source": "none"}}
            async with session.get(url + "/api/nothing") as r:
                assert r.status == 404 and await r.text() == "404 page not found"  # gin's own answer

    arun(body)


# --- loaded models ----------------------------------------------------------------------------------------
def test_ps_lists_loaded_models_with_real_expiry_and_keep_alive() -> None:
    async def body() -> None:
        async with sim() as (_s, url, session):
            before = time.time()
            async with session.get(url + "/api/ps") as r:
                loaded = (await r.json())["models"]
            assert [m["name"] for m in loaded] == ["mistral:latest"]
            expires = datetime.fromisoformat(loaded[0]["expires_at"].replace("Z", "+00:00")).timestamp()
            assert before + 290 < expires < before + 310  # five minutes from now, not a date in 2024
            assert loaded[0]["context_length"] == 4096 and RFC3339.match(loaded[0]["expires_at"])
            # a request without prompt loads the model; keep_alive is honoured; 0 unloads
            async with session.post(url + "/api/generate", json={"model": "gemma2:2b", "keep_alive": "1h"}) as r:
                assert await r.json() == {
                    "model": "gemma2:2b",
                    "created_at": (await r.json())["created_at"],
                    "response": "",
                    "done": True,
                    "done_reason": "load",
                }
            async with session.get(url + "/api/ps") as r:
                loaded = (await r.json())["models"]
            assert [m["name"] for m in loaded] == ["gemma2:2b", "mistral:latest"]  # longest remaining first
            body = {"model": "gemma2:2b", "messages": [], "keep_alive": 0}
            async with session.post(url + "/api/chat", json=body) as r:
                assert (await r.json())["done_reason"] == "unload"
            async with session.get(url + "/api/ps") as r:
                assert [m["name"] for m in (await r.json())["models"]] == ["mistral:latest"]
            async with session.post(url + "/api/generate", json={"model": "gemma2:2b", "keep_alive": "soon"}) as r:
                assert r.status == 400 and await r.json() == {"error": 'time: invalid duration "soon"'}

    arun(body)


def test_go_encodings() -> None:
    assert go_time(1_717_537_111_837_530_000) == "2024-06-04T21:38:31.83753Z"  # trailing zeros trimmed
    assert go_time(1_717_537_111_000_000_000) == "2024-06-04T21:38:31Z"  # no fraction at all
    assert RFC3339.match(go_time(time.time_ns(), utc=False))
    assert parse_keep_alive("5m") == 300 and parse_keep_alive("1h30m") == 5400 and parse_keep_alive(10) == 10
    assert parse_keep_alive(-1) == float("inf") and parse_keep_alive("-1m") == float("inf")
    assert parse_keep_alive("0") == 0
    with pytest.raises(ValueError, match="missing unit"):
        parse_keep_alive("10")


# --- failures as Ollama has them ------------------------------------------------------------------------
def test_bad_requests_like_ollama() -> None:
    async def body() -> None:
        async with sim() as (_s, url, session):
            async with session.post(url + "/api/generate", data=b"nope") as r:
                assert r.status == 400 and "invalid character 'n'" in (await r.json())["error"]
            async with session.post(url + "/api/generate", json={"model": "llama9", "prompt": "x"}) as r:
                assert r.status == 404
                assert await r.json() == {"error": "model 'llama9' not found"}
            async with session.post(url + "/api/chat", json={"prompt": "x"}) as r:
                assert r.status == 400 and (await r.json())["error"] == "model is required"
            async with session.post(url + "/v1/chat/completions", json={"model": "llama3.2", "messages": []}) as r:
                assert r.status == 400
                assert (await r.json())["error"]["message"] == "[] is too short - 'messages'"

    arun(body)


@pytest.mark.parametrize(
    ("scenario", "status", "message"),
    [("error_burst", 500, "llama-server process has terminated: exit status 2"), ("server_busy", 503, ERROR_BUSY)],
)
def test_error_scenarios(scenario: str, status: int, message: str) -> None:
    async def body() -> None:
        async with sim(scenario) as (s, url, session):
            for _ in range(3):
                async with session.post(url + "/api/chat", json={"model": "llama3.2", "messages": USER}) as r:
                    assert r.status == status and await r.json() == {"error": message}
                    assert "Retry-After" not in r.headers
            payload = {"model": "llama3.2", "messages": USER}
            async with session.post(url + "/v1/chat/completions", json=payload) as r:
                assert r.status == status and (await r.json())["error"]["message"] == message
            payload = {"model": "llama3.2", "max_tokens": 5, "messages": USER}
            async with session.post(url + "/v1/messages", json=payload) as r:
                err = (await r.json())["error"]
            assert err["type"] == ("overloaded_error" if status == 503 else "api_error")
            async with session.get(url + "/api/version") as r:
                assert r.status == 200
            assert s.stats.statuses[str(status)] == 5 and "429" not in s.stats.statuses

    arun(body)


def test_full_queue_answers_503_and_a_client_gone_while_queued_is_499() -> None:
    """One answer at a time, one waiting: the third request is rejected at once, as Ollama's scheduler does."""

    async def body() -> None:
        async with sim(num_parallel=1, max_queue=1, tokens=20, token_interval=0.02) as (s, url, session):
            payload = {"model": "llama3.2", "prompt": "x"}
            running = await session.post(url + "/api/generate", json=payload)  # headers with its first token
            queued = asyncio.create_task(session.post(url + "/api/generate", json=payload))
            for _ in range(100):
                if s.queue.waiting:
                    break
                await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            async with session.post(url + "/api/generate", json=payload) as r:
                assert r.status == 503 and time.perf_counter() - t0 < 0.2
                assert await r.json() == {"error": ERROR_BUSY}
                assert "Retry-After" not in r.headers
            queued.cancel()  # the waiting client goes away
            with pytest.raises(asyncio.CancelledError):
                await queued
            await running.read()
            running.release()
            for _ in range(100):
                if s.stats.statuses.get("499"):
                    break
                await asyncio.sleep(0.01)
            assert s.stats.statuses.get("499") == 1
            async with session.post(url + "/api/generate", json={**payload, "stream": False}) as r:
                assert r.status == 200  # the slot is free again

    arun(body)


def test_mid_stream_error_in_each_format() -> None:
    async def body() -> None:
        async with sim("mid_stream_error") as (s, url, session):
            async with session.post(url + "/api/chat", json={"model": "llama3.2", "messages": USER}) as r:
                assert r.status == 200
                lines = ndjson(await r.read())  # the stream ends cleanly after the error line
            assert lines[-1] == {"error": "an error was encountered while running the model: unexpected EOF"}
            assert len(lines) == FAST["tokens"] // 2 + 1 and not any(x.get("done") for x in lines)
            payload = {"model": "llama3.2", "messages": USER, "stream": True}
            async with session.post(url + "/v1/chat/completions", json=payload) as r:
                events = sse(await r.read())
            last = json.loads(events[-1][1])
            assert last["model"] == "" and last["choices"][0] == {
                "index": 0,
                "delta": {"content": ""},
                "finish_reason": None,
            }
            assert ("", "[DONE]") not in events
            async with session.post(
                url + "/v1/responses", json={"model": "llama3.2", "input": "x", "stream": True}
            ) as r:
                assert "response.completed" not in [e for e, _d in sse(await r.read())]
            payload = {"model": "llama3.2", "max_tokens": 50, "messages": USER, "stream": True}
            async with session.post(url + "/v1/messages", json=payload) as r:
                assert "message_stop" not in [e for e, _d in sse(await r.read())]
            async with session.post(url + "/v1/audio/transcriptions", data=_audio_form()) as r:
                assert r.status == 200 and await r.read() == b""
            async with session.post(
                url + "/api/chat", json={"model": "llama3.2", "messages": USER, "stream": False}
            ) as r:
                assert r.status == 500  # not streamed: the error is the answer
            assert s.stats.streams_failed == 5 and s.stats.streams_completed == 0

    arun(body)


def test_upstream_down_closes_connections() -> None:
    async def body() -> None:
        async with sim("upstream_down") as (s, url, session):
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(url + "/api/version")
            assert s.stats.connections >= 1

    arun(body)


def test_truncated_and_malformed_scenarios() -> None:
    async def body() -> None:
        async with sim("truncated_stream") as (s, url, session):
            r = await session.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "x"})
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
            assert s.stats.streams_completed == 0
        async with sim("malformed_json") as (_s, url, session):
            async with session.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as r:
                assert r.status == 200
                lines = (await r.read()).splitlines()
            for line in lines:
                with pytest.raises(ValueError, match="."):
                    json.loads(line)

    arun(body)


def test_slow_and_latency_spike_pacing() -> None:
    async def first_line_delay(session: aiohttp.ClientSession, url: str) -> float:
        t0 = time.perf_counter()
        async with session.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as r:
            await r.content.readline()
            dt = time.perf_counter() - t0
            await r.read()
        return dt

    async def body() -> None:
        async with sim("slow", slow_delay=0.5) as (_s, url, session):
            assert await first_line_delay(session, url) >= 0.5
        async with sim("latency_spike", spike_delay=0.4) as (_s, url, session):
            delays = [await first_line_delay(session, url) for _ in range(5)]
            assert max(delays[:4]) < 0.2 and delays[4] >= 0.4

    arun(body)


def test_all_scenarios_construct_and_unknown_rejected() -> None:
    for s in SCENARIOS:
        OllamaSimulator(s)
    with pytest.raises(ValueError, match="unknown scenario"):
        OllamaSimulator("nope")
    with pytest.raises(ValueError, match="never answers 429"):
        OllamaSimulator("rate_limited")


def test_tokens_keep_their_clock_when_the_process_stalls() -> None:
    # a model emits tokens on its own clock: a stall of this process delays the next token, not all later ones
    async def body() -> None:
        async with sim(tokens=10, token_interval=0.05, first_token_delay=0.05) as (_s, url, session):
            t0 = time.perf_counter()
            async with session.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as r:
                await r.content.readline()
                time.sleep(0.2)  # block the shared event loop for four token intervals
                await r.read()
            elapsed = time.perf_counter() - t0
            # due: first token at 0.05 s, final line at 0.05 + 10 * 0.05 = 0.55 s; relative sleeps would
            # have pushed it to 0.7 s
            assert 0.55 <= elapsed < 0.65

    arun(body)

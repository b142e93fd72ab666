"""The Ollama proxy against today's Ollama (the simulator models commit fb30760, v0.33.0-rc2): thinking models, the
Responses, Anthropic and transcription endpoints, the 503 of a full queue, errors inside a 200 stream, 499s, and
/api/ps with context_length and real expiry times."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from llm_monitor_testkit.ollama_sim import ERROR_BUSY

from conftest import parse_samples, value
from llm_monitor_exporters.ollama.ollama_metrics import OllamaMetrics
from llm_monitor_exporters.ollama.ollama_proxy import Inspector, model_from_path, multipart_field
from ollama_support import Stack, stack
from ollama_support import run as arun

GEN = "llm_monitor_ollama_generated_tokens_total"
PROMPT = "llm_monitor_ollama_prompt_tokens_total"
TTFT = "llm_monitor_ollama_time_to_first_token_seconds"
TTFC = "llm_monitor_ollama_time_to_first_content_seconds"
REQ = "llm_monitor_ollama_requests_total"
USER = [{"role": "user", "content": "why is the sky blue?"}]
#: a thinking model whose reasoning takes a while: 10 reasoning tokens 30 ms apart, then 4 answer tokens
THINKING = {"tokens": 4, "thinking_tokens": 10, "token_interval": 0.03, "first_token_delay": 0.01}
REASONING_TIME = 10 * 0.03


async def _post(st: Stack, path: str, status: int = 200, **kw: Any) -> bytes:
    async with st.session.post(st.url + path, **kw) as r:
        data = await r.read()
        assert r.status == status, (path, r.status, data[:300])
        return data


def _errors(s: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, float]:
    return {labels["kind"]: v for labels, v in s["llm_monitor_ollama_errors_total"]}


def _audio(model: str = "llama3.2", **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("model", model)
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("file", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(2000), filename="q.wav", content_type="audio/wav")
    return form


# --- time to first token counts the reasoning; time to first content comes after it ----------------------
@pytest.mark.parametrize(
    ("path", "endpoint", "payload"),
    [
        ("/api/chat", "chat", {"messages": USER}),
        ("/api/generate", "generate", {"prompt": "why?"}),
        ("/v1/chat/completions", "openai_chat", {"messages": USER, "stream": True}),
        ("/v1/responses", "openai_responses", {"input": "why?", "stream": True}),
        ("/v1/messages", "anthropic_messages", {"messages": USER, "max_tokens": 100, "stream": True}),
    ],
)
def test_thinking_model_first_token_is_its_reasoning(path: str, endpoint: str, payload: dict[str, Any]) -> None:
    """A thinking model's first token is reasoning: time to first token does not wait for the answer (it did for
    OpenAI's delta.reasoning); time to first content does; its tokens, reasoning included, are counted."""

    async def body() -> None:
        async with stack(sim_kwargs=THINKING) as st:
            await _post(st, path, json={"model": "qwen3:4b", **payload})
            s = await st.samples()
        lbl = {"model": "qwen3:4b", "endpoint": endpoint}
        assert value(s, TTFT + "_count", **lbl) == 1 and value(s, TTFC + "_count", **lbl) == 1
        assert value(s, TTFT + "_sum", **lbl) < REASONING_TIME / 2
        assert value(s, TTFC + "_sum", **lbl) >= REASONING_TIME
        assert value(s, GEN, **lbl) == 14  # eval_count: 10 reasoning + 4 answer tokens
        assert value(s, REQ, **lbl, status="200") == 1
        errors = _errors(s)
        assert errors["truncated_stream"] == errors["upstream_malformed"] == errors["upstream_stream_error"] == 0

    arun(body)


def test_model_that_does_not_think_has_equal_first_token_and_content() -> None:
    async def body() -> None:
        async with stack(sim_kwargs={"tokens": 6, "token_interval": 0.02}) as st:
            await _post(st, "/v1/chat/completions", json={"model": "llama3.2", "messages": USER, "stream": True})
            s = await st.samples()
        lbl = {"model": "llama3.2", "endpoint": "openai_chat"}
        assert value(s, TTFT + "_sum", **lbl) == value(s, TTFC + "_sum", **lbl)
        assert value(s, GEN, **lbl) == 6  # no include_usage: Ollama's one token per chunk, counted

    arun(body)


def test_openai_usage_chunk_and_completions_zero_usage() -> None:
    """include_usage: the usage chunk's numbers; /v1/completions' zero usage on every chunk is not a total."""

    async def body() -> None:
        async with stack(sim_kwargs=THINKING) as st:
            payload = {"model": "qwen3:4b", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
            await _post(st, "/v1/chat/completions", json=payload)
            payload = {"model": "llama3.2", "prompt": "why?", "stream": True, "stream_options": {"include_usage": True}}
            await _post(st, "/v1/completions", json=payload)
            s = await st.samples()
        assert value(s, GEN, model="qwen3:4b", endpoint="openai_chat") == 14
        assert value(s, GEN, model="llama3.2", endpoint="openai_completions") == 4
        assert value(s, PROMPT, model="llama3.2", endpoint="openai_completions") >= 1
        assert value(s, TTFC + "_count", model="llama3.2", endpoint="openai_completions") == 1

    arun(body)


# --- the endpoints that were "other" -------------------------------------------------------------------------
def test_responses_and_messages_measured_like_chat_streamed_or_not() -> None:
    async def body() -> None:
        async with stack() as st:
            for stream in (True, False):
                await _post(st, "/v1/responses", json={"model": "llama3.2", "input": "why?", "stream": stream})
                payload = {"model": "llama3.2", "max_tokens": 5, "messages": USER, "stream": stream}
                await _post(st, "/v1/messages", json=payload)
            s = await st.samples()
        for endpoint, tokens in (("openai_responses", 2 * 8), ("anthropic_messages", 2 * 5)):
            lbl = {"model": "llama3.2", "endpoint": endpoint}
            assert value(s, REQ, **lbl, status="200") == 2
            assert value(s, GEN, **lbl) == tokens  # usage.output_tokens
            assert value(s, PROMPT, **lbl) >= 2  # usage.input_tokens
            assert value(s, TTFT + "_count", **lbl) == 1  # the streamed one
            assert value(s, "llm_monitor_ollama_request_duration_seconds_count", **lbl, status="200") == 2
        assert set(_errors(s).values()) == {0}

    arun(body)


def test_transcriptions_models_status_have_their_own_endpoints() -> None:
    async def body() -> None:
        async with stack() as st:
            answer = json.loads(await _post(st, "/v1/audio/transcriptions", data=_audio()))
            assert answer["text"].startswith("The sky")
            await _post(st, "/v1/audio/transcriptions", data=_audio(response_format="text"))
            await _post(st, "/v1/audio/transcriptions", 404, data=_audio("nope"))
            async with st.session.get(st.url + "/v1/models/llama3.2") as r:
                assert r.status == 200 and (await r.json())["id"] == "llama3.2"
            async with st.session.get(st.url + "/v1/models/nope") as r:
                assert r.status == 404
            async with st.session.get(st.url + "/api/status") as r:
                assert (await r.json())["cloud"]["disabled"] is False
            s = await st.samples()
        assert value(s, REQ, model="llama3.2", endpoint="openai_transcriptions", status="200") == 2
        assert value(s, REQ, model="other", endpoint="openai_transcriptions", status="404") == 1
        assert value(s, REQ, model="llama3.2", endpoint="openai_retrieve_model", status="200") == 1
        assert value(s, REQ, model="other", endpoint="openai_retrieve_model", status="404") == 1
        assert value(s, REQ, model="none", endpoint="status", status="200") == 1
        assert value(s, REQ, endpoint="other") is None
        errors = _errors(s)
        assert errors["bad_request"] == 0  # a multipart form is not a broken JSON body
        assert errors["upstream_malformed"] == 0  # a plain-text transcription is not broken JSON
        assert errors["upstream_4xx"] == 2

    arun(body)


# --- a full queue --------------------------------------------------------------------------------------------
def test_full_queue_503_counts_as_busy() -> None:
    """One answer at a time and no room to wait: the second request gets Ollama's 503 at once, without Retry-After,
    in each API's error format; counted as upstream_busy (and status 503), not as a server failure."""

    async def body() -> None:
        sim_kwargs = {"num_parallel": 1, "max_queue": 0, "tokens": 30, "token_interval": 0.02}
        async with stack(sim_kwargs=sim_kwargs) as st:
            running = await st.session.post(st.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"})
            async with st.session.post(st.url + "/api/chat", json={"model": "llama3.2", "messages": USER}) as r:
                assert r.status == 503 and "Retry-After" not in r.headers
                assert await r.json() == {"error": ERROR_BUSY}
            payload = {"model": "llama3.2", "messages": USER, "stream": True}
            async with st.session.post(st.url + "/v1/chat/completions", json=payload) as r:
                assert r.status == 503 and (await r.json())["error"]["message"] == ERROR_BUSY
            payload = {"model": "llama3.2", "max_tokens": 9, "messages": USER}
            async with st.session.post(st.url + "/v1/messages", json=payload) as r:
                assert r.status == 503 and (await r.json())["error"]["type"] == "overloaded_error"
            await running.read()
            running.release()
            s = await st.samples()
        errors = _errors(s)
        assert errors["upstream_busy"] == 3 and errors["upstream_5xx"] == 0 and errors["upstream_4xx"] == 0
        assert value(s, REQ, model="llama3.2", endpoint="chat", status="503") == 1
        assert value(s, REQ, model="llama3.2", endpoint="anthropic_messages", status="503") == 1

    arun(body)


async def _fixed_upstream(status: int, body: bytes, ctype: str = "application/json; charset=utf-8") -> web.AppRunner:
    """An upstream that answers every path with one fixed answer (its /api/ps etc. too)."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if request.path in ("/api/ps", "/api/tags"):
            return web.json_response({"models": []})
        if request.path == "/api/version":
            return web.json_response({"version": "0.33.0-rc2"})
        return web.Response(status=status, body=body, headers={"Content-Type": ctype})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def _port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


def _with_upstream(status: int, body: bytes) -> Callable[[], Awaitable[dict[str, float]]]:
    async def run() -> dict[str, float]:
        runner = await _fixed_upstream(status, body)
        try:
            async with stack(upstream_port=_port(runner)) as st:
                async with st.session.post(st.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as r:
                    assert r.status == status and await r.read() == body  # relayed unchanged
                s = await st.samples()
        finally:
            await runner.cleanup()
        assert value(s, REQ, endpoint="generate", status=str(status)) == 1
        return _errors(s)

    return run


def test_other_503s_are_server_errors() -> None:
    errors = arun(_with_upstream(503, b'{"error":"account unavailable"}'))
    assert errors["upstream_5xx"] == 1 and errors["upstream_busy"] == 0


def test_ollama_499_request_canceled_is_a_client_disconnect() -> None:
    errors = arun(_with_upstream(499, b'{"error":"request canceled"}'))
    assert errors["client_disconnect"] == 1 and errors["upstream_4xx"] == 0


def test_client_gone_while_queued_is_499_on_both_sides() -> None:
    async def body() -> None:
        sim_kwargs = {"num_parallel": 1, "max_queue": 4, "tokens": 20, "token_interval": 0.02}
        async with stack(sim_kwargs=sim_kwargs) as st:
            running = await st.session.post(st.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"})
            async with aiohttp.ClientSession() as own:
                waiting = asyncio.create_task(
                    own.post(st.url + "/api/chat", json={"model": "llama3.2", "messages": USER})
                )
                for _ in range(100):
                    if st.sim.queue.waiting:
                        break
                    await asyncio.sleep(0.01)
                waiting.cancel()  # the client gives up while its request waits in Ollama's queue
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            for _ in range(200):
                if st.sim.stats.statuses.get("499"):
                    break
                await asyncio.sleep(0.01)
            await running.read()
            running.release()
            assert st.sim.stats.statuses.get("499") == 1  # Ollama: 499 {"error":"request canceled"}
            s = await st.samples()
        assert value(s, REQ, model="llama3.2", endpoint="chat", status="499") == 1
        assert value(s, "llm_monitor_ollama_client_disconnects_total", endpoint="chat") == 1

    arun(body)


# --- an error inside a 200 answer ----------------------------------------------------------------------------
def test_mid_stream_error_counts_as_an_error_not_a_truncation() -> None:
    async def body() -> None:
        async with stack("mid_stream_error") as st:
            lines = (await _post(st, "/api/chat", json={"model": "llama3.2", "messages": USER})).splitlines()
            assert json.loads(lines[-1]) == {
                "error": "an error was encountered while running the model: unexpected EOF"
            }
            await _post(st, "/api/generate", json={"model": "llama3.2", "prompt": "x"})
            await _post(st, "/v1/chat/completions", json={"model": "llama3.2", "messages": USER, "stream": True})
            await _post(st, "/v1/responses", json={"model": "llama3.2", "input": "x", "stream": True})
            payload = {"model": "llama3.2", "max_tokens": 50, "messages": USER, "stream": True}
            await _post(st, "/v1/messages", json=payload)
            assert await _post(st, "/v1/audio/transcriptions", data=_audio()) == b""
            await _post(st, "/api/chat", 500, json={"model": "llama3.2", "messages": USER, "stream": False})
            s = await st.samples()
            await st.still_serving()
        errors = _errors(s)
        assert errors["upstream_stream_error"] == 6
        assert errors["truncated_stream"] == 0 and errors["upstream_malformed"] == 0
        assert errors["upstream_5xx"] == 1  # not streamed: the 500 is the answer
        assert value(s, REQ, model="llama3.2", endpoint="chat", status="200") == 1

    arun(body)


def test_error_line_found_however_the_stream_is_cut() -> None:
    """The error line is found by the byte search of the fast path too: in one read with other lines, split."""
    lines = [
        json.dumps({"model": "m", "created_at": "x", "response": w, "done": False}, separators=(",", ":")).encode()
        for w in ("The", " sky", " is")
    ]
    error = b'{"error":"an error was encountered while running the model: unexpected EOF"}'
    data = b"\n".join([*lines, error]) + b"\n"
    for cut in (len(data) - 20, len(data) - 60, 3):
        m = OllamaMetrics()
        insp = Inspector(m, "m", "generate", True, time.perf_counter(), True)
        insp.feed(data[:cut])
        insp.feed(data[cut:])
        insp.finish()
        assert insp.stream_error and not insp.malformed and not insp.final_seen, cut


# --- loaded models -------------------------------------------------------------------------------------------
def test_loaded_models_expire_in_the_future_with_their_context_length() -> None:
    async def body() -> None:
        async with stack() as st:
            await _post(st, "/api/generate", json={"model": "gemma2:2b", "prompt": "x", "options": {"num_ctx": 8192}})
            await st.proxy.poll_once()
            s = await st.samples()
        now = time.time()
        for model in ("mistral:latest", "gemma2:2b"):
            expires = value(s, "llm_monitor_ollama_loaded_model_expires_timestamp_seconds", model=model)
            assert expires is not None and now + 250 < expires < now + 310, model  # keep_alive 5m, not 2024
        assert value(s, "llm_monitor_ollama_loaded_model_context_length", model="gemma2:2b") == 8192
        assert value(s, "llm_monitor_ollama_loaded_model_context_length", model="mistral:latest") == 4096
        assert value(s, "llm_monitor_ollama_loaded_models") == 2

    arun(body)


def test_new_series_pass_promtool(promtool: Callable[[str], None]) -> None:
    async def body() -> str:
        async with stack(sim_kwargs=THINKING) as st:
            await _post(st, "/v1/responses", json={"model": "qwen3:4b", "input": "x", "stream": True})
            return await st.metrics_text()

    text = arun(body)
    promtool(text)
    assert value(parse_samples(text), TTFC + "_count", model="qwen3:4b", endpoint="openai_responses") == 1


# --- request parsing ----------------------------------------------------------------------------------------
def test_model_from_path_and_multipart_form() -> None:
    assert model_from_path("/v1/models/llama3.2") == "llama3.2"
    assert model_from_path("/v1/models/hf.co%2Fuser%2Fm:q4?x=1") == "hf.co/user/m:q4"
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="model"\r\n\r\n'
        + bytes(range(256)) * 40
        + b'\r\n--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper:small\r\n--XyZ--\r\n'
    )
    assert multipart_field(body, 'multipart/form-data; boundary="XyZ"', "model") == "whisper:small"
    assert multipart_field(body, "multipart/form-data; boundary=XyZ", "language") is None
    assert multipart_field(body, "application/json", "model") is None
    assert multipart_field(b"--XyZ\r\nbroken", "multipart/form-data; boundary=XyZ", "model") is None

"""Simulated Ollama: formats match the recorded samples; scenarios behave as documented."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from conftest import FAST
from conftest import run as arun
from llm_monitor_testkit.ollama_sim import SCENARIOS, OllamaSimulator, load_sample


@asynccontextmanager
async def sim(
    scenario: str = "normal", **kw: float
) -> AsyncIterator[tuple[OllamaSimulator, str, aiohttp.ClientSession]]:
    s = OllamaSimulator(scenario, **{**FAST, **kw})  # type: ignore[arg-type]
    port = await s.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        try:
            yield s, f"http://127.0.0.1:{port}", session
        finally:
            await s.close()


def test_generate_stream_matches_recorded_format() -> None:
    recorded = load_sample("generate_stream.ndjson")

    async def body() -> None:
        async with sim() as (s, url, session):
            async with session.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "why?"}) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "application/x-ndjson"
                lines = [json.loads(x) for x in (await r.read()).splitlines()]
            assert len(lines) == FAST["tokens"] + 1
            assert list(lines[0]) == list(recorded[0])
            assert set(lines[-1]) == set(recorded[-1])
            final = lines[-1]
            assert final["done"] is True and final["done_reason"] == "stop"
            for k in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
                assert isinstance(final[k], int) and final[k] > 0
            assert final["eval_count"] == FAST["tokens"]
            assert final["total_duration"] >= final["eval_duration"]
            assert lines[0]["created_at"].endswith("Z") and len(lines[0]["created_at"].split(".")[1]) == 10
            assert s.stats.streams_completed == 1 and s.stats.tokens_generated == FAST["tokens"]

    arun(body)


def test_chat_stream_and_nonstream_match_recorded() -> None:
    rec_chat = load_sample("chat_stream.ndjson")
    rec_nostream = load_sample("generate_nostream.json")

    async def body() -> None:
        async with sim() as (_s, url, session):
            async with session.post(url + "/api/chat", json={"model": "gemma2:2b", "messages": []}) as r:
                lines = [json.loads(x) for x in (await r.read()).splitlines()]
            assert list(lines[0]) == list(rec_chat[0])
            assert set(lines[-1]) == set(rec_chat[-1])
            async with session.post(url + "/api/generate", json={"model": "gemma2:2b", "stream": False}) as r:
                assert r.headers["Content-Type"].startswith("application/json")
                one = await r.json()
            assert set(one) - {"context"} == set(rec_nostream)
            assert one["response"].startswith("The sky")

    arun(body)


def test_static_endpoints_are_the_recorded_samples() -> None:
    async def body() -> None:
        async with sim() as (_s, url, session):
            for path, sample in (("/api/tags", "tags.json"), ("/api/ps", "ps.json"), ("/api/version", "version.json")):
                async with session.get(url + path) as r:
                    assert r.status == 200 and await r.json() == load_sample(sample)
            async with session.post(url + "/api/embed", json={"model": "all-minilm", "input": ["a", "b"]}) as r:
                e = await r.json()
            assert set(e) == set(load_sample("embed.json")) and len(e["embeddings"]) == 2
            async with session.post(url + "/v1/chat/completions", json={"model": "llama3.2", "messages": []}) as r:
                o = await r.json()
            assert set(o) == set(load_sample("openai_chat.json")) and o["usage"]["completion_tokens"] == FAST["tokens"]
            async with session.post(
                url + "/v1/chat/completions", json={"model": "llama3.2", "messages": [], "stream": True}
            ) as r:
                assert r.headers["Content-Type"] == "text/event-stream"
                events = [x for x in (await r.read()).split(b"\n\n") if x]
            assert events[-1] == b"data: [DONE]" and len(events) == FAST["tokens"] + 2

    arun(body)


def test_bad_requests_like_ollama() -> None:
    async def body() -> None:
        async with sim() as (_s, url, session):
            async with session.post(url + "/api/generate", data=b"nope") as r:
                assert r.status == 400 and "invalid character 'n'" in (await r.json())["error"]
            async with session.post(url + "/api/generate", json={"model": "llama9"}) as r:
                assert r.status == 404
                assert await r.json() == {"error": "model 'llama9' not found"}
            async with session.post(url + "/api/chat", json={"prompt": "x"}) as r:
                assert r.status == 400 and (await r.json())["error"] == "model is required"

    arun(body)


@pytest.mark.parametrize(("scenario", "status"), [("error_burst", 500), ("rate_limited", 429)])
def test_error_scenarios(scenario: str, status: int) -> None:
    async def body() -> None:
        async with sim(scenario) as (s, url, session):
            for _ in range(3):
                async with session.post(url + "/api/chat", json={"model": "llama3.2"}) as r:
                    assert r.status == status and "error" in await r.json()
            async with session.get(url + "/api/version") as r:
                assert r.status == 200
            assert s.stats.statuses[str(status)] == 3

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
            r = await session.post(url + "/api/generate", json={"model": "llama3.2"})
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
            assert s.stats.streams_completed == 0
        async with sim("malformed_json") as (_s, url, session):
            async with session.post(url + "/api/generate", json={"model": "llama3.2"}) as r:
                assert r.status == 200
                lines = (await r.read()).splitlines()
            for line in lines:
                with pytest.raises(ValueError, match="."):
                    json.loads(line)

    arun(body)


def test_slow_and_latency_spike_pacing() -> None:
    async def first_line_delay(session: aiohttp.ClientSession, url: str) -> float:
        t0 = time.perf_counter()
        async with session.post(url + "/api/generate", json={"model": "llama3.2"}) as r:
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


def test_tokens_keep_their_clock_when_the_process_stalls() -> None:
    # a model emits tokens on its own clock: a stall of this process delays the next token, not all later ones
    async def body() -> None:
        async with sim(tokens=10, token_interval=0.05, first_token_delay=0.05) as (_s, url, session):
            t0 = time.perf_counter()
            async with session.post(url + "/api/generate", json={"model": "llama3.2"}) as r:
                await r.content.readline()
                time.sleep(0.2)  # block the shared event loop for four token intervals
                await r.read()
            elapsed = time.perf_counter() - t0
            # due: first token at 0.05 s, final line at 0.05 + 10 * 0.05 = 0.55 s; relative sleeps would
            # have pushed it to 0.7 s
            assert 0.55 <= elapsed < 0.65

    arun(body)

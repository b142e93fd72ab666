"""SIMULATED Ollama server (``llm-monitor-testkit simulate ollama``), a TEST DOUBLE for tests, benchmarks and demos.

Answers in Ollama's real formats, built from the recorded samples in ``samples/`` (field names and
order, nanosecond durations, RFC 3339 timestamps with nanoseconds, NDJSON streaming by default,
``application/x-ndjson``), paced like a real model (``token_interval`` between chunks, a first-token
delay). It is chosen only explicitly and says so on startup.

Scenarios (generation endpoints: generate, chat, embed, embeddings, OpenAI chat/completions):

- ``normal``: every answer completes;
- ``latency_spike``: every 5th request waits ``spike_delay`` before its first token and streams 3x slower;
- ``upstream_down``: the port accepts connections and closes them at once (nothing is answered);
- ``error_burst``: HTTP 500 with Ollama's error body;
- ``rate_limited``: HTTP 429 with ``Retry-After: 1``;
- ``truncated_stream``: the answer stops half way and the connection is cut (no final chunk);
- ``slow``: the first token comes after ``slow_delay`` seconds;
- ``malformed_json``: HTTP 200 whose body/lines are not valid JSON.

Counters for tests are served as JSON on ``GET /_sim/stats`` (not an Ollama path): requests by endpoint
and status, streams started/completed/cancelled (client went away mid-answer), TCP connections
accepted, tokens generated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parent / "samples"
SCENARIOS = (
    "normal",
    "latency_spike",
    "upstream_down",
    "error_burst",
    "rate_limited",
    "truncated_stream",
    "slow",
    "malformed_json",
)
ANSWER = (
    "The sky appears blue because molecules in the atmosphere scatter short blue wavelengths of "
    "sunlight much more than the longer red ones, an effect called Rayleigh scattering. "
)
ERROR_500 = "llama runner process has terminated: exit status 2"
ERROR_429 = "server busy, please try again.  maximum pending requests exceeded"


def load_sample(name: str) -> Any:
    """A recorded sample: parsed JSON (``.json``), list of parsed lines (``.ndjson``) or text."""
    text = (SAMPLES / name).read_text(encoding="utf-8")
    if name.endswith(".ndjson"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if name.endswith(".json"):
        return json.loads(text)
    return text


def _tokens(n: int) -> list[str]:
    words = ANSWER.split(" ")
    out = []
    for i in range(n):
        w = words[i % len(words)]
        out.append(w if i == 0 else " " + w)
    return out


def _now() -> str:
    """Go's RFC 3339 with nanoseconds, as Ollama's created_at."""
    ns = time.time_ns()
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


def _canonical(model: str) -> str:
    return model if ":" in model else model + ":latest"


class _TokenClock:
    """When each token of one answer is due: first token after ``first_delay``, then one every ``interval``.

    Deadlines are absolute (a model on a GPU emits tokens on its own clock), so scheduling delays of this
    process do not add up over a stream: a late token is sent at once and the next one is still due on time.
    """

    def __init__(self, first_delay: float, interval: float) -> None:
        self.start = time.monotonic()
        self.first_delay = first_delay
        self.interval = interval

    async def until(self, token_index: int) -> None:
        due = self.start + self.first_delay + self.interval * token_index
        await asyncio.sleep(max(0.0, due - time.monotonic()))


@dataclass
class SimStats:
    requests: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    streams_started: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0
    connections: int = 0
    tokens_generated: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "statuses": dict(self.statuses),
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
            "connections": self.connections,
            "tokens_generated": self.tokens_generated,
            "requests_total": sum(self.requests.values()),
        }


class _Cancelled(Exception):
    pass


class OllamaSimulator:
    """The simulated server. ``await start(host, port)`` returns the bound port; ``await close()``."""

    def __init__(
        self,
        scenario: str = "normal",
        *,
        tokens: int = 24,
        token_interval: float = 0.02,
        first_token_delay: float = 0.05,
        slow_delay: float = 5.0,
        spike_delay: float = 1.0,
        load_duration: float = 0.002,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r} (available: {', '.join(SCENARIOS)})")
        self.scenario = scenario
        self.tokens = tokens
        self.token_interval = token_interval
        self.first_token_delay = first_token_delay
        self.slow_delay = slow_delay
        self.spike_delay = spike_delay
        self.load_duration = load_duration
        self.stats = SimStats()
        self.tags = load_sample("tags.json")
        self.ps = load_sample("ps.json")
        self.version = load_sample("version.json")
        self.installed = {m["name"] for m in self.tags["models"]}
        self._counter = 0
        self.last_request_body = b""  # for tests: the proxy must forward bodies unchanged
        self._runner: web.AppRunner | None = None
        self._raw: asyncio.AbstractServer | None = None
        self._peers: set[object] = set()

    # lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        if self.scenario == "upstream_down":
            self._raw = await asyncio.start_server(self._refuse, host, port, reuse_address=True)
            return int(self._raw.sockets[0].getsockname()[1])
        app = web.Application(middlewares=[self._count])
        r = app.router
        r.add_post("/api/generate", self.generate)
        r.add_post("/api/chat", self.chat)
        r.add_post("/api/embed", self.embed)
        r.add_post("/api/embeddings", self.embed)
        r.add_get("/api/tags", self.get_tags)
        r.add_get("/api/ps", self.get_ps)
        r.add_get("/api/version", self.get_version)
        r.add_get("/", self.root)
        r.add_post("/v1/chat/completions", self.openai_chat)
        r.add_get("/v1/models", self.openai_models)
        r.add_get("/_sim/stats", self.get_stats)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server  # aiohttp has no public accessor for the bound port
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            await self._raw.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _refuse(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        writer.transport.abort()

    # bookkeeping
    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/_sim/stats":
            transport = request.transport
            peer = transport.get_extra_info("peername") if transport is not None else None
            key = (id(transport), peer)
            if key not in self._peers:
                self._peers.add(key)
                self.stats.connections += 1
            self.stats.requests[request.path] = self.stats.requests.get(request.path, 0) + 1
        resp: web.StreamResponse = await handler(request)
        if request.path != "/_sim/stats":
            code = str(resp.status)
            self.stats.statuses[code] = self.stats.statuses.get(code, 0) + 1
        return resp

    async def get_stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())

    # simple endpoints
    async def root(self, _request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def get_tags(self, _request: web.Request) -> web.Response:
        return web.json_response(self.tags)

    async def get_ps(self, _request: web.Request) -> web.Response:
        return web.json_response(self.ps)

    async def get_version(self, _request: web.Request) -> web.Response:
        return web.json_response(self.version)

    async def openai_models(self, _request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 1722011476, "owned_by": "library"} for m in self.installed]
        return web.json_response({"object": "list", "data": data})

    # request parsing and faults
    async def _parse(self, request: web.Request) -> dict[str, Any] | web.Response:
        body = await request.read()
        self.last_request_body = body
        try:
            obj = json.loads(body)
        except ValueError:
            first = body[:1].decode("latin-1") or "EOF"
            return _error(400, f"invalid character '{first}' looking for beginning of value")
        if not isinstance(obj, dict):
            return _error(400, "json: cannot unmarshal into Go value of type api.GenerateRequest")
        model = obj.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "model is required")
        if _canonical(model) not in self.installed:
            return _error(404, f"model '{model}' not found")  # current Ollama's message
        return obj

    def _fault(self) -> web.Response | None:
        if self.scenario == "error_burst":
            return _error(500, ERROR_500)
        if self.scenario == "rate_limited":
            resp = _error(429, ERROR_429)
            resp.headers["Retry-After"] = "1"
            return resp
        return None

    def _pacing(self) -> tuple[float, float]:
        """(first token delay, token interval) for the next request."""
        self._counter += 1
        if self.scenario == "slow":
            return self.slow_delay, self.token_interval
        if self.scenario == "latency_spike" and self._counter % 5 == 0:
            return self.spike_delay, self.token_interval * 3
        return self.first_token_delay, self.token_interval

    # generation
    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, "generate")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generation(request, "chat")

    async def _generation(self, request: web.Request, kind: str) -> web.StreamResponse:
        parsed = await self._parse(request)
        if isinstance(parsed, web.Response):
            return parsed
        fault = self._fault()
        if fault is not None:
            return fault
        model = parsed["model"]
        prompt = parsed.get("prompt") if kind == "generate" else json.dumps(parsed.get("messages", ""))
        prompt_tokens = max(1, len(str(prompt or "")) // 4)
        options = parsed.get("options") if isinstance(parsed.get("options"), dict) else {}
        n = self.tokens
        if isinstance(options, dict) and isinstance(options.get("num_predict"), int) and options["num_predict"] > 0:
            n = min(n, options["num_predict"])
        first_delay, interval = self._pacing()
        t0 = time.perf_counter_ns()
        pieces = _tokens(n)
        streaming = parsed.get("stream") is not False
        if not streaming:
            await asyncio.sleep(first_delay + interval * n)
            final = self._final(kind, model, "".join(pieces), n, prompt_tokens, t0, interval)
            body = json.dumps(final, separators=(",", ":")).encode()
            self.stats.tokens_generated += n
            if self.scenario == "malformed_json":
                body = body[: len(body) // 2]
            if self.scenario == "truncated_stream":
                return await self._cut(request, body, "application/json; charset=utf-8")
            return web.Response(body=body, content_type="application/json", charset="utf-8")
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        self.stats.streams_started += 1
        try:
            clock = _TokenClock(first_delay, interval)
            await clock.until(0)  # Ollama sends its headers with the first chunk
            await resp.prepare(request)
            for i, piece in enumerate(pieces):
                if self.scenario == "truncated_stream" and i >= n // 2:
                    self._abort(request)
                    return resp
                chunk: dict[str, Any] = {"model": model, "created_at": _now()}
                if kind == "generate":
                    chunk["response"] = piece
                else:
                    chunk["message"] = {"role": "assistant", "content": piece}
                chunk["done"] = False
                line = json.dumps(chunk, separators=(",", ":"))
                if self.scenario == "malformed_json":
                    line = line[: len(line) - 7]
                await self._write(resp, line.encode() + b"\n")
                self.stats.tokens_generated += 1
                await clock.until(i + 1)
            final = self._final(kind, model, "", n, prompt_tokens, t0, interval)
            last = json.dumps(final, separators=(",", ":"))
            if self.scenario == "malformed_json":
                last = last[: len(last) // 2]
            await self._write(resp, last.encode() + b"\n")
            await resp.write_eof()
        except (asyncio.CancelledError, _Cancelled):
            self.stats.streams_cancelled += 1
            raise
        self.stats.streams_completed += 1
        return resp

    async def _write(self, resp: web.StreamResponse, data: bytes) -> None:
        try:
            await resp.write(data)
        except ConnectionResetError as exc:
            raise _Cancelled from exc

    def _final(
        self, kind: str, model: str, text: str, n: int, prompt_tokens: int, t0: int, interval: float
    ) -> dict[str, Any]:
        load_ns = int(self.load_duration * 1e9)
        prompt_ns = 1_000_000 + prompt_tokens * 50_000
        eval_ns = max(1, int(n * interval * 1e9))
        total_ns = max(time.perf_counter_ns() - t0, load_ns + prompt_ns + eval_ns)
        out: dict[str, Any] = {"model": model, "created_at": _now()}
        if kind == "generate":
            out["response"] = text
        else:
            out["message"] = {"role": "assistant", "content": text}
        out["done"] = True
        out["done_reason"] = "stop" if n == self.tokens else "length"
        if kind == "generate":
            out["context"] = list(range(1, min(prompt_tokens + n, 64) + 1))
        out.update(
            total_duration=total_ns,
            load_duration=load_ns,
            prompt_eval_count=prompt_tokens,
            prompt_eval_duration=prompt_ns,
            eval_count=n,
            eval_duration=eval_ns,
        )
        return out

    async def _cut(self, request: web.Request, body: bytes, ctype: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": ctype})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        self._abort(request)
        return resp

    @staticmethod
    def _abort(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()

    async def embed(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._parse(request)
        if isinstance(parsed, web.Response):
            return parsed
        fault = self._fault()
        if fault is not None:
            return fault
        inputs = parsed.get("input", parsed.get("prompt", ""))
        items = inputs if isinstance(inputs, list) else [inputs]
        await asyncio.sleep(self.first_token_delay)
        sample = load_sample("embed.json")["embeddings"][0]
        prompt_tokens = sum(max(1, len(str(i)) // 4) for i in items)
        out = {
            "model": parsed["model"],
            "embeddings": [sample for _ in items],
            "total_duration": int(self.first_token_delay * 1e9) + 1_000_000,
            "load_duration": int(self.load_duration * 1e9),
            "prompt_eval_count": prompt_tokens,
        }
        if request.path == "/api/embeddings":
            out = {"embedding": sample}
        body = json.dumps(out, separators=(",", ":")).encode()
        if self.scenario == "malformed_json":
            body = body[: len(body) // 2]
        if self.scenario == "truncated_stream":
            return await self._cut(request, body, "application/json; charset=utf-8")
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        parsed = await self._parse(request)
        if isinstance(parsed, web.Response):
            return parsed
        fault = self._fault()
        if fault is not None:
            return fault
        model = parsed["model"]
        prompt_tokens = max(1, len(json.dumps(parsed.get("messages", ""))) // 4)
        n = self.tokens
        if isinstance(parsed.get("max_tokens"), int) and parsed["max_tokens"] > 0:
            n = min(n, parsed["max_tokens"])
        first_delay, interval = self._pacing()
        pieces = _tokens(n)
        ident = f"chatcmpl-{self._counter}"
        created = int(time.time())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        finish = "stop" if n == self.tokens else "length"
        if parsed.get("stream") is not True:
            await asyncio.sleep(first_delay + interval * n)
            self.stats.tokens_generated += n
            out = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_ollama",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "".join(pieces)}, "finish_reason": finish}
                ],
                "usage": usage,
            }
            body = json.dumps(out, separators=(",", ":")).encode()
            if self.scenario == "malformed_json":
                body = body[: len(body) // 2]
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        self.stats.streams_started += 1
        try:
            clock = _TokenClock(first_delay, interval)
            await clock.until(0)
            await resp.prepare(request)
            for i, piece in enumerate(pieces):
                if self.scenario == "truncated_stream" and i >= n // 2:
                    self._abort(request)
                    return resp
                chunk = {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_ollama",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}],
                }
                text = json.dumps(chunk, separators=(",", ":"))
                if self.scenario == "malformed_json":
                    text = text[:-9]
                await self._write(resp, f"data: {text}\n\n".encode())
                self.stats.tokens_generated += 1
                await clock.until(i + 1)
            last: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": finish}],
            }
            opts = parsed.get("stream_options")
            if isinstance(opts, dict) and opts.get("include_usage"):
                await self._write(resp, f"data: {json.dumps(last, separators=(',', ':'))}\n\n".encode())
                last = {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_ollama",
                    "choices": [],
                    "usage": usage,
                }
            await self._write(resp, f"data: {json.dumps(last, separators=(',', ':'))}\n\n".encode())
            await self._write(resp, b"data: [DONE]\n\n")
            await resp.write_eof()
        except (asyncio.CancelledError, _Cancelled):
            self.stats.streams_cancelled += 1
            raise
        self.stats.streams_completed += 1
        return resp


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=json.dumps({"error": message}).encode(), content_type="application/json", charset="utf-8"
    )


# --- command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llm-monitor-testkit simulate ollama",
        description="Simulated Ollama server (explicit simulation: answers are not real).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--listen", default="127.0.0.1:11434", metavar="HOST:PORT", help="address to listen on")
    p.add_argument("--scenario", default="normal", choices=SCENARIOS)
    p.add_argument("--tokens", type=int, default=24, help="tokens per answer")
    p.add_argument("--token-interval", type=float, default=0.02, help="seconds between streamed tokens")
    p.add_argument("--first-token-delay", type=float, default=0.05, help="seconds before the first token")
    p.add_argument("--slow-delay", type=float, default=5.0, help="first-token delay of the 'slow' scenario")
    p.add_argument("--spike-delay", type=float, default=1.0, help="first-token delay of latency spikes")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``llm-monitor-testkit simulate ollama [options]``; ``argv`` are the options after ``ollama``."""
    from llm_monitor_exporters.core.httpserver import ListenError, parse_listen_address  # noqa: PLC0415
    from llm_monitor_exporters.core.logsetup import setup_logging  # noqa: PLC0415

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        ns = build_parser().parse_args(args)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    setup_logging(ns.log_level)
    try:
        host, port = parse_listen_address(ns.listen)
    except ListenError as exc:
        print(f"llm-monitor-testkit simulate ollama: {exc}", file=sys.stderr)
        return 2
    if ns.tokens < 1 or ns.token_interval < 0 or ns.first_token_delay < 0:
        print("llm-monitor-testkit simulate ollama: --tokens must be >= 1 and delays >= 0", file=sys.stderr)
        return 2
    sim = OllamaSimulator(
        ns.scenario,
        tokens=ns.tokens,
        token_interval=ns.token_interval,
        first_token_delay=ns.first_token_delay,
        slow_delay=ns.slow_delay,
        spike_delay=ns.spike_delay,
    )
    return asyncio.run(_serve(sim, host or "0.0.0.0", port, ns.listen))


async def _serve(sim: OllamaSimulator, host: str, port: int, display: str) -> int:
    try:
        bound = await sim.start(host, port)
    except OSError as exc:
        log.error("cannot listen on %s: %s", display, exc.strerror or exc)
        return 1
    log.warning("SIMULATED Ollama (scenario %s) listening on %s:%d: answers are not real", sim.scenario, host, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await sim.close()
    return 0

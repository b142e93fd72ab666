"""SIMULATED Ollama server (``llm-monitor-testkit simulate ollama``), a TEST DOUBLE for tests, benchmarks and demos.

Modelled on Ollama at commit fb30760996871fa9460115c753afd2c60d4ab0f7 (tag v0.33.0-rc2, 2026-08-21, the August
2026 head), read in ``api/types.go`` (field names, order and ``omitempty``), ``server/routes.go`` (handlers, load
requests, errors, NDJSON streaming), ``server/sched.go`` (the bounded queue), ``openai/openai.go``,
``openai/responses.go`` and ``middleware/openai.go`` (OpenAI compatibility), ``anthropic/anthropic.go`` and
``middleware/anthropic.go`` (``/v1/messages``). The fields each answer carries are recorded, with their source
files, in ``samples/ollama_fields.json``; the tests check every answer of this simulator against that record.
It is chosen only explicitly and says so on startup.

Answers are paced like a real model (``token_interval`` between tokens, a first-token delay, tokens due on a
fixed clock) and come in Ollama's formats:

- native ``/api/generate`` and ``/api/chat``: NDJSON (``application/x-ndjson``) unless ``"stream": false``, headers
  with the first chunk, zero-valued fields omitted (middle chunks carry no statistics), a final chunk with
  ``done_reason`` and the nanosecond statistics; a request without prompt (generate) or messages (chat) only loads
  the model (``done_reason: "load"``; ``keep_alive: 0`` unloads: ``"unload"``). Models whose capabilities include
  ``thinking`` (``qwen3:4b`` in ``samples/tags.json``) think first unless the request says ``think: false``: their
  chunks carry ``thinking`` (generate) or ``message.thinking`` (chat) before the answer; ``think`` for any other
  model is a 400, as in Ollama;
- ``/v1/chat/completions`` and ``/v1/completions``: SSE with the role only in the first chunk, reasoning as
  ``delta.reasoning`` in chunks of its own, a separate finish chunk with ``delta: {}``, a usage chunk
  (``choices: []``) only with ``stream_options.include_usage``, then ``data: [DONE]``;
- ``/v1/responses`` (``event:``/``data:`` SSE: ``response.created`` .. ``response.completed``, reasoning summary
  events for thinking models), ``/v1/messages`` (Anthropic's ``message_start`` .. ``message_stop``),
  ``/v1/audio/transcriptions`` (multipart; the ``{"text": ...}`` body comes after the whole generation, its headers
  with the first token, as Ollama's gin stream sends them), ``/v1/models``, ``/v1/models/{model}``,
  ``/v1/embeddings``, ``/api/embed``, ``/api/embeddings``, ``/api/tags``, ``/api/ps`` (models loaded by requests,
  ``expires_at`` on the real clock, ``keep_alive`` honoured, ``context_length``), ``/api/status``,
  ``/api/version``;
- errors in each API's own body: ``{"error": "..."}`` (native), ``{"error": {"message", "type", "param",
  "code"}}`` (OpenAI), ``{"type": "error", "error": {...}, "request_id"}`` (Anthropic).

Ollama's queue: with ``num_parallel`` > 0 at most that many answers run at once and up to ``max_queue`` requests
wait; one more gets 503 ``server busy, please try again.  maximum pending requests exceeded`` (no ``Retry-After``:
Ollama never answers 429), and a client that goes away while it waits is answered 499 ``request canceled`` (what
Ollama logs; the client never reads it). Simplified: Ollama bounds only the requests waiting for a model load and
lets requests for a loaded model wait for a parallel slot without bound; here one bounded queue stands for both.
``num_parallel`` 0 (the default, for benchmarks) runs every request at once.

Scenarios (generation endpoints; embeddings too for the HTTP errors):

- ``normal``: every answer completes;
- ``latency_spike``: every 5th request waits ``spike_delay`` before its first token and streams 3x slower;
- ``upstream_down``: the port accepts connections and closes them at once (nothing is answered);
- ``error_burst``: HTTP 500 ``llama-server process has terminated: exit status 2`` (the runner died on load);
- ``server_busy``: every inference request is rejected as by a full queue (503, no ``Retry-After``);
- ``mid_stream_error``: the answer fails half way as a crashed runner makes it fail: a native stream ends with an
  ``{"error": ...}`` line and HTTP status 200; the OpenAI, Responses and Anthropic streams end early without their
  closing events (Ollama turns the error line into an empty chunk there); a transcription is an empty 200; answers
  that are not streamed get 500;
- ``truncated_stream``: the answer stops half way and the connection is cut (no final chunk);
- ``slow``: the first token comes after ``slow_delay`` seconds;
- ``malformed_json``: HTTP 200 whose body/lines are not valid JSON.

Counters for tests are served as JSON on ``GET /_sim/stats`` (not an Ollama path): requests by path and status
(499 for clients gone while queued), streams started/completed/cancelled/failed, TCP connections accepted,
tokens generated (thinking included, as ``eval_count``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

#: the upstream this simulator models (module docstring, samples/README.md, samples/ollama_fields.json)
UPSTREAM_COMMIT = "fb30760996871fa9460115c753afd2c60d4ab0f7"
UPSTREAM_VERSION = "0.33.0-rc2"

SAMPLES = Path(__file__).resolve().parent / "samples"
SCENARIOS = (
    "normal",
    "latency_spike",
    "upstream_down",
    "error_burst",
    "server_busy",
    "mid_stream_error",
    "truncated_stream",
    "slow",
    "malformed_json",
)
ANSWER = (
    "The sky appears blue because molecules in the atmosphere scatter short blue wavelengths of "
    "sunlight much more than the longer red ones, an effect called Rayleigh scattering. "
)
REASONING = (
    "Okay, the user asks why the sky is blue. Sunlight is white light; air molecules scatter shorter "
    "wavelengths more strongly, so blue light reaches the eye from every direction. "
)
#: Ollama's own messages (server/sched.go, server/routes.go, llm/llama_server.go at the modelled commit)
ERROR_BUSY = "server busy, please try again.  maximum pending requests exceeded"
ERROR_CANCELED = "request canceled"
ERROR_RUNNER_TERMINATED = "llama-server process has terminated: exit status 2"
ERROR_MID_STREAM = "an error was encountered while running the model: unexpected EOF"
FOREVER_NS = (1 << 63) - 1  # keep_alive < 0: Go's time.Duration(math.MaxInt64)
DEFAULT_CONTEXT_LENGTH = 32768  # Ollama picks 4k/32k/256k from the VRAM; a mid-sized GPU


def load_sample(name: str) -> Any:
    """A recorded sample: parsed JSON (``.json``), list of parsed lines (``.ndjson``) or text."""
    text = (SAMPLES / name).read_text(encoding="utf-8")
    if name.endswith(".ndjson"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if name.endswith(".json"):
        return json.loads(text)
    return text


# --- Go's encodings --------------------------------------------------------------------------------
def go_json(value: Any, *, sort_keys: bool = False) -> str:
    """JSON as Go's encoding/json writes it: no spaces, UTF-8, ``<``, ``>``, ``&`` escaped, whole floats as ints.

    ``sort_keys`` for values Go marshals from a ``map[string]any`` (keys sorted), such as the Responses events.
    """
    text = json.dumps(_go_numbers(value), separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(char, escaped)
    return text.replace("\u2029", "\\u2029")


def _go_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)  # Go prints float64(1) as 1
    if isinstance(value, dict):
        return {k: _go_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_numbers(v) for v in value]
    return value


def go_time(unix_ns: int, *, utc: bool = True) -> str:
    """A ``time.Time`` as Go marshals it: RFC 3339 with nanoseconds, trailing zeros trimmed (no fraction at all when
    they are zero), ``Z`` in UTC, else the local offset. Ollama stamps ``created_at`` in UTC and ``expires_at`` in
    local time."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    if not utc:
        moment = moment.astimezone()
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset else 0
    if minutes == 0:
        return text + "Z"
    sign = "+" if minutes > 0 else "-"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _now() -> str:
    """``created_at`` of a chunk: now, in UTC."""
    return go_time(time.time_ns())


_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: object) -> float:
    """``keep_alive`` (api.Duration) in seconds: a number of seconds or a Go duration string; negative means forever
    (``math.inf``). Raises ValueError with Go's message for what Ollama rejects."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")  # noqa: TRY004 - Ollama's 400, as the rest
    if not isinstance(value, str):
        return float(value) if value >= 0 else float("inf")
    text = value
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _GO_DURATION_PART.match(text, pos)
        if m is None:
            if re.fullmatch(r"\d+(\.\d*)?", text[pos:]):
                raise ValueError(f'time: missing unit in duration "{value}"')
            raise ValueError(f'time: invalid duration "{value}"')
        total += float(m.group(1)) * _GO_UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError(f'time: invalid duration "{value}"')
    return float("inf") if sign < 0 else total


def _tokens(text: str, n: int) -> list[str]:
    words = text.split(" ")
    out = []
    for i in range(n):
        w = words[i % len(words)]
        out.append(w if i == 0 else " " + w)
    return out


def _canonical(model: str) -> str:
    return model if ":" in model else model + ":latest"


def _estimate_tokens(value: object) -> int:
    return max(1, len(value if isinstance(value, str) else json.dumps(value)) // 4)


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
    streams_failed: int = 0  # mid_stream_error: ended with an error after status 200
    connections: int = 0
    tokens_generated: int = 0

    def count_status(self, status: int) -> None:
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "statuses": dict(self.statuses),
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
            "streams_failed": self.streams_failed,
            "connections": self.connections,
            "tokens_generated": self.tokens_generated,
            "requests_total": sum(self.requests.values()),
        }


class _Cancelled(Exception):
    pass


class _Busy(Exception):
    """The queue is full: Ollama's ErrMaxQueue."""


class _Queue:
    """Ollama's scheduler queue, simplified (module docstring): ``num_parallel`` answers at once (0: no limit), up
    to ``max_queue`` more waiting, any further request rejected."""

    def __init__(self, num_parallel: int, max_queue: int) -> None:
        self.num_parallel = num_parallel
        self.max_queue = max_queue
        self.running = 0
        self.waiting = 0
        self._free = asyncio.Condition() if num_parallel > 0 else None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        free = self._free
        if free is None:
            yield
            return
        if self.running >= self.num_parallel and self.waiting >= self.max_queue:
            raise _Busy
        self.waiting += 1
        try:
            async with free:
                await free.wait_for(lambda: self.running < self.num_parallel)
                self.running += 1
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self.running -= 1
            async with free:
                free.notify()


@dataclass
class _Loaded:
    """A model in memory (/api/ps)."""

    name: str
    size: int
    size_vram: int
    digest: str
    details: dict[str, Any]
    context_length: int
    expires_ns: int


@dataclass
class _Job:
    """One generation request, whatever API it came in through (Ollama converts them all to chat or generate)."""

    api: str  # generate, chat, openai_chat, openai_completions, responses, anthropic, transcription
    model: str
    stream: bool
    think: bool
    thinking_tokens: int
    content_tokens: int
    prompt_tokens: int
    limited: bool  # num_predict / max_tokens cut the answer short: done_reason "length"
    include_usage: bool = False
    keep_alive: float | None = None  # seconds; None: the server's default
    num_ctx: int = 0
    echo: dict[str, Any] = field(default_factory=dict)  # request fields the Responses API echoes back
    response_format: str = ""  # transcriptions: "json" (default) or "text"


@dataclass
class _Final:
    """The statistics of a complete answer (api.Metrics, nanoseconds) and its text."""

    model: str
    done_reason: str
    total_ns: int
    load_ns: int
    prompt_tokens: int
    prompt_ns: int
    eval_count: int
    eval_ns: int
    thinking: str
    content: str
    context: list[int]

    def metrics(self) -> dict[str, int]:
        """api.Metrics with omitempty: zero values are left out."""
        values = (
            ("total_duration", self.total_ns),
            ("load_duration", self.load_ns),
            ("prompt_eval_count", self.prompt_tokens),
            ("prompt_eval_duration", self.prompt_ns),
            ("eval_count", self.eval_count),
            ("eval_duration", self.eval_ns),
        )
        return {k: v for k, v in values if v}


#: a frame of a stream: (SSE event name or "", JSON text); the writer adds the framing
Frame = tuple[str, str]
OPENAI_APIS = frozenset({"openai_chat", "openai_completions", "openai_embeddings", "responses", "transcription"})


def error_response(api: str, status: int, message: str, *, from_middleware: bool = False) -> web.Response:
    """An error as the API answers it: native ``{"error": msg}`` (gin's c.JSON: no newline), the OpenAI error object,
    or Anthropic's. ``from_middleware``: rejected by the compatibility middleware itself (gin's
    AbortWithStatusJSON: ``charset=utf-8``, no newline) rather than relayed from the handler (json.Encoder)."""
    if api in OPENAI_APIS:
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        body = go_json({"error": {"message": message, "type": kind, "param": None, "code": None}})
    elif api == "anthropic":
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            429: "rate_limit_error",
            503: "overloaded_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        request_id = "req_" + secrets.token_hex(12)  # crypto/rand in Ollama
        body = go_json({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id})
    else:
        return web.Response(
            status=status,
            body=go_json({"error": message}).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
    if from_middleware:
        ctype = "application/json; charset=utf-8"
    else:
        ctype, body = "application/json", body + "\n"
    return web.Response(status=status, body=body.encode(), headers={"Content-Type": ctype})


# --- the formats of a generated answer ----------------------------------------------------------------
class _Writer:
    """Turns the model's tokens into one API's answer (Ollama: the handler's chunks, re-encoded by a middleware).

    ``piece`` for each token (thinking or answer text), ``final`` at the end, ``error`` for the ``{"error": ...}``
    chunk a failing runner makes the handler write mid-stream; ``whole`` for an answer that is not streamed.
    """

    stream_type = "application/x-ndjson"
    whole_type = "application/json; charset=utf-8"

    def __init__(self, job: _Job, ids: random.Random) -> None:
        self.job = job
        self.ids = ids

    def frame(self, event: str, text: str) -> bytes:
        return text.encode() + b"\n"

    def piece(self, thinking: str, content: str) -> list[Frame]:
        raise NotImplementedError

    def final(self, final: _Final) -> list[Frame]:
        raise NotImplementedError

    def error(self, message: str) -> list[Frame]:
        return [("", go_json({"error": message}))]  # json.NewEncoder(c.Writer).Encode(gin.H{"error": e})

    def whole(self, final: _Final) -> str:
        raise NotImplementedError


class _GenerateWriter(_Writer):
    """``/api/generate``: api.GenerateResponse."""

    def piece(self, thinking: str, content: str) -> list[Frame]:
        chunk: dict[str, Any] = {"model": self.job.model, "created_at": _now(), "response": content}
        if thinking:
            chunk["thinking"] = thinking
        chunk["done"] = False
        return [("", go_json(chunk))]

    def _done(self, final: _Final, response: str, thinking: str) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.job.model, "created_at": _now(), "response": response}
        if thinking:
            out["thinking"] = thinking
        out["done"] = True
        out["done_reason"] = final.done_reason
        if final.context:
            out["context"] = final.context
        out.update(final.metrics())
        return out

    def final(self, final: _Final) -> list[Frame]:
        return [("", go_json(self._done(final, "", "")))]

    def whole(self, final: _Final) -> str:
        return go_json(self._done(final, final.content, final.thinking))


class _ChatWriter(_Writer):
    """``/api/chat``: api.ChatResponse."""

    def _chunk(self, thinking: str, content: str, done: bool) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        return {"model": self.job.model, "created_at": _now(), "message": message, "done": done}

    def piece(self, thinking: str, content: str) -> list[Frame]:
        return [("", go_json(self._chunk(thinking, content, False)))]

    def _done(self, final: _Final, thinking: str, content: str) -> dict[str, Any]:
        out = self._chunk(thinking, content, True)
        out["done_reason"] = final.done_reason
        out.update(final.metrics())
        return out

    def final(self, final: _Final) -> list[Frame]:
        return [("", go_json(self._done(final, "", "")))]

    def whole(self, final: _Final) -> str:
        return go_json(self._done(final, final.thinking, final.content))


class _OpenAIChatWriter(_Writer):
    """``/v1/chat/completions`` (middleware.ChatWriter, openai.ToStreamChunks / FinishChunk / ToChatCompletion)."""

    stream_type = "text/event-stream"
    whole_type = "application/json"

    def __init__(self, job: _Job, ids: random.Random) -> None:
        super().__init__(job, ids)
        self.id = f"chatcmpl-{ids.randrange(999)}"
        self.created = 0  # pinned by the first chunk: one created value on every chunk of a stream
        self.first_sent = False

    def frame(self, event: str, text: str) -> bytes:
        return f"data: {text}\n\n".encode()

    def _chunk(self, model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.created:
            self.created = int(time.time())
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": model,
            "system_fingerprint": "fp_ollama",
            "choices": choices,
        }

    def _delta(self, thinking: str, content: str) -> Frame:
        delta: dict[str, Any] = {}
        if not self.first_sent:
            delta["role"] = "assistant"  # the role only in the first chunk
        delta["content"] = content  # a string, so "" is kept (content is `any` with omitempty)
        if thinking:
            delta["reasoning"] = thinking
        self.first_sent = True
        return ("", go_json(self._chunk(self.job.model, [{"index": 0, "delta": delta, "finish_reason": None}])))

    def piece(self, thinking: str, content: str) -> list[Frame]:
        return [self._delta(thinking, content)]

    def final(self, final: _Final) -> list[Frame]:
        frames: list[Frame] = []
        if not self.first_sent:  # a wholly empty completion still opens with a role chunk
            frames.append(self._delta("", ""))
        finish = [{"index": 0, "delta": {}, "finish_reason": final.done_reason}]
        frames.append(("", go_json(self._chunk(self.job.model, finish))))
        if self.job.include_usage:
            usage = self._chunk(self.job.model, [])
            usage["usage"] = _openai_usage(final)
            frames.append(("", go_json(usage)))
        frames.append(("", "[DONE]"))
        return frames

    def error(self, message: str) -> list[Frame]:
        # the {"error": ...} chunk decodes as an empty api.ChatResponse: an empty content chunk without a model,
        # and the stream ends without finish chunk and [DONE]
        delta: dict[str, Any] = {"role": "assistant"} if not self.first_sent else {}
        delta["content"] = ""
        self.first_sent = True
        return [("", go_json(self._chunk("", [{"index": 0, "delta": delta, "finish_reason": None}])))]

    def whole(self, final: _Final) -> str:
        message: dict[str, Any] = {"role": "assistant", "content": final.content}
        if final.thinking:
            message["reasoning"] = final.thinking
        out = {
            "id": self.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.job.model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": message, "finish_reason": final.done_reason}],
            "usage": _openai_usage(final),
        }
        return go_json(out) + "\n"


def _openai_usage(final: _Final) -> dict[str, int]:
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": final.eval_count,
        "total_tokens": final.prompt_tokens + final.eval_count,
    }


class _OpenAICompletionsWriter(_Writer):
    """``/v1/completions`` (middleware.CompleteWriter, openai.ToCompleteChunk / ToCompletion): thinking is dropped, so
    a thinking model's reasoning arrives as chunks with empty ``text``."""

    stream_type = "text/event-stream"
    whole_type = "application/json"

    def __init__(self, job: _Job, ids: random.Random) -> None:
        super().__init__(job, ids)
        self.id = f"cmpl-{ids.randrange(999)}"

    def frame(self, event: str, text: str) -> bytes:
        return f"data: {text}\n\n".encode()

    def _chunk(self, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": int(time.time()),
            "choices": choices,
            "model": model,
            "system_fingerprint": "fp_ollama",
        }
        if usage is not None:
            out["usage"] = usage
        return out

    def _zero_usage(self) -> dict[str, int] | None:
        # with include_usage every chunk carries a zero usage; the real one comes in a chunk of its own
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0} if self.job.include_usage else None

    def piece(self, thinking: str, content: str) -> list[Frame]:
        choice = {"text": content, "index": 0, "finish_reason": None}
        return [("", go_json(self._chunk(self.job.model, [choice], self._zero_usage())))]

    def final(self, final: _Final) -> list[Frame]:
        choice = {"text": "", "index": 0, "finish_reason": final.done_reason}
        frames: list[Frame] = [("", go_json(self._chunk(self.job.model, [choice], self._zero_usage())))]
        if self.job.include_usage:
            frames.append(("", go_json(self._chunk(self.job.model, [], _openai_usage(final)))))
        frames.append(("", "[DONE]"))
        return frames

    def error(self, message: str) -> list[Frame]:
        choice = {"text": "", "index": 0, "finish_reason": None}
        return [("", go_json(self._chunk("", [choice], self._zero_usage())))]

    def whole(self, final: _Final) -> str:
        out = {
            "id": self.id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.job.model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"text": final.content, "index": 0, "finish_reason": final.done_reason}],
            "usage": _openai_usage(final),
        }
        return go_json(out) + "\n"


class _ResponsesWriter(_Writer):
    """``/v1/responses`` (middleware.ResponsesWriter, openai.ResponsesStreamConverter / ToResponse). The events are
    Go maps, so their keys come sorted."""

    stream_type = "text/event-stream"
    whole_type = "application/json"

    def __init__(self, job: _Job, ids: random.Random) -> None:
        super().__init__(job, ids)
        self.response_id = f"resp_{ids.randrange(999999)}"
        self.item_id = f"msg_{ids.randrange(999999)}"
        self.sequence = 0
        self.started = False
        self.output_index = 0
        self.reasoning_id = ""
        self.reasoning_text = ""
        self.content_started = False
        self.content_text = ""
        self.completed_items: list[dict[str, Any]] = []

    def frame(self, event: str, text: str) -> bytes:
        return f"event: {event}\ndata: {text}\n\n".encode()

    def _event(self, kind: str, data: dict[str, Any]) -> Frame:
        data["type"] = kind
        data["sequence_number"] = self.sequence
        self.sequence += 1
        return (kind, go_json(data, sort_keys=True))

    def _response(self, status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
        echo = self.job.echo
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": int(time.time()),
            "completed_at": None,
            "status": status,
            "incomplete_details": None,
            "model": self.job.model,
            "previous_response_id": None,
            "instructions": echo.get("instructions") or None,
            "output": output,
            "error": None,
            "tools": [],
            "tool_choice": "auto",
            "truncation": echo.get("truncation") or "disabled",
            "parallel_tool_calls": True,
            "text": {"format": {"type": "text"}},
            "top_p": echo.get("top_p", 1.0),
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "top_logprobs": 0,
            "temperature": echo.get("temperature", 1.0),
            "reasoning": echo.get("reasoning"),
            "usage": usage,
            "max_output_tokens": echo.get("max_output_tokens"),
            "max_tool_calls": None,
            "store": False,
            "background": False,
            "service_tier": "default",
            "metadata": {},
            "safety_identifier": None,
            "prompt_cache_key": None,
        }

    def _open(self) -> list[Frame]:
        if self.started:
            return []
        self.started = True
        return [
            self._event("response.created", {"response": self._response("in_progress", [], None)}),
            self._event("response.in_progress", {"response": self._response("in_progress", [], None)}),
        ]

    def _finish_reasoning(self) -> list[Frame]:
        if not self.reasoning_id:
            return []
        item = {
            "id": self.reasoning_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": self.reasoning_text}],
            "encrypted_content": self.reasoning_text,
        }
        self.completed_items.append(item)
        index, item_id, text = self.output_index, self.reasoning_id, self.reasoning_text
        self.reasoning_id, self.reasoning_text = "", ""
        self.output_index += 1
        return [
            self._event(
                "response.reasoning_summary_text.done",
                {"item_id": item_id, "output_index": index, "summary_index": 0, "text": text},
            ),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]

    def _message_item(self, status: str) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": self.content_text, "annotations": [], "logprobs": []}],
        }

    def piece(self, thinking: str, content: str) -> list[Frame]:
        frames = self._open()
        if thinking:
            if not self.reasoning_id:
                self.reasoning_id = f"rs_{self.ids.randrange(999999)}"
                item = {"id": self.reasoning_id, "type": "reasoning", "summary": []}
                frames.append(
                    self._event("response.output_item.added", {"output_index": self.output_index, "item": item})
                )
            self.reasoning_text += thinking
            delta = {"item_id": self.reasoning_id, "output_index": self.output_index, "summary_index": 0}
            frames.append(self._event("response.reasoning_summary_text.delta", {**delta, "delta": thinking}))
        if content:
            frames += self._finish_reasoning()
            if not self.content_started:
                self.content_started = True
                added = {"id": self.item_id, "type": "message", "status": "in_progress", "role": "assistant"}
                frames.append(
                    self._event(
                        "response.output_item.added",
                        {"output_index": self.output_index, "item": {**added, "content": []}},
                    )
                )
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                frames.append(
                    self._event(
                        "response.content_part.added",
                        {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0, "part": part},
                    )
                )
            self.content_text += content
            delta_event = {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0}
            frames.append(self._event("response.output_text.delta", {**delta_event, "delta": content, "logprobs": []}))
        return frames

    def final(self, final: _Final) -> list[Frame]:
        frames = self._open() + self._finish_reasoning()
        output: list[Any] = list(self.completed_items)
        if self.content_started:
            where = {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0}
            part = {"type": "output_text", "text": self.content_text, "annotations": [], "logprobs": []}
            frames += [
                self._event("response.output_text.done", {**where, "text": self.content_text, "logprobs": []}),
                self._event("response.content_part.done", {**where, "part": part}),
                self._event(
                    "response.output_item.done",
                    {"output_index": self.output_index, "item": self._message_item("completed")},
                ),
            ]
            output.append(self._message_item("completed"))
        usage = {
            "input_tokens": final.prompt_tokens,
            "output_tokens": final.eval_count,
            "total_tokens": final.prompt_tokens + final.eval_count,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        response = self._response("completed", output, usage)
        response["completed_at"] = int(time.time())
        frames.append(self._event("response.completed", {"response": response}))
        return frames

    def error(self, message: str) -> list[Frame]:
        return self._open()  # an empty ChatResponse: no events beyond the opening ones, no response.completed

    def whole(self, final: _Final) -> str:
        output: list[dict[str, Any]] = []
        if final.thinking:
            output.append(
                {
                    "id": f"rs_{self.response_id}",
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": final.thinking}],
                    "encrypted_content": final.thinking,
                }
            )
        self.content_text = final.content
        output.append(self._message_item("completed"))
        response = self._response("completed", [], None)
        if response["reasoning"]:  # a struct here: its nil fields are omitted
            response["reasoning"] = {k: v for k, v in response["reasoning"].items() if v is not None}
        response["output"] = output
        response["completed_at"] = int(time.time())
        response["usage"] = {
            "input_tokens": final.prompt_tokens,
            "output_tokens": final.eval_count,
            "total_tokens": final.prompt_tokens + final.eval_count,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        return go_json(response) + "\n"  # a struct (ResponsesResponse): fields in declaration order


class _AnthropicWriter(_Writer):
    """``/v1/messages`` (middleware.AnthropicWriter, anthropic.StreamConverter / ToMessagesResponse)."""

    stream_type = "text/event-stream"
    whole_type = "application/json"

    def __init__(self, job: _Job, ids: random.Random) -> None:
        super().__init__(job, ids)
        self.id = "msg_" + secrets.token_hex(12)
        self.started = False
        self.index = 0
        self.thinking_open = False
        self.thinking_done = False
        self.text_open = False

    def frame(self, event: str, text: str) -> bytes:
        return f"event: {event}\ndata: {text}\n\n".encode()

    def _open(self) -> list[Frame]:
        if self.started:
            return []
        self.started = True
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.job.model,
            "content": [],
            "usage": {"input_tokens": self.job.prompt_tokens, "output_tokens": 0},  # the request's estimate
        }
        return [("message_start", go_json({"type": "message_start", "message": message}))]

    def _stop(self) -> Frame:
        return ("content_block_stop", go_json({"type": "content_block_stop", "index": self.index}))

    def _start(self, block: dict[str, Any]) -> Frame:
        return (
            "content_block_start",
            go_json({"type": "content_block_start", "index": self.index, "content_block": block}),
        )

    def _delta(self, delta: dict[str, Any]) -> Frame:
        return ("content_block_delta", go_json({"type": "content_block_delta", "index": self.index, "delta": delta}))

    def piece(self, thinking: str, content: str) -> list[Frame]:
        frames = self._open()
        if thinking and not self.thinking_done:
            if not self.thinking_open:
                self.thinking_open = True
                frames.append(self._start({"type": "thinking", "thinking": ""}))
            frames.append(self._delta({"type": "thinking_delta", "thinking": thinking}))
        if content:
            if self.thinking_open and not self.thinking_done:
                self.thinking_done = True
                frames.append(self._stop())
                self.index += 1
            if not self.text_open:
                self.text_open = True
                frames.append(self._start({"type": "text", "text": ""}))
            frames.append(self._delta({"type": "text_delta", "text": content}))
        return frames

    def final(self, final: _Final) -> list[Frame]:
        frames = self._open()
        if self.text_open or (self.thinking_open and not self.thinking_done):
            frames.append(self._stop())
        delta = {"type": "message_delta", "delta": {"stop_reason": _stop_reason(final.done_reason)}}
        delta["usage"] = {"input_tokens": final.prompt_tokens, "output_tokens": final.eval_count}
        frames.append(("message_delta", go_json(delta)))
        frames.append(("message_stop", go_json({"type": "message_stop"})))
        return frames

    def error(self, message: str) -> list[Frame]:
        return self._open()  # an empty ChatResponse: nothing more, no message_stop

    def whole(self, final: _Final) -> str:
        content: list[dict[str, Any]] = []
        if final.thinking:
            content.append({"type": "thinking", "thinking": final.thinking})
        if final.content:
            content.append({"type": "text", "text": final.content})
        out: dict[str, Any] = {"id": self.id, "type": "message", "role": "assistant", "model": self.job.model}
        out["content"] = content
        reason = _stop_reason(final.done_reason)
        if reason:
            out["stop_reason"] = reason
        out["usage"] = {"input_tokens": final.prompt_tokens, "output_tokens": final.eval_count}
        return go_json(out) + "\n"


def _stop_reason(done_reason: str) -> str:
    return {"stop": "end_turn", "length": "max_tokens", "": ""}.get(done_reason, "stop_sequence")


class _TranscriptionWriter(_Writer):
    """``/v1/audio/transcriptions`` (middleware.TranscriptionWriter): the chat stream is collected and written once
    it is done, ``{"text": ...}`` or plain text; gin has sent the headers (``application/x-ndjson``, status 200) with
    the first chunk, so an error mid-way leaves an empty 200."""

    def __init__(self, job: _Job, ids: random.Random) -> None:
        super().__init__(job, ids)
        self.text = ""

    def frame(self, event: str, text: str) -> bytes:
        return text.encode()

    def piece(self, thinking: str, content: str) -> list[Frame]:
        self.text += content
        return []

    def final(self, final: _Final) -> list[Frame]:
        text = self.text.strip()
        if self.job.response_format == "text":
            return [("", text)]
        return [("", go_json({"text": text}) + "\n")]

    def error(self, message: str) -> list[Frame]:
        return []

    def whole(self, final: _Final) -> str:  # pragma: no cover - transcriptions always stream internally
        raise NotImplementedError


WRITERS: dict[str, type[_Writer]] = {
    "generate": _GenerateWriter,
    "chat": _ChatWriter,
    "openai_chat": _OpenAIChatWriter,
    "openai_completions": _OpenAICompletionsWriter,
    "responses": _ResponsesWriter,
    "anthropic": _AnthropicWriter,
    "transcription": _TranscriptionWriter,
}


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
        thinking_tokens: int = 12,
        num_parallel: int = 0,
        max_queue: int = 512,
        keep_alive: float = 300.0,
    ) -> None:
        if scenario not in SCENARIOS:
            hint = (
                " (Ollama never answers 429: a full queue is 'server_busy', 503)" if scenario == "rate_limited" else ""
            )
            raise ValueError(f"unknown scenario {scenario!r}{hint} (available: {', '.join(SCENARIOS)})")
        self.scenario = scenario
        self.tokens = tokens
        self.thinking_tokens = thinking_tokens
        self.token_interval = token_interval
        self.first_token_delay = first_token_delay
        self.slow_delay = slow_delay
        self.spike_delay = spike_delay
        self.load_duration = load_duration
        self.keep_alive = keep_alive  # OLLAMA_KEEP_ALIVE (default 5m)
        self.stats = SimStats()
        self.tags = load_sample("tags.json")
        self.version = load_sample("version.json")
        #: name -> its /api/tags entry (tests may add names to ``installed`` alone: a model pulled since)
        self.catalogue: dict[str, dict[str, Any]] = {m["name"]: m for m in self.tags["models"]}
        self.installed: set[str] = set(self.catalogue)
        self.queue = _Queue(num_parallel, max_queue)
        self.loaded: dict[str, _Loaded] = {}
        for m in load_sample("ps.json")["models"]:  # what the recorded /api/ps had in memory, loaded at start
            self.loaded[m["name"]] = _Loaded(
                m["name"],
                m["size"],
                m["size_vram"],
                m["digest"],
                m["details"],
                m.get("context_length", DEFAULT_CONTEXT_LENGTH),
                time.time_ns() + int(keep_alive * 1e9),
            )
        self._counter = 0
        self._ids = random.Random()
        self.last_request_body = b""  # for tests: the proxy must forward bodies unchanged
        self._runner: web.AppRunner | None = None
        self._raw: asyncio.AbstractServer | None = None
        self._peers: set[object] = set()

    # lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        if self.scenario == "upstream_down":
            self._raw = await asyncio.start_server(self._refuse, host, port, reuse_address=True)
            return int(self._raw.sockets[0].getsockname()[1])
        app = web.Application(middlewares=[self._count, self._gin_not_found])
        r = app.router
        r.add_post("/api/generate", self.generate)
        r.add_post("/api/chat", self.chat)
        r.add_post("/api/embed", self.embed)
        r.add_post("/api/embeddings", self.embed)
        r.add_get("/api/tags", self.get_tags)
        r.add_get("/api/ps", self.get_ps)
        r.add_get("/api/version", self.get_version)
        r.add_get("/api/status", self.get_status)
        r.add_get("/", self.root)
        r.add_post("/v1/chat/completions", self.openai_chat)
        r.add_post("/v1/completions", self.openai_completions)
        r.add_post("/v1/embeddings", self.openai_embeddings)
        r.add_get("/v1/models", self.openai_models)
        r.add_get("/v1/models/{model}", self.openai_model)
        r.add_post("/v1/responses", self.responses)
        r.add_post("/v1/messages", self.anthropic_messages)
        r.add_post("/v1/audio/transcriptions", self.transcriptions)
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
            self.stats.count_status(resp.status)
        return resp

    @web.middleware
    async def _gin_not_found(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Unknown paths and methods answered as gin does (text/plain ``404 page not found``)."""
        try:
            resp: web.StreamResponse = await handler(request)
        except web.HTTPMethodNotAllowed:
            return web.Response(status=405, text="405 method not allowed")
        except web.HTTPNotFound:
            return web.Response(status=404, text="404 page not found")
        return resp

    async def get_stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())

    # simple endpoints
    async def root(self, _request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def get_tags(self, _request: web.Request) -> web.Response:
        return _gin_json(self.tags)

    async def get_ps(self, _request: web.Request) -> web.Response:
        now = time.time_ns()
        for name in [n for n, m in self.loaded.items() if m.expires_ns <= now]:
            del self.loaded[name]  # the keep-alive ran out: unloaded
        models = sorted(self.loaded.values(), key=lambda m: m.expires_ns, reverse=True)  # longest remaining first
        out = [
            {
                "name": m.name,
                "model": m.name,
                "size": m.size,
                "digest": m.digest,
                "details": m.details,
                "expires_at": go_time(m.expires_ns, utc=False),
                "size_vram": m.size_vram,
                "context_length": m.context_length,
            }
            for m in models
        ]
        return _gin_json({"models": out})

    async def get_version(self, _request: web.Request) -> web.Response:
        return _gin_json(self.version)

    async def get_status(self, _request: web.Request) -> web.Response:
        return _gin_json({"cloud": {"disabled": False, "source": "none"}})  # OLLAMA_NO_CLOUD unset

    async def openai_models(self, _request: web.Request) -> web.Response:
        data = [
            {"id": m["model"], "object": "model", "created": _unix(m["modified_at"]), "owned_by": "library"}
            for m in self.tags["models"]
        ]
        return _encoder_json({"object": "list", "data": data})

    async def openai_model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        entry = self.catalogue.get(_canonical(name))
        if entry is None and _canonical(name) not in self.installed:
            return error_response("openai_chat", 404, f"model '{name}' not found")
        created = _unix(entry["modified_at"]) if entry else int(time.time())
        return _encoder_json({"id": name, "object": "model", "created": created, "owned_by": "library"})

    # request parsing and faults
    async def _body(self, request: web.Request, api: str) -> dict[str, Any] | web.Response:
        body = await request.read()
        self.last_request_body = body
        if not body.strip():
            # the native handlers check for io.EOF themselves; gin's binding in the middlewares says "EOF"
            if api in ("generate", "chat", "embed"):
                return error_response(api, 400, "missing request body")
            return self._bad(api, "EOF")
        try:
            obj = json.loads(body)
        except ValueError:
            first = body[:1].decode("latin-1")
            return self._bad(api, f"invalid character '{first}' looking for beginning of value")
        if not isinstance(obj, dict):
            return self._bad(api, "json: cannot unmarshal into Go value of type api.GenerateRequest")
        return obj

    def _bad(self, api: str, message: str) -> web.Response:
        return error_response(api, 400, message, from_middleware=api not in ("generate", "chat"))

    def _unknown_model(self, api: str, model: str) -> web.Response | None:
        if _canonical(model) in self.installed:
            return None
        return error_response(api, 404, f"model '{model}' not found")  # current Ollama's message

    def _thinks(self, model: str) -> bool:
        entry = self.catalogue.get(_canonical(model), {})
        return "thinking" in (entry.get("capabilities") or [])

    def _fault(self, api: str) -> web.Response | None:
        if self.scenario == "error_burst":
            return error_response(api, 500, ERROR_RUNNER_TERMINATED)
        if self.scenario == "server_busy":
            return error_response(api, 503, ERROR_BUSY)
        return None

    def _pacing(self) -> tuple[float, float]:
        """(first token delay, token interval) for the next request."""
        self._counter += 1
        if self.scenario == "slow":
            return self.slow_delay, self.token_interval
        if self.scenario == "latency_spike" and self._counter % 5 == 0:
            return self.spike_delay, self.token_interval * 3
        return self.first_token_delay, self.token_interval

    def _job(
        self, api: str, model: str, *, stream: bool, think: object, limit: object, prompt: object, **extra: Any
    ) -> _Job | web.Response:
        """The common part of every generation request: the model exists, thinking is allowed, how many tokens."""
        missing = self._unknown_model(api, model)
        if missing is not None:
            return missing
        thinks = self._thinks(model)
        if think not in (None, False) and not thinks and api != "anthropic":
            # Go's %q; the Anthropic middleware relaxes thinking to nil instead
            return error_response(api, 400, f"{json.dumps(model)} does not support thinking")
        thinking = thinks and think is not False
        total = self.thinking_tokens + self.tokens if thinking else self.tokens
        budget = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else total
        n_thinking = min(self.thinking_tokens, budget) if thinking else 0
        n_content = min(self.tokens, budget - n_thinking)
        return _Job(
            api=api,
            model=model,
            stream=stream,
            think=thinking,
            thinking_tokens=n_thinking,
            content_tokens=n_content,
            prompt_tokens=_estimate_tokens(prompt),
            limited=n_thinking + n_content < total,
            **extra,
        )

    def _keep_alive(self, api: str, obj: dict[str, Any]) -> float | web.Response | None:
        if "keep_alive" not in obj or obj["keep_alive"] is None:
            return None
        try:
            return parse_keep_alive(obj["keep_alive"])
        except ValueError as exc:
            return error_response(api, 400, str(exc))

    # native generation
    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._native(request, "generate")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._native(request, "chat")

    async def _native(self, request: web.Request, api: str) -> web.StreamResponse:
        obj = await self._body(request, api)
        if isinstance(obj, web.Response):
            return obj
        model = obj.get("model")
        if not isinstance(model, str) or not model.strip():
            if api == "chat":
                return error_response(api, 400, "model is required")
            return error_response(api, 404, "model '' not found")  # generate's fallback for an empty name
        keep_alive = self._keep_alive(api, obj)
        if isinstance(keep_alive, web.Response):
            return keep_alive
        prompt = obj.get("prompt") if api == "generate" else obj.get("messages")
        if not prompt:
            # no prompt / no messages: Ollama only loads the model (or unloads it with keep_alive 0)
            missing = self._unknown_model(api, model)
            if missing is not None:
                return missing
            if keep_alive == 0:
                self.loaded.pop(_canonical(model), None)
                return _gin_json(self._load_answer(api, model, "unload"))
            fault = self._fault(api)
            if fault is not None:
                return fault
            self._load(model, keep_alive, 0)
            return _gin_json(self._load_answer(api, model, "load"))
        options = obj.get("options") if isinstance(obj.get("options"), dict) else {}
        job = self._job(
            api,
            model,
            stream=obj.get("stream") is not False,
            think=obj.get("think"),
            limit=options.get("num_predict") if isinstance(options, dict) else None,
            prompt=prompt,
            keep_alive=keep_alive,
            num_ctx=options.get("num_ctx", 0) if isinstance(options, dict) else 0,
        )
        if isinstance(job, web.Response):
            return job
        return await self._run(request, job)

    @staticmethod
    def _load_answer(api: str, model: str, reason: str) -> dict[str, Any]:
        if api == "generate":
            return {"model": model, "created_at": _now(), "response": "", "done": True, "done_reason": reason}
        message = {"role": "assistant", "content": ""}
        return {"model": model, "created_at": _now(), "message": message, "done": True, "done_reason": reason}

    def _load(self, model: str, keep_alive: float | None, num_ctx: int) -> None:
        """The model is in memory until its keep-alive runs out (from the end of this request, roughly)."""
        name = _canonical(model)
        entry = self.catalogue.get(name, {})
        seconds = self.keep_alive if keep_alive is None else keep_alive
        expires = time.time_ns() + (FOREVER_NS if seconds == float("inf") else int(seconds * 1e9))
        details = {
            k: v for k, v in (entry.get("details") or {}).items() if k not in ("context_length", "embedding_length")
        }
        model_ctx = (entry.get("details") or {}).get("context_length") or DEFAULT_CONTEXT_LENGTH
        size = int(entry.get("size", 1_000_000_000))
        self.loaded[name] = _Loaded(
            name,
            size,
            size,
            str(entry.get("digest", "0" * 64)),
            details or {"parent_model": "", "format": "gguf", "family": "", "families": None},
            int(num_ctx) if isinstance(num_ctx, int) and num_ctx > 0 else min(model_ctx, DEFAULT_CONTEXT_LENGTH),
            expires,
        )

    # the OpenAI- and Anthropic-compatible generation endpoints
    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        api = "openai_chat"
        obj = await self._body(request, api)
        if isinstance(obj, web.Response):
            return obj
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            return error_response(api, 400, "[] is too short - 'messages'", from_middleware=True)
        model = str(obj.get("model") or "")
        if not model:
            return error_response(api, 400, "model is required")
        effort = obj.get("reasoning_effort")
        reasoning = obj.get("reasoning")
        if effort is None and isinstance(reasoning, dict):
            effort = reasoning.get("effort")
        opts = obj.get("stream_options")
        job = self._job(
            api,
            model,
            stream=obj.get("stream") is True,
            think=None if effort in (None, "") else effort != "none",
            limit=obj.get("max_tokens"),
            prompt=messages,
            include_usage=isinstance(opts, dict) and opts.get("include_usage") is True,
        )
        if isinstance(job, web.Response):
            return job
        return await self._run(request, job)

    async def openai_completions(self, request: web.Request) -> web.StreamResponse:
        api = "openai_completions"
        obj = await self._body(request, api)
        if isinstance(obj, web.Response):
            return obj
        model = str(obj.get("model") or "")
        if not model:
            return error_response(api, 404, "model '' not found")
        opts = obj.get("stream_options")
        job = self._job(
            api,
            model,
            stream=obj.get("stream") is True,
            think=None,
            limit=obj.get("max_tokens"),
            prompt=obj.get("prompt", ""),
            include_usage=isinstance(opts, dict) and opts.get("include_usage") is True,
        )
        if isinstance(job, web.Response):
            return job
        return await self._run(request, job)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        api = "responses"
        obj = await self._body(request, api)
        if isinstance(obj, web.Response):
            return obj
        model = str(obj.get("model") or "")
        if not model:
            return error_response(api, 400, "model is required")
        reasoning = obj.get("reasoning") if isinstance(obj.get("reasoning"), dict) else {}
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        echo: dict[str, Any] = {
            k: obj[k] for k in ("instructions", "temperature", "top_p", "max_output_tokens", "truncation") if k in obj
        }
        if isinstance(reasoning, dict) and (reasoning.get("effort") or reasoning.get("summary")):
            echo["reasoning"] = {"effort": reasoning.get("effort") or None, "summary": reasoning.get("summary") or None}
        job = self._job(
            api,
            model,
            stream=obj.get("stream") is True,
            think=None if not effort else effort != "none",
            limit=obj.get("max_output_tokens"),
            prompt=[obj.get("instructions", ""), obj.get("input", "")],
            echo=echo,
        )
        if isinstance(job, web.Response):
            return job
        return await self._run(request, job)

    async def anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        api = "anthropic"
        obj = await self._body(request, api)
        if isinstance(obj, web.Response):
            return obj
        model = str(obj.get("model") or "")
        if not model:
            return error_response(api, 400, "model is required", from_middleware=True)
        max_tokens = obj.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
            return error_response(api, 400, "max_tokens is required and must be positive", from_middleware=True)
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            return error_response(api, 400, "messages is required", from_middleware=True)
        thinking = obj.get("thinking") if isinstance(obj.get("thinking"), dict) else {}
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        job = self._job(
            api,
            model,
            stream=obj.get("stream") is True,
            think={"enabled": True, "disabled": False}.get(str(kind)),
            limit=max_tokens,
            prompt=[obj.get("system", ""), messages],
        )
        if isinstance(job, web.Response):
            return job
        return await self._run(request, job)

    async def transcriptions(self, request: web.Request) -> web.StreamResponse:
        api = "transcription"
        if request.content_type != "multipart/form-data":
            message = "failed to parse multipart form: request Content-Type isn't multipart/form-data"
            return error_response(api, 400, message, from_middleware=True)
        try:
            form = await request.post()
        except ValueError as exc:
            return error_response(api, 400, f"failed to parse multipart form: {exc}", from_middleware=True)
        model = str(form.get("model") or "")
        if not model:
            return error_response(api, 400, "model is required", from_middleware=True)
        upload = form.get("file")
        audio = getattr(upload, "file", None)
        if audio is None:
            return error_response(api, 400, "file is required: http: no such file", from_middleware=True)
        data = audio.read()
        if not data:
            return error_response(api, 400, "audio file is empty", from_middleware=True)
        job = self._job(
            api,
            model,
            stream=True,  # the chat request behind it streams; the answer is written once it is done
            think=None,
            limit=None,
            prompt="Transcribe the audio exactly as spoken." + str(form.get("prompt") or ""),
            response_format=str(form.get("response_format") or ""),
        )
        if isinstance(job, web.Response):
            return job
        return await self._run(request, job)

    # the answer itself
    async def _run(self, request: web.Request, job: _Job) -> web.StreamResponse:
        fault = self._fault(job.api)
        if fault is not None:
            return fault
        answering = False
        try:
            async with self.queue.slot():
                answering = True
                return await self._answer(request, job)
        except _Busy:
            return error_response(job.api, 503, ERROR_BUSY)
        except asyncio.CancelledError:
            if not answering:
                # the client went away while its request waited: Ollama answers 499 {"error":"request canceled"}
                # (to a closed connection)
                self.stats.count_status(499)
            raise

    async def _answer(self, request: web.Request, job: _Job) -> web.StreamResponse:
        self._load(job.model, job.keep_alive, job.num_ctx)
        first_delay, interval = self._pacing()
        t0 = time.perf_counter_ns()
        pieces = [(t, "") for t in _tokens(REASONING, job.thinking_tokens)]
        pieces += [("", c) for c in _tokens(ANSWER, job.content_tokens)]
        writer = WRITERS[job.api](job, self._ids)
        if not job.stream:
            await asyncio.sleep(first_delay + interval * len(pieces))
            if self.scenario == "mid_stream_error":
                return error_response(job.api, 500, ERROR_MID_STREAM)  # not streamed: the error is the answer
            self.stats.tokens_generated += len(pieces)
            body = writer.whole(self._final(job, pieces, t0, interval)).encode()
            if self.scenario == "malformed_json":
                body = body[: len(body) // 2]
            if self.scenario == "truncated_stream":
                return await self._cut(request, body, writer.whole_type)
            return web.Response(body=body, headers={"Content-Type": writer.whole_type})
        headers = {"Content-Type": writer.stream_type}
        if job.api in ("responses", "anthropic"):
            headers["Cache-Control"] = "no-cache"
        resp = web.StreamResponse(headers=headers)
        self.stats.streams_started += 1
        half = len(pieces) // 2
        try:
            clock = _TokenClock(first_delay, interval)
            await clock.until(0)  # Ollama sends its headers with the first chunk
            await resp.prepare(request)
            for i, (thinking, content) in enumerate(pieces):
                if self.scenario == "truncated_stream" and i >= half:
                    self._abort(request)
                    return resp
                if self.scenario == "mid_stream_error" and i >= half:
                    await self._emit(resp, writer, writer.error(ERROR_MID_STREAM))
                    await resp.write_eof()
                    self.stats.streams_failed += 1
                    return resp
                await self._emit(resp, writer, writer.piece(thinking, content))
                self.stats.tokens_generated += 1
                await clock.until(i + 1)
            await self._emit(resp, writer, writer.final(self._final(job, pieces, t0, interval)))
            await resp.write_eof()
        except (asyncio.CancelledError, _Cancelled):
            self.stats.streams_cancelled += 1
            raise
        self.stats.streams_completed += 1
        return resp

    async def _emit(self, resp: web.StreamResponse, writer: _Writer, frames: list[Frame]) -> None:
        for event, text in frames:
            payload = text[: len(text) // 2] if self.scenario == "malformed_json" and text != "[DONE]" else text
            try:
                await resp.write(writer.frame(event, payload))
            except ConnectionResetError as exc:
                raise _Cancelled from exc

    def _final(self, job: _Job, pieces: list[tuple[str, str]], t0: int, interval: float) -> _Final:
        n = len(pieces)
        load_ns = int(self.load_duration * 1e9)
        prompt_ns = 1_000_000 + job.prompt_tokens * 50_000
        eval_ns = max(1, int(n * interval * 1e9))
        total_ns = max(time.perf_counter_ns() - t0, load_ns + prompt_ns + eval_ns)
        context = list(range(1, min(job.prompt_tokens + n, 64) + 1)) if job.api == "generate" else []
        return _Final(
            model=job.model,
            done_reason="length" if job.limited else "stop",
            total_ns=total_ns,
            load_ns=load_ns,
            prompt_tokens=job.prompt_tokens,
            prompt_ns=prompt_ns,
            eval_count=n,
            eval_ns=eval_ns,
            thinking="".join(t for t, _c in pieces),
            content="".join(c for _t, c in pieces),
            context=context,
        )

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

    # embeddings
    async def embed(self, request: web.Request) -> web.StreamResponse:
        api = "embed"
        obj = await self._body(request, api)
        if isinstance(obj, web.Response):
            return obj
        model = obj.get("model")
        if not isinstance(model, str) or not model:
            return error_response(api, 400, "model is required")
        missing = self._unknown_model(api, model)
        if missing is not None:
            return missing
        inputs = obj.get("input", obj.get("prompt", ""))
        items = inputs if isinstance(inputs, list) else [inputs]
        return await self._embeddings(request, api, model, items)

    async def openai_embeddings(self, request: web.Request) -> web.StreamResponse:
        api = "openai_embeddings"
        obj = await self._body(request, api)
        if isinstance(obj, web.Response):
            return obj
        inputs = obj.get("input")
        if inputs == "":
            inputs = [""]
        if inputs is None or inputs == []:
            return error_response(api, 400, "invalid input", from_middleware=True)
        model = str(obj.get("model") or "")
        missing = self._unknown_model(api, model)
        if missing is not None:
            return missing
        return await self._embeddings(request, api, model, inputs if isinstance(inputs, list) else [inputs])

    async def _embeddings(self, request: web.Request, api: str, model: str, items: list[Any]) -> web.StreamResponse:
        fault = self._fault(api)
        if fault is not None:
            return fault
        try:
            async with self.queue.slot():
                await asyncio.sleep(self.first_token_delay)
        except _Busy:
            return error_response(api, 503, ERROR_BUSY)
        self._load(model, None, 0)
        sample = load_sample("embed.json")["embeddings"][0]
        prompt_tokens = sum(_estimate_tokens(i) for i in items)
        ctype = "application/json; charset=utf-8"
        if api == "openai_embeddings":
            data = [{"object": "embedding", "embedding": sample, "index": i} for i in range(len(items))]
            usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
            text = go_json({"object": "list", "data": data, "model": model, "usage": usage}) + "\n"
            ctype = "application/json"
        elif request.path == "/api/embeddings":
            text = go_json({"embedding": sample})
        else:
            out = {
                "model": model,
                "embeddings": [sample for _ in items],
                "total_duration": int(self.first_token_delay * 1e9) + 1_000_000,
                "load_duration": int(self.load_duration * 1e9),
                "prompt_eval_count": prompt_tokens,
            }
            text = go_json(out)
        body = text.encode()
        if self.scenario == "malformed_json":
            body = body[: len(body) // 2]
        if self.scenario == "truncated_stream":
            return await self._cut(request, body, ctype)
        return web.Response(body=body, headers={"Content-Type": ctype})


def _gin_json(obj: Any) -> web.Response:
    """gin's c.JSON: no trailing newline, ``application/json; charset=utf-8``."""
    return web.Response(body=go_json(obj).encode(), headers={"Content-Type": "application/json; charset=utf-8"})


def _encoder_json(obj: Any) -> web.Response:
    """What the OpenAI middleware writes: json.Encoder (a trailing newline), ``application/json``."""
    return web.Response(body=(go_json(obj) + "\n").encode(), headers={"Content-Type": "application/json"})


def _unix(rfc3339: str) -> int:
    head, _dot, rest = rfc3339.partition(".")
    zone = rest.lstrip("0123456789") if _dot else ""
    return int(datetime.fromisoformat((head + zone).replace("Z", "+00:00")).timestamp())


# --- command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llm-monitor-testkit simulate ollama",
        description=f"Simulated Ollama server, modelled on Ollama {UPSTREAM_VERSION} (explicit simulation: answers "
        "are not real).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--listen", default="127.0.0.1:11434", metavar="HOST:PORT", help="address to listen on")
    p.add_argument("--scenario", default="normal", choices=SCENARIOS)
    p.add_argument("--tokens", type=int, default=24, help="tokens per answer")
    p.add_argument("--thinking-tokens", type=int, default=12, help="reasoning tokens of a thinking model's answer")
    p.add_argument("--token-interval", type=float, default=0.02, help="seconds between streamed tokens")
    p.add_argument("--first-token-delay", type=float, default=0.05, help="seconds before the first token")
    p.add_argument("--slow-delay", type=float, default=5.0, help="first-token delay of the 'slow' scenario")
    p.add_argument("--spike-delay", type=float, default=1.0, help="first-token delay of latency spikes")
    p.add_argument(
        "--num-parallel", type=int, default=0, help="answers generated at once, like OLLAMA_NUM_PARALLEL (0: no limit)"
    )
    p.add_argument(
        "--max-queue", type=int, default=512, help="requests that may wait beyond those (OLLAMA_MAX_QUEUE); then 503"
    )
    p.add_argument("--keep-alive", type=float, default=300.0, help="seconds a model stays loaded (OLLAMA_KEEP_ALIVE)")
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
    if ns.tokens < 1 or ns.thinking_tokens < 0 or ns.token_interval < 0 or ns.first_token_delay < 0:
        print("llm-monitor-testkit simulate ollama: --tokens must be >= 1 and delays >= 0", file=sys.stderr)
        return 2
    if ns.num_parallel < 0 or ns.max_queue < 0 or ns.keep_alive < 0:
        print("llm-monitor-testkit simulate ollama: --num-parallel, --max-queue, --keep-alive >= 0", file=sys.stderr)
        return 2
    sim = OllamaSimulator(
        ns.scenario,
        tokens=ns.tokens,
        thinking_tokens=ns.thinking_tokens,
        token_interval=ns.token_interval,
        first_token_delay=ns.first_token_delay,
        slow_delay=ns.slow_delay,
        spike_delay=ns.spike_delay,
        num_parallel=ns.num_parallel,
        max_queue=ns.max_queue,
        keep_alive=ns.keep_alive,
    )
    return asyncio.run(_serve(sim, host or "0.0.0.0", port, ns.listen))


async def _serve(sim: OllamaSimulator, host: str, port: int, display: str) -> int:
    try:
        bound = await sim.start(host, port)
    except OSError as exc:
        log.error("cannot listen on %s: %s", display, exc.strerror or exc)
        return 1
    log.warning(
        "SIMULATED Ollama %s (scenario %s) listening on %s:%d: answers are not real",
        UPSTREAM_VERSION,
        sim.scenario,
        host,
        bound,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await sim.close()
    return 0

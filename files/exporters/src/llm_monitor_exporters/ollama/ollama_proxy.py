"""Transparent Ollama monitoring proxy (``llm-monitor-exporter ollama_proxy``).

Clients talk to the proxy (default ``127.0.0.1:11435``) exactly as to Ollama; every request is
forwarded to ``upstream_url`` (default ``http://127.0.0.1:11434``) over a pooled keep-alive connection
and the answer is relayed chunk by chunk as it arrives (nothing is buffered: a streamed token reaches
the client as soon as Ollama sends it). The request body is forwarded byte for byte; it is parsed only
to learn ``model`` and ``stream``. Ollama's generate/chat stream unless the body says
``"stream": false``, so a missing ``stream`` counts as streaming.

Per request, the proxy records the metrics of :mod:`llm_monitor_exporters.ollama.ollama_metrics`; it reads the
statistics of the final chunk (``done: true``; ``usage`` of the OpenAI, Responses and Anthropic formats) or of the
non-streamed answer as it passes through. Checked against Ollama at commit fb30760 (v0.33.0-rc2, 2026-08-21):
time to first token counts a thinking model's reasoning (native ``thinking``, OpenAI ``delta.reasoning``, the
Responses and Anthropic reasoning events), time to first content the answer after it; a 503 whose body is Ollama's
"server busy" (a full queue) is ``upstream_busy``; an error inside a stream that began with 200 (Ollama's
``{"error": ...}`` line; an event stream that ends cleanly without its closing event) is ``upstream_stream_error``,
not a truncated answer; Ollama's own 499 ``request canceled`` is a client disconnect.
Loaded and installed models come from a background poll of ``/api/ps``, ``/api/tags`` and
``/api/version`` (never on the scrape path). Metrics are served on their own port (default ``:9439``)
with the exporter-toolkit web config (TLS, basic auth) like every exporter of this package.

Prompts and answers are never logged unless ``log_bodies: true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import logging
import re
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from yarl import URL

from llm_monitor_exporters import __version__
from llm_monitor_exporters.core.config import ConfigError, opt
from llm_monitor_exporters.core.httpserver import ListenError, parse_listen_address
from llm_monitor_exporters.core.selfmetrics import SelfMetrics, snapshot_age_text
from llm_monitor_exporters.core.webconfig import WebConfig
from llm_monitor_exporters.ollama.ollama_metrics import (
    GENERATION_ENDPOINTS,
    NO_MODEL_ENDPOINTS,
    RETRIEVE_MODEL_ENDPOINT,
    RETRIEVE_MODEL_PREFIX,
    SSE_ENDPOINTS,
    STREAM_BY_DEFAULT,
    InstalledModel,
    LoadedModel,
    OllamaMetrics,
    UpstreamState,
    normalise_endpoint,
)

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
    }
)
MAX_INSPECT_BYTES = 8 * 1024 * 1024  # non-streamed answers larger than this are relayed but not parsed
BUSY_PROBE_BYTES = 4096  # how much of a 503 answer is read to tell Ollama's "server busy" from other 503s
#: Ollama's full-queue message (server/sched.go ErrMaxQueue), in each API's error body
BUSY_MESSAGE = b"server busy, please try again"
TRANSCRIPTIONS = "openai_transcriptions"
MAX_LINE_BYTES = 1024 * 1024
BODY_LOG_LIMIT = 64 * 1024


@dataclasses.dataclass
class OllamaProxyConfig:
    """The ``ollama_proxy:`` section of the config file."""

    listen: str = opt("127.0.0.1:11435", help="host:port the proxy listens on for Ollama clients")
    upstream_url: str = opt("http://127.0.0.1:11434", help="base URL of the real Ollama server")
    max_models: int = opt(50, minimum=1, help="distinct model label values before new names become 'other'")
    log_bodies: bool = opt(False, help="log request and response bodies (prompts, answers): off by default")
    max_body_bytes: int = opt(32 * 1024 * 1024, minimum=1, help="largest request body accepted (else 413)")
    connect_timeout: float = opt(5.0, minimum=0.01, help="seconds to connect to Ollama (else 502)")
    upstream_timeout: float = opt(
        300.0,
        minimum=0,
        help="seconds Ollama may stay silent (headers or between "
        "chunks) before the proxy gives up (504 before headers); 0 disables",
    )
    max_connections: int = opt(256, minimum=1, help="upstream connection pool size (keep-alive)")
    poll_timeout: float = opt(5.0, minimum=0.05, help="timeout of each background poll request")


def validate(cfg: OllamaProxyConfig) -> None:
    """Checks once command-line flags are applied (they bypass the config file's type checks)."""
    if cfg.max_models < 1 or cfg.upstream_timeout < 0:
        raise ConfigError("ollama_proxy: max_models must be >= 1 and upstream_timeout >= 0")
    try:
        parse_listen_address(cfg.listen)
    except ListenError as exc:
        raise ConfigError(f"key 'ollama_proxy.listen': {exc}") from exc
    url = cfg.upstream_url
    if not (url.startswith(("http://", "https://"))) or len(url.split("://", 1)[1].strip("/")) == 0:
        raise ConfigError(f"key 'ollama_proxy.upstream_url': expected http(s)://HOST:PORT, got {url!r}")


# --- response inspection ---------------------------------------------------------------------------
#: the final line of an Ollama stream: top-level ``"done": true`` (Go writes ``"done":true``; any JSON spacing matches).
#: Inside a JSON string a quote is escaped (``\\"``), so only a key can match; a nested ``done`` key (tool call
#: arguments) is a false candidate that the full parse of the line then rejects.
_FINAL_LINE = re.compile(rb'"done"\s*:\s*true')
#: the error line a failing Ollama writes into a stream that already answered 200 (``{"error":"..."}``); a nested
#: ``error`` key is a false candidate, rejected by the full parse
_ERROR_KEY = re.compile(rb'"error"\s*:')
#: a native chunk of a thinking model still reasoning, as Go writes it: thinking text, no answer text yet
_STILL_THINKING = re.compile(rb'"(?:response|content)":"",(?:"role":"assistant",)?"thinking":"')
#: Ollama's native streaming endpoints: NDJSON, one object per line, the statistics in the final line
_NDJSON_ENDPOINTS = frozenset({"generate", "chat"})
#: events of the Responses and Anthropic streams that carry generated tokens: reasoning, or the answer itself
_REASONING_EVENTS = frozenset({"response.reasoning_summary_text.delta", "response.reasoning_text.delta"})
_ANSWER_EVENTS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta"})
_ANTHROPIC_ANSWER_DELTAS = frozenset({"text_delta", "input_json_delta"})


class Inspector:
    """Watches the relayed answer (a copy of each chunk's view) to extract TTFT and final statistics.

    Ollama's native streams (generate, chat) are parsed only as far as the metrics need: lines are parsed as JSON
    until the first one with answer content (time to first token, then to first content; a thinking model's
    reasoning lines are recognised by a byte test), then only the final line (``"done": true``) and an error line
    (``{"error": ...}``) are, both found by a byte search, also when split across reads or arriving with other lines in
    one read; the lines in between are checked for their shape (``{...}``) only, so a line cut short still counts as
    malformed. Server-sent event streams (OpenAI chat and completions, Responses, Anthropic messages) are parsed line
    by line: an OpenAI stream's token count may come from counting its chunks. Non-streamed answers are parsed once
    at the end.
    """

    def __init__(
        self, metrics: OllamaMetrics, model: str, endpoint: str, streaming: bool, started: float, parse: bool
    ) -> None:
        self.metrics = metrics
        self.model = model
        self.endpoint = endpoint
        self.streaming = streaming
        self.started = started
        self.parse = parse
        self.first_token_seen = False  # a generated token: reasoning or answer
        self.first_content_seen = False  # the answer itself: text or a tool call
        self.final_seen = False
        self.malformed = False
        self.stream_error = False  # an error inside an answer that began with 200
        self.token_chunks = 0  # chunks carrying generated tokens (OpenAI streams without usage: the token count)
        self.stats_seen = False
        self._buf = bytearray()
        self._tail = b""  # NDJSON: the incomplete last line of what was fed so far
        self._overflow = False
        self._ndjson = streaming and endpoint in _NDJSON_ENDPOINTS

    def feed(self, chunk: bytes) -> None:
        if not self.parse or self._overflow:
            return
        if self._ndjson:
            self._feed_ndjson(chunk)
            return
        self._buf += chunk
        if not self.streaming:
            if len(self._buf) > MAX_INSPECT_BYTES:
                self._overflow = True
                self._buf.clear()
            return
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE_BYTES:
                    self._overflow = True
                    self._buf.clear()
                return
            line = bytes(self._buf[:nl]).strip()
            del self._buf[: nl + 1]
            if line:
                self._line(line)

    def _feed_ndjson(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        nl = data.rfind(b"\n")
        if nl < 0:
            self._tail = data
            if len(data) > MAX_LINE_BYTES:
                self._overflow = True
                self._tail = b""
            return
        lines, self._tail = data[:nl], data[nl + 1 :]
        # the common case, one read of whole lines in the middle of a stream: a few byte scans, no parsing
        if (
            self.first_content_seen
            and lines.startswith(b"{")
            and lines.endswith(b"}")
            and lines.count(b"\n") == lines.count(b"}\n{")
        ):
            final = b"true" in lines and _FINAL_LINE.search(lines) is not None  # the cheap test first
            error = b'"error"' in lines and _ERROR_KEY.search(lines) is not None
            if not final and not error:
                return
            for line in lines.split(b"\n"):
                if _FINAL_LINE.search(line) is not None or _ERROR_KEY.search(line) is not None:
                    self._line(line)
            return
        for raw in lines.split(b"\n"):
            line = raw.strip()
            if not line:
                continue
            if (
                self.first_token_seen
                and line[:1] == b"{"
                and line[-1:] == b"}"
                and not _FINAL_LINE.search(line)
                and not _ERROR_KEY.search(line)
                and (self.first_content_seen or _STILL_THINKING.search(line) is not None)
            ):
                continue  # a middle line of the right shape (reasoning or answer, already timed)
            self._line(line)

    def _line(self, line: bytes) -> None:
        if line.startswith(b"data:"):  # server-sent events
            line = line[5:].strip()
            if line == b"[DONE]":
                self.final_seen = True
                return
        elif line.startswith((b"event:", b"id:", b"retry:", b":")):
            return
        try:
            obj = json.loads(line)
        except ValueError:
            self.malformed = True
            return
        if not isinstance(obj, dict):
            self.malformed = True
            return
        if obj.get("error") is not None:
            # Ollama's {"error": ...} line (an Anthropic "error" event too): the answer failed after its 200
            self.stream_error = True
            return
        generated, content = _generated(obj)
        if generated:
            self.token_chunks += 1
            now = time.perf_counter() - self.started
            if not self.first_token_seen:
                self.first_token_seen = True
                self.metrics.first_token(self.model, self.endpoint, now)
            if content and not self.first_content_seen:
                self.first_content_seen = True
                self.metrics.first_content(self.model, self.endpoint, now)
        self._terminal(obj)

    def _terminal(self, obj: dict[str, Any]) -> None:
        """The statistics and the end of a stream, in each format."""
        kind = obj.get("type")
        if obj.get("done") is True:  # native
            self.final_seen = True
            self._stats(obj)
        elif kind == "response.completed":  # Responses
            self.final_seen = True
            response = obj.get("response")
            if isinstance(response, dict):
                self._stats(response)
        elif kind in ("response.failed", "response.incomplete"):
            self.final_seen = True
            self.stream_error = self.stream_error or kind == "response.failed"
        elif kind == "message_delta":  # Anthropic: the usage comes just before message_stop
            self._stats(obj)
        elif kind == "message_stop":
            self.final_seen = True
        elif isinstance(obj.get("usage"), dict) and not obj.get("choices"):
            # OpenAI: the usage chunk (choices: []); /v1/completions puts a zero usage on every other chunk
            self._stats(obj)

    def _stats(self, obj: dict[str, Any]) -> None:
        self.stats_seen = True
        self.metrics.final_stats(self.model, self.endpoint, obj)

    def finish(self) -> None:
        """End of a complete answer: parse a non-streamed body; streamed leftovers without newline."""
        if not self.parse or self._overflow:
            return
        if self.streaming:
            rest = (self._tail if self._ndjson else bytes(self._buf)).strip()
            self._buf.clear()
            self._tail = b""
            if rest:
                self._line(rest)
            if self.endpoint in ("openai_chat", "openai_completions") and not self.stats_seen and self.token_chunks:
                # OpenAI streams carry usage only with stream_options.include_usage; Ollama sends one token
                # per chunk (reasoning chunks included), so count those chunks instead
                self.metrics.final_stats(self.model, self.endpoint, {"eval_count": self.token_chunks})
            return
        body = bytes(self._buf)
        self._buf.clear()
        try:
            obj = json.loads(body)
        except ValueError:
            self.malformed = True
            return
        if isinstance(obj, dict):
            self.metrics.final_stats(self.model, self.endpoint, obj)
        else:
            self.malformed = True


def _generated(obj: dict[str, Any]) -> tuple[bool, bool]:
    """(carries generated tokens, carries answer content) for one chunk or event of any of Ollama's formats."""
    response = obj.get("response")  # a string in native generate chunks (an object in Responses events)
    if (isinstance(response, str) and response) or obj.get("tool_calls"):
        return True, True
    if obj.get("thinking"):
        return True, False
    msg = obj.get("message")
    if isinstance(msg, dict):  # native chat
        if msg.get("content") or msg.get("tool_calls"):
            return True, True
        return bool(msg.get("thinking")), False
    choices = obj.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):  # OpenAI chat / completions
        c = choices[0]
        delta = c.get("delta")
        if isinstance(delta, dict):
            if delta.get("content") or delta.get("tool_calls"):
                return True, True
            return bool(delta.get("reasoning") or delta.get("reasoning_content")), False
        return bool(c.get("text")), bool(c.get("text"))
    kind = obj.get("type")
    if kind in _ANSWER_EVENTS:  # Responses
        return True, True
    if kind in _REASONING_EVENTS:
        return True, False
    if kind == "content_block_delta":  # Anthropic
        delta = obj.get("delta")
        delta_type = delta.get("type") if isinstance(delta, dict) else None
        if delta_type in _ANTHROPIC_ANSWER_DELTAS:
            return True, True
        return delta_type == "thinking_delta", False
    return False, False


def inspect_request(body: bytes, endpoint: str) -> tuple[object, bool, bool]:
    """(model name or None, streaming, parsed) from a request body; never raises."""
    default_stream = endpoint in STREAM_BY_DEFAULT
    if not body:
        return None, default_stream, False
    try:
        obj = json.loads(body)
    except ValueError:
        return None, default_stream, False
    if not isinstance(obj, dict):
        return None, default_stream, False
    model = obj.get("model") or obj.get("name")
    stream = obj.get("stream")
    if endpoint in STREAM_BY_DEFAULT:
        streaming = stream is not False
    else:
        streaming = stream is True
    return model, streaming, True


def model_from_path(path: str) -> str:
    """The model of ``GET /v1/models/{model}``, as named in the path."""
    return unquote(path.split("?", 1)[0][len(RETRIEVE_MODEL_PREFIX) :].rstrip("/"))


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def multipart_field(body: bytes, content_type: str, name: str, limit: int = 1024) -> str | None:
    """The value of the form field ``name`` in a multipart/form-data body (``/v1/audio/transcriptions`` names its model
    there, next to the audio); None if there is none. Only part headers are searched, never the audio."""
    m = _BOUNDARY.search(content_type)
    if m is None:
        return None
    delimiter = b"--" + m.group(1).encode("latin-1")
    wanted = re.compile(rb';\s*name="' + re.escape(name.encode()) + rb'"(?:;|\s|$)', re.IGNORECASE)
    pos = body.find(delimiter)
    while pos >= 0:
        start = pos + len(delimiter)
        if body[start : start + 2] == b"--":  # the closing delimiter
            return None
        head_end = body.find(b"\r\n\r\n", start)
        if head_end < 0:
            return None
        end = body.find(b"\r\n" + delimiter, head_end)
        if wanted.search(body[start:head_end]):
            value = body[head_end + 4 : end if end >= 0 else head_end + 4 + limit]
            return value[:limit].decode("utf-8", "replace")
        pos = body.find(delimiter, head_end) if end < 0 else end + 2
    return None


# --- the proxy -------------------------------------------------------------------------------------
class BodyTooLarge(Exception):
    """The request body exceeds ``max_body_bytes``."""


class ClientGone(Exception):
    """Writing to the client failed: it disconnected."""


class OllamaProxy:
    """The proxy application, its upstream session, poller and metrics endpoint."""

    def __init__(
        self, cfg: OllamaProxyConfig, web_config: WebConfig, metrics_path: str = "/metrics", poll_interval: float = 5.0
    ) -> None:
        self.cfg = cfg
        self.web_config = web_config
        self._authenticator = web_config.authenticator()  # one instance: its cache of bcrypt checks persists
        self.metrics_path = metrics_path
        self.poll_interval = poll_interval
        self.upstream = cfg.upstream_url.rstrip("/")
        self.metrics = OllamaMetrics(cfg.max_models)
        self.self_metrics = SelfMetrics("ollama")
        self.self_metrics.declare_error_kinds(("exception", "poll"))
        self.self_metrics.upstreams["ollama"] = False
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_View(self))
        self._session: aiohttp.ClientSession | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._runners: list[web.AppRunner] = []
        self._connector: aiohttp.TCPConnector | None = None
        self.proxy_port = 0
        self.metrics_port = 0

    # lifecycle
    async def start(self, proxy_listen: str, metrics_listen: str) -> None:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(self._on_connection_create)
        trace.on_connection_reuseconn.append(self._on_connection_reuse)
        self._connector = connector = aiohttp.TCPConnector(
            limit=self.cfg.max_connections, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            trace_configs=[trace],
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=_NoCookies(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )
        proxy_app = web.Application(client_max_size=self.cfg.max_body_bytes + 1)
        proxy_app.router.add_route("*", "/{tail:.*}", self.handle)
        metrics_app = web.Application(middlewares=[self._metrics_guard])
        metrics_app.router.add_get(self.metrics_path, self.handle_metrics)
        metrics_app.router.add_get("/", self.handle_landing)
        self.proxy_port = await self._listen(proxy_app, proxy_listen, None, handler_cancellation=True)
        self.metrics_port = await self._listen(metrics_app, metrics_listen, self.web_config.ssl_context())
        self._poll_task = asyncio.create_task(self._poll_loop(), name="ollama-poll")

    async def _listen(self, app: web.Application, address: str, ssl_ctx: Any, **kwargs: Any) -> int:
        host, port = parse_listen_address(address)
        runner = web.AppRunner(app, access_log=None, **kwargs)
        await runner.setup()
        site = web.TCPSite(runner, host or None, port, ssl_context=ssl_ctx, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        self._runners.append(runner)
        server = site._server  # aiohttp has no public accessor for the bound port
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        for runner in reversed(self._runners):
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def upstream_connections(self) -> int:
        """Upstream TCP connections opened so far (llm_monitor_ollama_upstream_connections_opened_total)."""
        return self.metrics.connections_opened

    async def _on_connection_create(self, _s: aiohttp.ClientSession, _c: Any, _p: Any) -> None:
        self.metrics.connections_opened += 1

    async def _on_connection_reuse(self, _s: aiohttp.ClientSession, _c: Any, _p: Any) -> None:
        self.metrics.connections_reused += 1

    def _pool_state(self) -> tuple[int, int] | None:
        """(active, idle) open connections of the upstream pool; None if aiohttp's pool cannot be read.

        aiohttp has no public accessor: ``_acquired`` (connections carrying a request) and ``_conns`` (idle
        keep-alive connections by host) of the pinned aiohttp's TCPConnector; idle ones Ollama has closed but the
        pool has not dropped yet are not counted.
        """
        connector = self._connector
        acquired = getattr(connector, "_acquired", None)
        pooled = getattr(connector, "_conns", None)
        if not isinstance(acquired, (set, frozenset)) or not isinstance(pooled, dict):
            return None
        idle = 0
        for conns in pooled.values():
            for item in conns:
                proto = item[0]
                if proto.is_connected():
                    idle += 1
        return len(acquired), idle

    # request path
    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        endpoint = normalise_endpoint(request.path)
        m = self.metrics
        m.started(endpoint)
        model = "none" if endpoint in NO_MODEL_ENDPOINTS else "unknown"
        state = _State()
        try:
            return await self._proxy(request, endpoint, started, state)
        except asyncio.CancelledError:
            # the client went away (aiohttp cancels the handler): the upstream request is closed by the
            # context managers in _proxy; account for it here
            m.error("client_disconnect", endpoint)
            state.status = 499
            raise
        finally:
            m.finished(
                state.model or model, endpoint, state.status, time.perf_counter() - started, state.sent, state.received
            )

    async def _proxy(self, request: web.Request, endpoint: str, started: float, state: _State) -> web.StreamResponse:
        m = self.metrics
        try:
            body = await self._read_body(request)
        except BodyTooLarge:
            m.error("body_too_large")
            state.status = 413
            return _json_error(413, f"request body larger than {self.cfg.max_body_bytes} bytes")
        state.received = len(body)
        name, streaming, parsed = inspect_request(body, endpoint)
        if endpoint == RETRIEVE_MODEL_ENDPOINT:
            name, parsed = model_from_path(request.path), True
        elif endpoint == TRANSCRIPTIONS:
            # a multipart form (the audio and its fields), never JSON
            name, parsed = multipart_field(body, request.headers.get("Content-Type", ""), "model"), True
        if endpoint not in NO_MODEL_ENDPOINTS:
            # its own label only once Ollama confirms the model (see _relay): not for a 404 "model not found"
            state.name = name
            state.model = m.models.lookup(name)
            if body and not parsed and request.method in ("POST", "PUT", "DELETE"):
                m.error("bad_request")
        if self.cfg.log_bodies and body:
            log.info(
                "request %s %s body: %s", request.method, request.path, body[:BODY_LOG_LIMIT].decode("utf-8", "replace")
            )
        headers = _forward_headers(request.headers)
        target = request.raw_path if request.raw_path.startswith("/") else request.rel_url.path_qs
        url = URL(self.upstream + target, encoded=True)  # the request target as the client sent it
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.cfg.connect_timeout, sock_read=self.cfg.upstream_timeout or None
        )
        assert self._session is not None  # noqa: S101 - set in start()
        attempts = 2 if request.method in ("GET", "HEAD") else 1
        for attempt in range(attempts):
            try:
                upstream_cm = self._session.request(
                    request.method,
                    url,
                    data=body if body else None,
                    headers=headers,
                    allow_redirects=False,
                    timeout=timeout,
                    compress=False,
                )
                async with upstream_cm as upstream:
                    return await self._relay(request, upstream, endpoint, started, streaming, state)
            except aiohttp.ServerDisconnectedError as exc:
                if state.headers_sent:
                    return self._abort(request, "truncated_stream", state, exc)
                if attempt + 1 < attempts:
                    continue  # a pooled keep-alive connection closed by Ollama: retry idempotent requests once
                m.error("upstream_connect")
                state.status = 502
                return _json_error(502, f"upstream {self.upstream} closed the connection: {exc}")
            except (aiohttp.ClientConnectorError, aiohttp.ClientOSError, aiohttp.ConnectionTimeoutError) as exc:
                if state.headers_sent:
                    return self._abort(request, "truncated_stream", state, exc)
                m.error("upstream_connect")
                state.status = 502
                return _json_error(502, f"cannot connect to upstream {self.upstream}: {exc}")
            except (aiohttp.SocketTimeoutError, asyncio.TimeoutError) as exc:
                if state.headers_sent:
                    return self._abort(request, "upstream_timeout", state, exc)
                m.error("upstream_timeout")
                state.status = 504
                return _json_error(
                    504, f"upstream {self.upstream} did not answer within {self.cfg.upstream_timeout:g}s"
                )
            except aiohttp.ClientPayloadError as exc:
                if state.headers_sent:
                    return self._abort(request, "truncated_stream", state, exc)
                m.error("truncated_stream")
                state.status = 502
                return _json_error(502, f"upstream {self.upstream} sent an incomplete answer: {exc}")
            except ClientGone as exc:
                # writing to the client failed: it went away (the upstream request was closed)
                m.error("client_disconnect", endpoint)
                state.status = 499
                log.debug("client disconnected during %s: %s", request.path, exc.__cause__)
                return state.response or web.Response(status=499)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.cfg.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge
        if not request.body_exists:
            return b""
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        endpoint: str,
        started: float,
        streaming: bool,
        state: _State,
    ) -> web.StreamResponse:
        m = self.metrics
        status = upstream.status
        state.status = status
        if 200 <= status < 300 and state.model:
            state.model = m.models.admit(state.name)  # Ollama answered for this model: it exists
        # a 503 is told apart by its body (read below): Ollama's full queue, or another failure
        busy_probe: bytearray | None = bytearray() if status == 503 else None
        if status == 499:
            # Ollama saw the request cancelled ({"error":"request canceled"}): a client gone, not a bad request
            m.error("client_disconnect", endpoint)
        elif status >= 500 and busy_probe is None:
            m.error("upstream_5xx")
        elif 400 <= status < 500:
            m.error("upstream_4xx")
        resp = web.StreamResponse(status=status, reason=upstream.reason)
        for key, value in upstream.headers.items():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                resp.headers.add(key, value)
        if upstream.content_length is not None and "content-encoding" not in upstream.headers:
            resp.content_length = upstream.content_length
        encoded = upstream.headers.get("Content-Encoding", "identity").lower() != "identity"
        parse = (
            200 <= status < 300
            and not encoded
            and request.method != "HEAD"
            and (endpoint in GENERATION_ENDPOINTS or endpoint in ("embed", "embeddings", "openai_embeddings"))
        )
        ctype = upstream.headers.get("Content-Type", "")
        line_mode = streaming or "ndjson" in ctype or "event-stream" in ctype
        inspector = Inspector(m, state.model, endpoint, line_mode, started, parse)
        state.response = resp
        await resp.prepare(request)
        state.headers_sent = True
        log_bodies = self.cfg.log_bodies
        try:
            async for chunk in upstream.content.iter_any():
                inspector.feed(chunk)
                if busy_probe is not None and len(busy_probe) < BUSY_PROBE_BYTES:
                    busy_probe += chunk[: BUSY_PROBE_BYTES - len(busy_probe)]
                if log_bodies:
                    log.info("response %s chunk: %s", request.path, chunk[:BODY_LOG_LIMIT].decode("utf-8", "replace"))
                try:
                    await resp.write(chunk)
                except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
                    raise ClientGone from exc
                state.sent += len(chunk)
        except BaseException:
            upstream.close()  # cancel the upstream request: its connection is closed, not reused
            raise
        finally:
            if busy_probe is not None:
                m.error("upstream_busy" if BUSY_MESSAGE in busy_probe else "upstream_5xx")
        inspector.finish()
        if inspector.malformed:
            m.error("upstream_malformed")
        if inspector.stream_error:
            m.error("upstream_stream_error")
        elif (
            parse
            and line_mode
            and endpoint in GENERATION_ENDPOINTS
            and streaming
            and not inspector.final_seen
            and not inspector.malformed
        ):
            # a server-sent event stream that ends cleanly without its closing event is how Ollama ends one on an
            # error (its {"error": ...} chunk becomes an empty chunk there); a native stream says so in an error line
            m.error("upstream_stream_error" if endpoint in SSE_ENDPOINTS else "truncated_stream")
        elif endpoint == TRANSCRIPTIONS and 200 <= status < 300 and request.method != "HEAD" and not state.sent:
            m.error("upstream_stream_error")  # Ollama writes the text once generation is done: empty, it failed
        await resp.write_eof()
        return resp

    def _abort(self, request: web.Request, kind: str, state: _State, exc: BaseException) -> web.StreamResponse:
        """The answer broke after its headers went out: count it and cut the client connection too, so the
        client sees an incomplete answer rather than a clean end."""
        self.metrics.error(kind)
        log.warning("upstream answer for %s broke off (%s): %s", request.path, kind, exc)
        if request.transport is not None:
            request.transport.close()
        return state.response or web.Response(status=502)

    # metrics endpoint
    @web.middleware
    async def _metrics_guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        auth = self._authenticator
        if auth is not None:
            ok = await asyncio.get_running_loop().run_in_executor(
                None, auth.check_header, request.headers.get("Authorization")
            )
            if not ok:
                resp: web.StreamResponse = web.Response(
                    status=401, text="Unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="llm_monitor"'}
                )
                resp.headers.update(self.web_config.headers)
                return resp
        resp = await handler(request)
        resp.headers.update(self.web_config.headers)
        return resp

    def render(self) -> bytes:
        self.metrics.connections_open = self._pool_state()
        return generate_latest(self.registry) + snapshot_age_text("ollama", self._poll_age())

    def _poll_age(self) -> float:
        last = self.self_metrics.last_success
        return max(0.0, time.time() - last) if last else 0.0

    async def handle_metrics(self, request: web.Request) -> web.Response:
        body = self.render()
        headers = {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def handle_landing(self, _request: web.Request) -> web.Response:
        page = (
            f"<html><head><title>llm_monitor Ollama proxy</title></head><body><h1>llm_monitor Ollama proxy"
            f'</h1><p>version {__version__}, upstream {self.upstream}</p><p><a href="{self.metrics_path}">'
            "Metrics</a></p></body></html>\n"
        )
        return web.Response(text=page, content_type="text/html")

    # background poll of /api/ps, /api/tags, /api/version
    async def poll_once(self) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        assert self._session is not None  # noqa: S101
        timeout = aiohttp.ClientTimeout(total=self.cfg.poll_timeout)
        errors: dict[str, int] = {}
        ok = True
        state = UpstreamState(polled=True)
        try:
            ps, tags, version = await asyncio.gather(
                self._get_json("/api/ps", timeout),
                self._get_json("/api/tags", timeout),
                self._get_json("/api/version", timeout),
            )
            state.loaded = parse_ps(ps)
            state.installed = parse_tags(tags)
            self.metrics.models.listed([m.name for m in state.loaded] + [i.name for i in state.installed])
            state.version = str(version.get("version", "")) if isinstance(version, dict) else ""
            state.up = True
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            log.debug("poll of %s failed: %s", self.upstream, exc)
            errors["poll"] = 1
            ok = False
            prev = self.metrics.upstream
            state.loaded, state.installed, state.version = prev.loaded, prev.installed, prev.version
        self.metrics.upstream = state
        self.self_metrics.record_cycle(
            duration=time.perf_counter() - t0,
            cpu=time.process_time() - c0,
            ok=ok,
            finished_at=time.time(),
            upstreams={"ollama": ok},
            errors=errors,
        )

    async def _get_json(self, path: str, timeout: aiohttp.ClientTimeout) -> Any:
        assert self._session is not None  # noqa: S101
        async with self._session.get(self.upstream + path, timeout=timeout) as resp:
            resp.raise_for_status()
            return json.loads(await resp.read())

    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:
                log.exception("poll of %s failed", self.upstream)
                self.self_metrics.record_cycle(
                    duration=0.0,
                    cpu=0.0,
                    ok=False,
                    finished_at=time.time(),
                    upstreams={"ollama": False},
                    errors={"exception": 1},
                )
            await asyncio.sleep(self.poll_interval)


@dataclasses.dataclass
class _State:
    model: str = ""  # the label; "" for endpoints without a model
    name: object = None  # the model named in the request body, as sent
    status: int = 0
    sent: int = 0
    received: int = 0
    headers_sent: bool = False
    response: web.StreamResponse | None = None


class _View:
    def __init__(self, proxy: OllamaProxy) -> None:
        self._proxy = proxy

    def collect(self) -> list[Metric]:
        return [*self._proxy.metrics.families(), *self._proxy.self_metrics.families()]


class _NoCookies(aiohttp.DummyCookieJar):
    """A proxy must not keep cookies between clients."""


def _forward_headers(headers: Any) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        low = key.lower()
        if low in HOP_BY_HOP or low in ("host", "content-length"):
            continue
        out.add(key, value)
    return out


def _json_error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=json.dumps({"error": message}).encode(), content_type="application/json")


def _timestamp(value: object) -> float:
    """RFC 3339 with nanoseconds (Go's format) -> unix seconds; 0 when unparsable."""
    if not isinstance(value, str) or not value:
        return 0.0
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # trim fractional seconds to microseconds
        frac = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            frac += rest[i]
            i += 1
        text = f"{head}.{frac[:6].ljust(6, '0')}{rest[i:]}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def parse_ps(data: Any) -> list[LoadedModel]:
    out: list[LoadedModel] = []
    for item in _models(data):
        if not isinstance(item, dict):
            continue
        out.append(
            LoadedModel(
                name=str(item.get("name") or item.get("model") or ""),
                size=_int(item.get("size")),
                size_vram=_int(item.get("size_vram")),
                expires_at=_timestamp(item.get("expires_at")),
                context_length=_int(item.get("context_length")),
            )
        )
    return out


def parse_tags(data: Any) -> list[InstalledModel]:
    out: list[InstalledModel] = []
    for item in _models(data):
        if not isinstance(item, dict):
            continue
        raw = item.get("details")
        details: dict[str, Any] = raw if isinstance(raw, dict) else {}
        out.append(
            InstalledModel(
                name=str(item.get("name") or item.get("model") or ""),
                size=_int(item.get("size")),
                family=str(details.get("family") or ""),
                parameter_size=str(details.get("parameter_size") or ""),
                quantization=str(details.get("quantization_level") or ""),
                format=str(details.get("format") or ""),
            )
        )
    return out


def _models(data: Any) -> list[Any]:
    models = data.get("models") if isinstance(data, dict) else None
    return models if isinstance(models, list) else []


def _int(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


# --- process entry point (called by cli.py) --------------------------------------------------------
def run(
    cfg: OllamaProxyConfig, web_config: WebConfig, metrics_listen: str, metrics_path: str, poll_interval: float
) -> int:
    """Serve until SIGTERM/SIGINT. Returns the exit code (0 normal, 1 startup error)."""
    return asyncio.run(_serve(cfg, web_config, metrics_listen, metrics_path, poll_interval))


async def _serve(
    cfg: OllamaProxyConfig, web_config: WebConfig, metrics_listen: str, metrics_path: str, poll_interval: float
) -> int:
    proxy = OllamaProxy(cfg, web_config, metrics_path, poll_interval)
    try:
        await proxy.start(cfg.listen, metrics_listen)
    except (ListenError, ConfigError) as exc:
        log.error("%s", exc)
        await proxy.close()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "ollama proxy %s listening on %s -> %s; metrics on %s%s (%s)%s",
        __version__,
        cfg.listen,
        cfg.upstream_url,
        metrics_listen,
        metrics_path,
        "https" if web_config.tls else "http",
        "",
    )
    if cfg.log_bodies:
        log.warning("log_bodies is on: prompts and answers are written to the log")
    await stop.wait()
    log.info("ollama proxy shutting down")
    await proxy.close()
    return 0

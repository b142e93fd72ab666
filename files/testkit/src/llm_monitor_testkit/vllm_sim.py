"""SIMULATED vLLM OpenAI-compatible server (test and demo use only; values are not real).

Serves ``/metrics`` in vLLM's text format (multiprocess mode: labels sorted, ``engine="0"``,
no ``_created`` series), ``/health``, ``/v1/models`` (with ``max_model_len``), and
``/v1/chat/completions`` + ``/v1/completions`` (streaming SSE and not). Real requests move the
counters and histograms; a scenario adds background behaviour that evolves with time:

- ``normal``: a few running requests, no queue, KV cache 20-40 %
- ``queue_buildup``: running saturates at ``max_num_seqs``, waiting grows by 2/s, TTFT grows
- ``kv_cache_full``: KV cache usage climbs to 0.99, preemptions count up
- ``latency_spike``: end-to-end latency and TTFT ~10x
- ``upstream_down``: ``/health`` and ``/metrics`` answer 503, completions close the connection
- ``error_burst``: requests end with ``finished_reason="abort"``; half of the completions answer 500
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCENARIOS = ("normal", "queue_buildup", "kv_cache_full", "latency_spike", "upstream_down", "error_burst")

TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
E2E_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
TOKEN_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
REASONS = ("stop", "length", "abort", "error")


@dataclass
class _Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
        self.total += value
        self.n += 1


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value))


class SimulatedVllm:
    """State of one simulated vLLM engine; thread-safe."""

    def __init__(
        self,
        model: str = "simulated/llama-3-8b-instruct",
        scenario: str = "normal",
        max_model_len: int = 8192,
        max_num_seqs: int = 16,
        clock: Any = time.monotonic,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        self.model = model
        self.scenario = scenario
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_tick = self._started
        self.running = 0.0
        self.waiting = 0.0
        self.kv = 0.0
        self.in_flight = 0
        self.prompt_tokens = 0.0
        self.generation_tokens = 0.0
        self.preemptions = 0.0
        self.prefix_queries = 0.0
        self.prefix_hits = 0.0
        self.success = dict.fromkeys(REASONS, 0.0)
        self.hist = {
            "ttft": _Histogram(
                "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS
            ),
            "itl": _Histogram(
                "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS
            ),
            "e2e": _Histogram(
                "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", E2E_BUCKETS
            ),
            "queue": _Histogram(
                "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", E2E_BUCKETS
            ),
            "prefill": _Histogram(
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
                E2E_BUCKETS,
            ),
            "decode": _Histogram(
                "vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", E2E_BUCKETS
            ),
            "prompt": _Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", TOKEN_BUCKETS),
            "gen": _Histogram(
                "vllm:request_generation_tokens", "Number of generation tokens processed.", TOKEN_BUCKETS
            ),
        }

    @property
    def down(self) -> bool:
        return self.scenario == "upstream_down"

    def set_scenario(self, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        with self._lock:
            self.scenario = scenario

    def _latency_factor(self) -> float:
        if self.scenario == "latency_spike":
            return 10.0
        if self.scenario == "queue_buildup":
            return 1.0 + self.waiting / 4
        return 1.0

    def tick(self) -> None:
        """Advance the background behaviour to now (called before every /metrics render)."""
        with self._lock:
            now = self._clock()
            dt, self._last_tick = max(0.0, now - self._last_tick), now
            t = now - self._started
            s = self.scenario
            if s == "queue_buildup":
                self.running = float(self.max_num_seqs)
                self.waiting += 2.0 * dt
                self.kv = min(0.95, 0.5 + 0.01 * self.waiting)
            elif s == "kv_cache_full":
                self.running = float(self.max_num_seqs)
                self.kv = min(0.99, self.kv + 0.2 * dt + 0.01)
                self.waiting = 3.0
                self.preemptions += 1.5 * dt
            else:
                self.running = float(self.in_flight + 2 + int(2 * (1 + math.sin(t / 7))))
                self.waiting = 0.0
                self.kv = 0.2 + 0.1 * (1 + math.sin(t / 11))
            # background traffic: one synthetic request per second
            for _ in range(int(dt) or (1 if dt > 0.5 else 0)):
                self._record(prompt=120, generated=64, base_latency=0.8)

    def _record(self, prompt: int, generated: int, base_latency: float, reason: str | None = None) -> None:
        f = self._latency_factor()
        ttft = 0.05 * f
        itl = 0.012 * f
        e2e = max(base_latency, ttft + itl * generated) * f
        self.prompt_tokens += prompt
        self.generation_tokens += generated
        self.prefix_queries += prompt
        self.prefix_hits += prompt // 2
        if reason is None:
            reason = "abort" if self.scenario == "error_burst" else ("length" if generated >= 256 else "stop")
        self.success[reason] += 1
        h = self.hist
        h["ttft"].observe(ttft)
        for _ in range(min(generated, 32)):
            h["itl"].observe(itl)
        h["e2e"].observe(e2e)
        h["queue"].observe(0.01 * f * (1 + self.waiting))
        h["prefill"].observe(ttft * 0.8)
        h["decode"].observe(max(0.0, e2e - ttft))
        h["prompt"].observe(prompt)
        h["gen"].observe(generated)

    def record_request(self, prompt: int, generated: int, seconds: float, reason: str) -> None:
        with self._lock:
            self._record(prompt, generated, seconds, reason)

    def render_metrics(self) -> bytes:
        self.tick()
        m = self.model.replace("\\", "\\\\").replace('"', '\\"')
        base = f'engine="0",model_name="{m}"'
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            for name, kind, text, value in (
                ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", self.running),
                ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", self.waiting),
                ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", self.kv),
                (
                    "vllm:prefix_cache_queries_total",
                    "counter",
                    "Prefix cache queries, in terms of number of queried tokens.",
                    self.prefix_queries,
                ),
                (
                    "vllm:prefix_cache_hits_total",
                    "counter",
                    "Prefix cache hits, in terms of number of cached tokens.",
                    self.prefix_hits,
                ),
                (
                    "vllm:num_preemptions_total",
                    "counter",
                    "Cumulative number of preemption from the engine.",
                    math.floor(self.preemptions),
                ),
                ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", self.prompt_tokens),
                (
                    "vllm:generation_tokens_total",
                    "counter",
                    "Number of generation tokens processed.",
                    self.generation_tokens,
                ),
            ):
                head(name, kind, text)
                out.append(f"{name}{{{base}}} {_fmt(value)}")
            head("vllm:request_success_total", "counter", "Count of successfully processed requests.")
            for reason in REASONS:
                out.append(
                    f'vllm:request_success_total{{engine="0",finished_reason="{reason}",model_name="{m}"}} '
                    f"{_fmt(self.success[reason])}"
                )
            for h in self.hist.values():
                head(h.name, "histogram", h.help)
                for b, c in zip(h.buckets, h.counts, strict=True):
                    out.append(f'{h.name}_bucket{{engine="0",le="{_fmt(b)}",model_name="{m}"}} {_fmt(c)}')
                out.append(f'{h.name}_bucket{{engine="0",le="+Inf",model_name="{m}"}} {_fmt(h.n)}')
                out.append(f"{h.name}_sum{{{base}}} {_fmt(h.total)}")
                out.append(f"{h.name}_count{{{base}}} {_fmt(h.n)}")
            head("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig")
            out.append(
                'vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",'
                'engine="0",gpu_memory_utilization="0.9",num_gpu_blocks="27000"} 1.0'
            )
        return ("\n".join(out) + "\n").encode()

    def models_document(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.model,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "vllm",
                    "root": self.model,
                    "parent": None,
                    "max_model_len": self.max_model_len,
                    "permission": [],
                }
            ],
        }


class _Handler(BaseHTTPRequestHandler):
    server: SimulatedVllmServer
    protocol_version = "HTTP/1.1"
    server_version = "simulated-vllm"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        sim = self.server.sim
        path = self.path.split("?", 1)[0]
        if path in ("/health", "/metrics") and sim.down:
            self._send(503, b'{"detail":"simulated upstream_down"}')
        elif path == "/health":
            self._send(200, b"")
        elif path == "/metrics":
            self._send(200, sim.render_metrics(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/v1/models":
            self._send(200, json.dumps(sim.models_document()).encode())
        else:
            self._send(404, b'{"detail":"Not Found"}')

    def do_POST(self) -> None:
        sim = self.server.sim
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 1 << 20)) if length else b""
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self._send(404, b'{"detail":"Not Found"}')
            return
        if sim.down:
            self.close_connection = True
            self.connection.close()
            return
        try:
            req = json.loads(raw or b"{}")
            if not isinstance(req, dict):
                raise TypeError("body must be an object")
        except (ValueError, TypeError) as exc:
            self._send(400, json.dumps({"object": "error", "message": f"invalid JSON body: {exc}"}).encode())
            return
        if sim.scenario == "error_burst" and uuid.uuid4().int % 2 == 0:
            sim.record_request(0, 0, 0.01, "error")
            self._send(500, b'{"object":"error","message":"simulated error_burst","type":"InternalServerError"}')
            return
        self._complete(sim, path == "/v1/chat/completions", req)

    def _complete(self, sim: SimulatedVllm, chat: bool, req: dict[str, Any]) -> None:
        t0 = time.monotonic()
        if chat:
            messages = req.get("messages") or []
            text = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        else:
            text = str(req.get("prompt", ""))
        prompt_tokens = max(1, len(text.split()))
        max_tokens = int(req.get("max_tokens") or 16)
        n = max(1, min(max_tokens, 16))
        words = [f"tok{i}" for i in range(n)]
        reason = "length" if max_tokens <= 16 else "stop"
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        sim.in_flight += 1
        try:
            if req.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for i, w in enumerate(words):
                    last = i == n - 1
                    choice: dict[str, Any] = {"index": 0, "finish_reason": reason if last else None}
                    if chat:
                        choice["delta"] = {"content": w + " "} if i else {"role": "assistant", "content": w + " "}
                    else:
                        choice["text"] = w + " "
                    chunk = {
                        "id": rid,
                        "object": obj + (".chunk" if chat else ""),
                        "created": created,
                        "model": sim.model,
                        "choices": [choice],
                    }
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                    time.sleep(0.002)
                self.wfile.write(b"data: [DONE]\n\n")
            else:
                content = " ".join(words)
                choice = {"index": 0, "finish_reason": reason}
                if chat:
                    choice["message"] = {"role": "assistant", "content": content}
                else:
                    choice["text"] = content
                body = {
                    "id": rid,
                    "object": obj,
                    "created": created,
                    "model": sim.model,
                    "choices": [choice],
                    "usage": usage,
                }
                self._send(200, json.dumps(body).encode())
        finally:
            sim.in_flight -= 1
            sim.record_request(prompt_tokens, n, time.monotonic() - t0, reason)


class SimulatedVllmServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimulatedVllm) -> None:
        self.sim = sim
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

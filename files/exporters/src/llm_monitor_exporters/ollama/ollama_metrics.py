"""Metrics of the Ollama monitoring proxy (``llm_monitor_ollama_*``): label normalisation and storage.

Everything here is plain Python state owned by one :class:`OllamaMetrics` instance (no prometheus_client
global registry). The proxy runs on one asyncio event loop, so updates need no locks; rendering happens
on the same loop when ``/metrics`` is scraped.

Label cardinality is bounded by construction:

- ``endpoint`` is one of :data:`ENDPOINTS` (never the raw path; ``/v1/models/{model}`` is one value);
- ``model`` is the request's model name once Ollama has confirmed that model exists — it answered 2xx for it, or
  listed it (``/api/ps``, ``/api/tags``; an untagged name counts as listed when its ``:latest`` form is) — for the
  first ``max_models`` such names; ``other`` for every other name (not confirmed yet, e.g. 404 "model not found",
  or the budget is full), so requests for models that do not exist never use up the budget;
  ``unknown`` when the body is not JSON or names no model, ``none`` for endpoints without a model;
- ``status`` is the HTTP status code sent to the client (``499`` when the client went away first, or Ollama's own
  499 ``request canceled``), the same value on ``requests_total`` and ``request_duration_seconds``;
- ``kind`` is one of :data:`ERROR_KINDS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

PREFIX = "llm_monitor_ollama_"

#: normalised endpoint names, by (method-independent) path
ENDPOINT_PATHS: dict[str, str] = {
    "/api/generate": "generate",
    "/api/chat": "chat",
    "/api/embed": "embed",
    "/api/embeddings": "embeddings",
    "/api/tags": "tags",
    "/api/ps": "ps",
    "/api/show": "show",
    "/api/pull": "pull",
    "/api/push": "push",
    "/api/create": "create",
    "/api/copy": "copy",
    "/api/delete": "delete",
    "/api/version": "version",
    "/api/status": "status",
    "/v1/chat/completions": "openai_chat",
    "/v1/completions": "openai_completions",
    "/v1/embeddings": "openai_embeddings",
    "/v1/models": "openai_models",
    "/v1/responses": "openai_responses",
    "/v1/audio/transcriptions": "openai_transcriptions",
    "/v1/messages": "anthropic_messages",
}
#: ``GET /v1/models/{model}`` (OpenAI's "retrieve model"; Ollama answers it from /api/show): the model is in the path
RETRIEVE_MODEL_PREFIX = "/v1/models/"
RETRIEVE_MODEL_ENDPOINT = "openai_retrieve_model"
ENDPOINTS: tuple[str, ...] = (*ENDPOINT_PATHS.values(), RETRIEVE_MODEL_ENDPOINT, "other")
#: endpoints whose responses carry generation statistics (tokens, and time to first token when streamed)
GENERATION_ENDPOINTS = frozenset(
    {"generate", "chat", "openai_chat", "openai_completions", "openai_responses", "anthropic_messages"}
)
#: generation endpoints that stream server-sent events (Ollama ends these early only on an error: see ollama_proxy)
SSE_ENDPOINTS = frozenset({"openai_chat", "openai_completions", "openai_responses", "anthropic_messages"})
#: endpoints that stream by default when the request body has no "stream" key (Ollama native API)
STREAM_BY_DEFAULT = frozenset({"generate", "chat", "pull", "push", "create"})
#: endpoints whose request names no model
NO_MODEL_ENDPOINTS = frozenset({"tags", "ps", "version", "status", "openai_models", "other"})

ERROR_KINDS: tuple[str, ...] = (
    "upstream_connect",
    "upstream_timeout",
    "upstream_5xx",
    "upstream_busy",
    "upstream_4xx",
    "upstream_malformed",
    "upstream_stream_error",
    "truncated_stream",
    "client_disconnect",
    "body_too_large",
    "bad_request",
)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
LOAD_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TPS_BUCKETS = (1.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0)

NS = 1e-9
MAX_MODEL_NAME = 200


def normalise_endpoint(path: str) -> str:
    """Map a request path (query string ignored, trailing slash tolerated) to an endpoint label."""
    p = path.split("?", 1)[0]
    if len(p) > 1 and p.endswith("/"):
        p = p[:-1]
    if p.startswith(RETRIEVE_MODEL_PREFIX) and len(p) > len(RETRIEVE_MODEL_PREFIX):
        return RETRIEVE_MODEL_ENDPOINT
    return ENDPOINT_PATHS.get(p, "other")


class ModelLabels:
    """Model label values: the first ``limit`` names Ollama confirmed; every other name becomes ``other``.

    :meth:`admit` is called for a name Ollama confirmed (a 2xx answer for it, or a listing); :meth:`lookup` for a
    name it has not confirmed in this request (the label of a 404, a 502, a 499 before the answer started).
    """

    def __init__(self, limit: int = 50) -> None:
        self.limit = limit
        self._known: set[str] = set()
        self._listed: frozenset[str] = frozenset()

    def admit(self, name: object) -> str:
        """The label of a confirmed name: its own while fewer than ``limit`` names are admitted (then for good)."""
        if not isinstance(name, str) or not name:
            return "unknown"
        if len(name) > MAX_MODEL_NAME:
            return "other"
        if name in self._known:
            return name
        if len(self._known) < self.limit:
            self._known.add(name)
            return name
        return "other"

    def lookup(self, name: object) -> str:
        """The label of a name Ollama has not confirmed in this request: its own only if admitted before."""
        if not isinstance(name, str) or not name:
            return "unknown"
        if name in self._known:
            return name
        if ":" not in name and f"{name}:latest" in self._listed:  # Ollama's own alias: llama3.2 = llama3.2:latest
            return self.admit(name)
        return "other"

    def listed(self, names: Sequence[str]) -> None:
        """Models Ollama listed (loaded first, then installed): admitted in that order while there is room."""
        self._listed = frozenset(n for n in names if n)
        for name in names:
            if name:
                self.admit(name)

    @property
    def admitted(self) -> int:
        return len(self._known)


class Histogram:
    """Cumulative-bucket histogram without the prometheus_client registry."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # last = +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        if math.isnan(value):
            return
        i = 0
        for i, bound in enumerate(self.buckets):  # noqa: B007 - index used after the loop
            if value <= bound:
                break
        else:
            i = len(self.buckets)
        self.counts[i] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip((*self.buckets, math.inf), self.counts, strict=True):
            acc += n
            out.append(("+Inf" if bound == math.inf else _fmt(bound), float(acc)))
        return out


def _fmt(v: float) -> str:
    return repr(float(v))


@dataclass
class LoadedModel:
    name: str
    size: int
    size_vram: int
    expires_at: float  # unix seconds, 0 unknown
    context_length: int = 0  # 0: not reported (Ollama before context_length in /api/ps)


@dataclass
class InstalledModel:
    name: str
    size: int
    family: str
    parameter_size: str
    quantization: str
    format: str


@dataclass
class UpstreamState:
    """What the background poller learned from /api/ps, /api/tags and /api/version."""

    loaded: list[LoadedModel] = field(default_factory=list)
    installed: list[InstalledModel] = field(default_factory=list)
    version: str = ""
    up: bool = False
    polled: bool = False


class OllamaMetrics:
    """All per-request metrics of the proxy."""

    def __init__(self, max_models: int = 50) -> None:
        self.models = ModelLabels(max_models)
        self.requests: dict[tuple[str, str, str], int] = {}
        self.in_flight: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self.errors: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        self.client_disconnects: dict[str, int] = {}
        self.request_duration: dict[tuple[str, ...], Histogram] = {}  # model, endpoint, status
        self.ttft: dict[tuple[str, ...], Histogram] = {}
        self.ttfc: dict[tuple[str, ...], Histogram] = {}
        self.total_duration: dict[tuple[str, ...], Histogram] = {}
        self.load_duration: dict[tuple[str, ...], Histogram] = {}
        self.tokens_per_second: dict[tuple[str, ...], Histogram] = {}
        self.prompt_tokens: dict[tuple[str, str], int] = {}
        self.generated_tokens: dict[tuple[str, str], int] = {}
        self.request_bytes: dict[str, int] = {}
        self.response_bytes: dict[str, int] = {}
        self.upstream = UpstreamState()
        # upstream connection pool (connections to Ollama): opened and reused counted by the proxy's trace hooks,
        # open connections (active, idle) read from the pool when /metrics is rendered; None: not known
        self.connections_opened = 0
        self.connections_reused = 0
        self.connections_open: tuple[int, int] | None = None

    # --- recording ---------------------------------------------------------------------------------
    def started(self, endpoint: str) -> None:
        self.in_flight[endpoint] += 1

    def finished(self, model: str, endpoint: str, status: int, duration: float, sent: int, received: int) -> None:
        self.in_flight[endpoint] -= 1
        key = (model, endpoint, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        _hist(self.request_duration, (model, endpoint, key[2]), REQUEST_BUCKETS).observe(duration)
        self.request_bytes[endpoint] = self.request_bytes.get(endpoint, 0) + received
        self.response_bytes[endpoint] = self.response_bytes.get(endpoint, 0) + sent

    def error(self, kind: str, endpoint: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if kind == "client_disconnect" and endpoint:
            self.client_disconnects[endpoint] = self.client_disconnects.get(endpoint, 0) + 1

    def first_token(self, model: str, endpoint: str, seconds: float) -> None:
        _hist(self.ttft, (model, endpoint), TTFT_BUCKETS).observe(seconds)

    def first_content(self, model: str, endpoint: str, seconds: float) -> None:
        _hist(self.ttfc, (model, endpoint), TTFT_BUCKETS).observe(seconds)

    def final_stats(self, model: str, endpoint: str, stats: dict[str, object]) -> None:
        """Record the statistics of a final chunk / non-streamed answer: Ollama's, OpenAI's ``usage`` (prompt and
        completion tokens) or the Responses and Anthropic ``usage`` (input and output tokens)."""
        key = (model, endpoint)
        total = _num(stats.get("total_duration"))
        if total is not None:
            _hist(self.total_duration, key, REQUEST_BUCKETS).observe(total * NS)
        load = _num(stats.get("load_duration"))
        if load is not None:
            _hist(self.load_duration, key, LOAD_BUCKETS).observe(load * NS)
        prompt = _num(stats.get("prompt_eval_count"))
        generated = _num(stats.get("eval_count"))
        usage = stats.get("usage")
        if isinstance(usage, dict):  # OpenAI-, Responses- and Anthropic-compatible answers
            if prompt is None:
                prompt = _num(usage.get("prompt_tokens", usage.get("input_tokens")))
            if generated is None:
                generated = _num(usage.get("completion_tokens", usage.get("output_tokens")))
        if prompt is not None:
            self.prompt_tokens[key] = self.prompt_tokens.get(key, 0) + int(prompt)
        if generated is not None:
            self.generated_tokens[key] = self.generated_tokens.get(key, 0) + int(generated)
        eval_duration = _num(stats.get("eval_duration"))
        if generated is not None and eval_duration:
            _hist(self.tokens_per_second, key, TPS_BUCKETS).observe(generated / (eval_duration * NS))

    # --- rendering ---------------------------------------------------------------------------------
    def families(self) -> list[Metric]:
        p = PREFIX
        req = CounterMetricFamily(
            p + "requests",
            "Requests proxied to Ollama, by model, normalised endpoint and "
            "HTTP status sent to the client (499: client disconnected).",
            labels=["model", "endpoint", "status"],
        )
        for (model, endpoint, status), n in sorted(self.requests.items()):
            req.add_metric([model, endpoint, status], n)
        inflight = GaugeMetricFamily(p + "in_flight_requests", "Requests being proxied right now.", labels=["endpoint"])
        for endpoint, n in self.in_flight.items():
            inflight.add_metric([endpoint], n)
        errors = CounterMetricFamily(p + "errors", "Proxy errors by kind (pre-created at 0).", labels=["kind"])
        for kind, n in self.errors.items():
            errors.add_metric([kind], n)
        disc = CounterMetricFamily(
            p + "client_disconnects",
            "Clients that went away before the answer was complete (the upstream request is cancelled).",
            labels=["endpoint"],
        )
        for endpoint, n in sorted(self.client_disconnects.items()):
            disc.add_metric([endpoint], n)
        out: list[Metric] = [req, inflight, errors, disc]
        out.append(
            _histogram_family(
                p + "request_duration_seconds",
                "Wall time from request to the end of the answer, measured by the proxy, by the HTTP status sent "
                'to the client (as on requests_total: select status=~"2.." for the latency of answers).',
                self.request_duration,
                labels=("model", "endpoint", "status"),
            )
        )
        out.append(
            _histogram_family(
                p + "time_to_first_token_seconds",
                "Time from request to the first streamed chunk with a generated token, reasoning (thinking) included "
                "(streaming generation endpoints).",
                self.ttft,
            )
        )
        out.append(
            _histogram_family(
                p + "time_to_first_content_seconds",
                "Time from request to the first streamed chunk of the answer itself, text or tool call, after any "
                "reasoning (streaming generation endpoints; equals time_to_first_token for models that do not think).",
                self.ttfc,
            )
        )
        out.append(
            _histogram_family(
                p + "total_duration_seconds",
                "total_duration reported by Ollama in the final chunk.",
                self.total_duration,
            )
        )
        out.append(
            _histogram_family(
                p + "load_duration_seconds",
                "load_duration (model load) reported by Ollama in the final chunk.",
                self.load_duration,
            )
        )
        out.append(
            _histogram_family(
                p + "tokens_per_second",
                "Generation speed: eval_count / eval_duration of each answer.",
                self.tokens_per_second,
            )
        )
        out.append(
            _counter_family(
                p + "prompt_tokens",
                "Prompt tokens evaluated (prompt_eval_count, OpenAI usage.prompt_tokens).",
                self.prompt_tokens,
            )
        )
        out.append(
            _counter_family(
                p + "generated_tokens",
                "Tokens generated (eval_count, OpenAI usage.completion_tokens).",
                self.generated_tokens,
            )
        )
        rb = CounterMetricFamily(p + "request_bytes", "Request body bytes received from clients.", labels=["endpoint"])
        for endpoint, n in sorted(self.request_bytes.items()):
            rb.add_metric([endpoint], n)
        sb = CounterMetricFamily(p + "response_bytes", "Response body bytes sent to clients.", labels=["endpoint"])
        for endpoint, n in sorted(self.response_bytes.items()):
            sb.add_metric([endpoint], n)
        out += [rb, sb, *self._connection_families(), *self._upstream_families()]
        return out

    def _connection_families(self) -> list[Metric]:
        p = PREFIX
        opened = CounterMetricFamily(
            p + "upstream_connections_opened",
            "TCP connections the proxy opened to Ollama (requests and polls); a rate close to the request rate "
            "means the keep-alive pool is not reused.",
        )
        opened.add_metric([], self.connections_opened)
        reused = CounterMetricFamily(
            p + "upstream_connections_reused",
            "Upstream requests (proxied and polls) sent over a pooled keep-alive connection to Ollama.",
        )
        reused.add_metric([], self.connections_reused)
        out: list[Metric] = [opened, reused]
        if self.connections_open is not None:
            active, idle = self.connections_open
            gauge = GaugeMetricFamily(
                p + "upstream_connections",
                "Open TCP connections to Ollama: active (carrying a request) or idle (kept alive in the pool).",
                labels=["state"],
            )
            gauge.add_metric(["active"], active)
            gauge.add_metric(["idle"], idle)
            out.append(gauge)
        return out

    def _upstream_families(self) -> list[Metric]:
        p, up = PREFIX, self.upstream
        up_g = GaugeMetricFamily(
            p + "up", "1 when the last background poll of Ollama's /api/ps, /api/tags and /api/version succeeded."
        )
        up_g.add_metric([], 1 if up.up else 0)
        out: list[Metric] = [up_g]
        if up.version:
            ver = GaugeMetricFamily(p + "version_info", "Ollama server version (always 1).", labels=["version"])
            ver.add_metric([up.version], 1)
            out.append(ver)
        loaded_n = GaugeMetricFamily(p + "loaded_models", "Models loaded in memory (/api/ps).")
        loaded_n.add_metric([], len(up.loaded))
        vram = GaugeMetricFamily(
            p + "loaded_model_vram_bytes", "VRAM used by a loaded model (size_vram).", labels=["model"]
        )
        size = GaugeMetricFamily(
            p + "loaded_model_size_bytes", "Memory used by a loaded model (size).", labels=["model"]
        )
        exp = GaugeMetricFamily(
            p + "loaded_model_expires_timestamp_seconds",
            "When the loaded model will be unloaded (expires_at, unix time).",
            labels=["model"],
        )
        ctx = GaugeMetricFamily(
            p + "loaded_model_context_length",
            "Context length (tokens) a loaded model runs with (/api/ps context_length; absent when not reported).",
            labels=["model"],
        )
        for m in up.loaded:
            vram.add_metric([m.name], m.size_vram)
            size.add_metric([m.name], m.size)
            exp.add_metric([m.name], m.expires_at)
            if m.context_length:
                ctx.add_metric([m.name], m.context_length)
        inst_n = GaugeMetricFamily(p + "installed_models", "Models installed (/api/tags).")
        inst_n.add_metric([], len(up.installed))
        info = GaugeMetricFamily(
            p + "model_info",
            "Installed model (always 1) with its details.",
            labels=["model", "family", "parameter_size", "quantization", "format"],
        )
        msize = GaugeMetricFamily(p + "model_size_bytes", "Size of an installed model on disk.", labels=["model"])
        for i in up.installed:
            info.add_metric([i.name, i.family, i.parameter_size, i.quantization, i.format], 1)
            msize.add_metric([i.name], i.size)
        return [*out, loaded_n, vram, size, exp, ctx, inst_n, info, msize]


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _hist(store: dict[tuple[str, ...], Histogram], key: tuple[str, ...], buckets: Sequence[float]) -> Histogram:
    h = store.get(key)
    if h is None:
        h = store[key] = Histogram(buckets)
    return h


def _histogram_family(
    name: str, doc: str, store: dict[tuple[str, ...], Histogram], labels: Sequence[str] = ("model", "endpoint")
) -> Metric:
    fam = HistogramMetricFamily(name, doc, labels=list(labels))
    for key, h in sorted(store.items()):
        fam.add_metric(list(key), buckets=h.cumulative(), sum_value=h.sum)
    return fam


def _counter_family(name: str, doc: str, store: dict[tuple[str, str], int]) -> Metric:
    fam = CounterMetricFamily(name, doc, labels=["model", "endpoint"])
    for (model, endpoint), n in sorted(store.items()):
        fam.add_metric([model, endpoint], n)
    return fam

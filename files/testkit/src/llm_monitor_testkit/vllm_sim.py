"""SIMULATED vLLM OpenAI-compatible server (test and demo use only; values are not real).

Upstream modelled: vLLM's main branch of September 2026 (the v0.32 line), read file by file (the commits are
recorded in ``samples/vllm/README.md`` with what each one gave; ``samples/vllm/series.json`` is the recorded list
of series the tests compare this simulator with):

- ``/metrics``: ``vllm/v1/metrics/loggers.py`` ``PrometheusStatLogger`` at 13cbd441 (V1 engine, one engine,
  ``PROMETHEUS_MULTIPROC_DIR`` set: labels sorted, no ``_created``, no ``process_*``/``python_*``, a family is
  absent until it has a child), bucket families ``vllm/v1/metrics/buckets.py`` at 139b1c3f, speculative decoding
  ``vllm/v1/spec_decode/metrics.py`` at ee4ceaae, ``cache_config_info`` with every field of ``CacheConfig``
  (``vllm/config/cache.py`` at 002f10e0), priority scheduling per ``docs/usage/metrics.md`` and
  ``tests/v1/metrics/test_priority_labels.py`` at 4a02593f; the HTTP instrumentator
  (``vllm/entrypoints/serve/instrumentator/metrics.py`` at ef0feb37: prometheus-fastapi-instrumentator's default
  metrics, status grouped ``2xx``/``4xx``/``5xx``, ``/metrics``, ``/health``, ``/load``, ``/ping``, ``/version``,
  ``/server_info`` not counted, unknown paths as ``handler="none"``).
- ``/health``: 200 with an empty body; 503 with an empty body once the engine is dead
  (``instrumentator/health.py`` at 98b137c6); a sleeping engine is healthy.
- Errors: ``{"error": {"message", "type", "param", "code"}}`` with ``code`` the HTTP status
  (``exception_handling/error_response.py`` at ba638200, ``handlers/validation.py`` at 4da14a5c,
  ``handlers/vllm_error.py`` at 496d646e). HTTP errors are counted by the instrumentator only: a request that
  failed in the API server never reaches ``vllm:request_success``.
- Completions: ``/v1/chat/completions`` and ``/v1/completions`` (SSE and not; the final usage chunk, with
  ``choices: []``, only with ``stream_options.include_usage``), ``/v1/models`` (with ``max_model_len``; LoRA
  adapters as models whose ``parent`` is the base model), and the sleep-mode endpoints ``/sleep``, ``/wake_up``,
  ``/is_sleeping``.

Scenarios (background traffic of one synthetic request a second; values evolve with the clock):

- ``normal``: a few running requests, no queue, KV cache 20-40 %
- ``queue_buildup``: running saturates at ``max_num_seqs``, waiting grows by 2/s, TTFT grows
- ``kv_cache_full``: KV cache usage climbs to 0.99, preemptions count up
- ``latency_spike``: end-to-end latency and TTFT ~10x
- ``upstream_down``: ``/health`` and ``/metrics`` answer 503, completions close the connection
- ``error_burst``: requests end with ``finished_reason="abort"``; half of the completions answer 500
- ``engine_dead``: the EngineCore died, the API server lives on (``VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1``, or the
  seconds before its watchdog stops it): ``/health`` 503 with an empty body, ``/metrics`` 200 with the engine's
  series frozen, completions 500 with ``EngineDeadError``'s message
- ``sleeping``: sleep level 1 (``POST /sleep``): ``engine_sleep_state`` shows it, ``/health`` stays 200, completions
  are accepted and held unscheduled (counted as waiting) until ``/wake_up`` or another scenario
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

SCENARIOS = (
    "normal",
    "queue_buildup",
    "kv_cache_full",
    "latency_spike",
    "upstream_down",
    "error_burst",
    "engine_dead",
    "sleeping",
)
SCHEDULING_POLICIES = ("fcfs", "priority")

# label values upstream creates up front (vllm/v1/engine FINISH_REASON_STRINGS, loggers.py, stats.py)
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")
REASONS = FINISH_REASONS  # the name this module exported before
WAITING_REASONS = ("capacity", "deferred")
PROMPT_TOKEN_SOURCES = ("local_compute", "local_cache_hit", "external_kv_transfer")
CACHE_HIT_SOURCES = ("device", "host", "disk", "p2p", "external_unspecified")
SLEEP_STATES = ("awake", "weights_offloaded", "discard_all")
SLEEP_RESOURCE_STATES = {
    "scheduler": ("running", "paused"),
    "weights": ("resident", "offloaded", "discarded", "unknown"),
    "kv_cache": ("resident", "released", "unknown"),
}

# bucket families of vllm/v1/metrics/buckets.py
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0,
)  # fmt: skip
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
E2E_BUCKETS = REQUEST_LATENCY_BUCKETS
ITERATION_TOKENS_BUCKETS = (1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0)
REQUEST_PARAMS_N_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0)
REQUEST_NUM_PREEMPTIONS_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0)
# raw priorities, negative ones included; le=1 and le=10 are adjacent bounds in upstream's test
REQUEST_PRIORITY_BUCKETS = (-100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0)
# prometheus-fastapi-instrumentator's defaults
HTTP_HIGHR_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 7.5, 10.0, 30.0, 60.0,
)  # fmt: skip
HTTP_LOWR_BUCKETS = (0.1, 0.5, 1.0)

# routes the simulated API server has; other paths are the instrumentator's untemplated handler "none"
ROUTES = {
    "/health": ("GET",),
    "/metrics": ("GET",),
    "/v1/models": ("GET",),
    "/is_sleeping": ("GET",),
    "/v1/chat/completions": ("POST",),
    "/v1/completions": ("POST",),
    "/sleep": ("POST",),
    "/wake_up": ("POST",),
}
# the instrumentator's excluded_handlers: regular expressions searched in the path, so substrings
UNINSTRUMENTED = ("/metrics", "/health", "/load", "/ping", "/version", "/server_info")

ENGINE_DEAD_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause."
# HELP of the families upstream documents only by name (see samples/vllm/README.md: not verified verbatim)
SCHEDULER_POLICY_HELP = "Scheduler policy in use; 1 for the active policy, 0 for the others."
REQUEST_PRIORITY_HELP = "Histogram of the priority of finished requests."


def one_two_five_buckets(max_value: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... up to and including ``max_value`` (upstream's token-count buckets)."""
    out: list[float] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            bound = mantissa * scale
            if bound > max_value:
                return tuple(out)
            out.append(float(bound))
        scale *= 10


def priority_bucket(priority: int) -> str:
    """The ``priority`` label of a finished request: -1, 0 and 1 kept, the rest folded into ``<-1`` and ``>1``."""
    if priority < -1:
        return "<-1"
    if priority > 1:
        return ">1"
    return str(priority)


def format_value(value: float) -> str:
    """A sample value as the Python client writes it (Go's exponent form above 1e6, ``e+0N``)."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    whole, dot, frac = text.partition(".")
    if value > 0 and dot and len(whole) > 6:
        mantissa = (whole[0] + "." + whole[1:] + frac).rstrip("0").rstrip(".")
        return f"{mantissa}e+0{len(whole) - 1}"
    return text


_fmt = format_value


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    # multiprocess mode writes the labels sorted by name
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items())) + "}"


LabelValues = tuple[str, ...]


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.n += 1


class _Family:
    """One metric family: its children exist only once created, as in the multiprocess collector."""

    def __init__(self, name: str, kind: str, doc: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.kind = kind
        self.doc = doc
        self.labelnames = tuple(labelnames)

    def key(self, labels: Mapping[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise KeyError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return tuple(labels[n] for n in self.labelnames)

    def labels_of(self, key: LabelValues) -> dict[str, str]:
        return dict(zip(self.labelnames, key, strict=True))

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        raise NotImplementedError

    def render(self, out: list[str]) -> None:
        lines = [f"{name}{_labels_text(labels)} {format_value(v)}" for name, labels, v in self.samples()]
        if not lines:
            return
        out.append(f"# HELP {self.name} {_escape_help(self.doc)}")
        out.append(f"# TYPE {self.name} {self.kind}")
        out.extend(lines)


class _Scalars(_Family):
    """Counter or gauge; a counter's name carries the ``_total`` its samples have."""

    def __init__(self, name: str, kind: str, doc: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, kind, doc, labelnames)
        self.values: dict[LabelValues, float] = {}

    def touch(self, **labels: str) -> None:
        self.values.setdefault(self.key(labels), 0.0)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        k = self.key(labels)
        self.values[k] = self.values.get(k, 0.0) + amount

    def set(self, value: float, **labels: str) -> None:
        self.values[self.key(labels)] = float(value)

    def get(self, **labels: str) -> float:
        return self.values.get(self.key(labels), 0.0)

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        for k, v in self.values.items():
            yield self.name, self.labels_of(k), v


class _Histograms(_Family):
    def __init__(self, name: str, doc: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__(name, "histogram", doc, labelnames)
        self.buckets = tuple(float(b) for b in buckets)
        self.values: dict[LabelValues, _Histogram] = {}

    def touch(self, **labels: str) -> None:
        k = self.key(labels)
        if k not in self.values:
            self.values[k] = _Histogram(self.buckets)

    def observe(self, value: float, **labels: str) -> None:
        self.touch(**labels)
        self.values[self.key(labels)].observe(value)

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        for k, h in self.values.items():
            labels = self.labels_of(k)
            for bound, count in zip(h.buckets, h.counts, strict=True):
                yield f"{self.name}_bucket", {**labels, "le": format_value(bound)}, float(count)
            yield f"{self.name}_bucket", {**labels, "le": "+Inf"}, float(h.n)
            yield f"{self.name}_sum", labels, h.total
            yield f"{self.name}_count", labels, float(h.n)


class _Summaries(_Family):
    """A summary without quantiles (what the Python client's multiprocess mode serves): count and sum."""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, "summary", doc, labelnames)
        self.values: dict[LabelValues, list[float]] = {}

    def observe(self, value: float, **labels: str) -> None:
        pair = self.values.setdefault(self.key(labels), [0.0, 0.0])
        pair[0] += 1
        pair[1] += value

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        for k, (count, total) in self.values.items():
            labels = self.labels_of(k)
            yield f"{self.name}_count", labels, count
            yield f"{self.name}_sum", labels, total


@dataclass
class _Finished:
    """One request the engine finished (what upstream's FinishedRequestStats carries)."""

    prompt: int
    generated: int
    reason: str
    ttft: float
    itl: float
    e2e: float
    queue: float
    prefill: float
    decode: float
    cached: int = 0
    max_tokens: int | None = None
    n: int = 1
    priority: int = 0
    preemptions: int = 0


def _cached_tokens(prompt: int, block_size: int) -> int:
    # prefix-cache hits come in whole blocks; the simulated workload shares about half of each prompt
    return (prompt // 2) // block_size * block_size


def cache_config_labels(num_gpu_blocks: int, gpu_memory_utilization: float, block_size: int) -> dict[str, str]:
    """``CacheConfig.metrics_info()`` (``str()`` of every field, in declaration order) as the API server has it."""
    return {
        "block_size": str(block_size),
        "user_specified_block_size": "False",
        "user_specified_mamba_block_size": "False",
        "kv_cache_layout": "None",
        "prefix_match_unit": "None",
        "gpu_memory_utilization": str(gpu_memory_utilization),
        "cache_dtype": "auto",
        "is_attention_free": "False",
        "num_gpu_blocks_override": "None",
        "sliding_window": "None",
        "enable_prefix_caching": "True",
        "prefix_caching_hash_algo": "sha256",
        "attn_group_size": "None",
        "prefix_cache_retention_interval": "0",
        "kv_cache_dtype_skip_layers": "[]",
        "mamba_page_size_padded": "None",
        "skip_page_size_padded": "None",
        "mamba_block_size": "None",
        "mamba_cache_dtype": "auto",
        "mamba_ssm_cache_dtype": "auto",
        "mamba_cache_mode": "none",
        "enable_mamba_fine_grained_prefix_cache": "False",
        "replayssm_buffer_len": "16",
        "use_replayssm": "False",
        "use_kda_recoverssm": "False",
        "num_gpu_blocks": str(num_gpu_blocks),
        "num_cpu_blocks": "None",
        "effective_attention_block_size": "None",
        "kv_cache_size_tokens": "None",
        "kv_cache_max_concurrency": "None",
        "kv_sharing_fast_prefill": "False",
        "kv_cache_memory_bytes": "None",
        "kv_offloading_size": "None",
        "kv_offloading_backend": "native",
        "_block_size_resolved": "True",
    }


class SimulatedVllm:
    """State of one simulated vLLM engine and its API server's metrics; thread-safe."""

    def __init__(
        self,
        model: str = "simulated/llama-3-8b-instruct",
        scenario: str = "normal",
        max_model_len: int = 8192,
        max_num_seqs: int = 16,
        clock: Callable[[], float] = time.monotonic,
        *,
        spec_decode: int = 0,
        lora_adapters: Sequence[str] = (),
        max_loras: int | None = None,
        scheduling_policy: str = "fcfs",
        num_gpu_blocks: int = 27000,
        gpu_memory_utilization: float = 0.92,
        block_size: int = 16,
        wall_clock: Callable[[], float] = time.time,
        sleep_hold_seconds: float = 600.0,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        if scheduling_policy not in SCHEDULING_POLICIES:
            raise ValueError(f"unknown scheduling policy {scheduling_policy!r} (known: fcfs, priority)")
        if spec_decode < 0:
            raise ValueError("spec_decode is a number of speculative tokens, 0 or more")
        self.model = model
        self.scenario = scenario
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.spec_decode = spec_decode
        self.lora_adapters = tuple(lora_adapters)
        self.max_loras = max_loras if max_loras is not None else max(1, len(self.lora_adapters))
        self.scheduling_policy = scheduling_policy
        self.block_size = block_size
        self.sleep_hold_seconds = sleep_hold_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._woken = threading.Condition(self._lock)
        self._started = clock()
        self._last_tick = self._started
        self.running = 0.0
        self.waiting = 0.0
        self.kv = 0.0
        self.in_flight = 0
        self.held = 0  # requests accepted while asleep, not scheduled
        self.sleep_level = 0
        self._sleep_reported = False  # upstream creates the resource-state series on the first sleep snapshot
        self._preemptions = 0.0
        self._background = 0
        self._background_due = 0.0
        self._inflight_adapters: dict[str, int] = dict.fromkeys(self.lora_adapters, 0)
        self._base = {"engine": "0", "model_name": model}
        self._families: list[_Family] = []
        self._build_families(num_gpu_blocks, gpu_memory_utilization)
        if scenario == "sleeping":
            self._fall_asleep(1)
        self._update_gauges()

    # -- families --------------------------------------------------------------------------------
    def _scalars(self, name: str, kind: str, doc: str, extra: Sequence[str] = ()) -> _Scalars:
        fam = _Scalars(name, kind, doc, ("engine", "model_name", *extra))
        self._families.append(fam)
        return fam

    def _histograms(self, name: str, doc: str, buckets: Sequence[float], extra: Sequence[str] = ()) -> _Histograms:
        fam = _Histograms(name, doc, ("engine", "model_name", *extra), buckets)
        self._families.append(fam)
        return fam

    def _build_families(self, num_gpu_blocks: int, gpu_memory_utilization: float) -> None:
        base = self._base
        priority = self.scheduling_policy == "priority"
        g, c = "gauge", "counter"
        self.f_running = self._scalars("vllm:num_requests_running", g, "Number of requests in model execution batches.")
        self.f_waiting = self._scalars("vllm:num_requests_waiting", g, "Number of requests waiting to be processed.")
        self.f_waiting_by_reason = self._scalars(
            "vllm:num_requests_waiting_by_reason",
            g,
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
            "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
            "Sum of all reasons equals vllm:num_requests_waiting.",
            ("reason",),
        )
        self.f_sleep_state = self._scalars(
            "vllm:engine_sleep_state",
            g,
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
            "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
            ("sleep_state",),
        )
        self.f_sleep_resource = self._scalars(
            "vllm:engine_sleep_resource_state",
            g,
            "Confirmed engine resource state; unknown follows a failed memory RPC.",
            ("resource", "state"),
        )
        self.f_fully_awake = self._scalars(
            "vllm:engine_fully_awake", g, "One when scheduling is running and all tracked resources are resident."
        )
        self.f_kv = self._scalars("vllm:kv_cache_usage_perc", g, "KV-cache usage. 1 means 100 percent usage.")
        self.f_prefix_queries = self._scalars(
            "vllm:prefix_cache_queries_total", c, "Prefix cache queries, in terms of number of queried tokens."
        )
        self.f_prefix_hits = self._scalars(
            "vllm:prefix_cache_hits_total", c, "Prefix cache hits, in terms of number of cached tokens."
        )
        self.f_external_queries = self._scalars(
            "vllm:external_prefix_cache_queries_total",
            c,
            "External prefix cache queries from KV connector cross-instance cache sharing, "
            "in terms of number of queried tokens.",
        )
        self.f_external_hits = self._scalars(
            "vllm:external_prefix_cache_hits_total",
            c,
            "External prefix cache hits from KV connector cross-instance cache sharing, "
            "in terms of number of cached tokens.",
        )
        self.f_mm_queries = self._scalars(
            "vllm:mm_cache_queries_total", c, "Multi-modal cache queries, in terms of number of queried items."
        )
        self.f_mm_hits = self._scalars(
            "vllm:mm_cache_hits_total", c, "Multi-modal cache hits, in terms of number of cached items."
        )
        self.f_preemptions = self._scalars(
            "vllm:num_preemptions_total", c, "Cumulative number of preemption from the engine."
        )
        self.f_prompt_tokens = self._scalars("vllm:prompt_tokens_total", c, "Number of prefill tokens processed.")
        self.f_prompt_by_source = self._scalars(
            "vllm:prompt_tokens_by_source_total", c, "Number of prompt tokens by source.", ("source",)
        )
        self.f_prompt_cached = self._scalars(
            "vllm:prompt_tokens_cached_total", c, "Number of cached prompt tokens (local + external)."
        )
        self.f_prompt_cached_by_source = self._scalars(
            "vllm:prompt_tokens_cached_by_source_total",
            c,
            "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded "
            "to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at "
            "admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
            ("source",),
        )
        self.f_generation_tokens = self._scalars(
            "vllm:generation_tokens_total", c, "Number of generation tokens processed."
        )
        # finished-request families: under priority scheduling they gain a priority label, created per bucket
        fin = ("priority",) if priority else ()
        self.f_success = self._scalars(
            "vllm:request_success_total", c, "Count of successfully processed requests.", ("finished_reason", *fin)
        )
        tokens = one_two_five_buckets(self.max_model_len)
        self.f_prompt_hist = self._histograms(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens, fin
        )
        self.f_gen_hist = self._histograms(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", tokens, fin
        )
        self.f_iteration = self._histograms(
            "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION_TOKENS_BUCKETS
        )
        self.f_max_gen = self._histograms(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            tokens,
        )
        self.f_params_n = self._histograms(
            "vllm:request_params_n", "Histogram of the n request parameter.", REQUEST_PARAMS_N_BUCKETS
        )
        self.f_params_max_tokens = self._histograms(
            "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", tokens, fin
        )
        self.f_ttft = self._histograms(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS, fin
        )
        self.f_itl = self._histograms(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS
        )
        self.f_tpot = self._histograms(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BUCKETS,
            fin,
        )
        self.f_e2e = self._histograms(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", E2E_BUCKETS, fin
        )
        self.f_queue = self._histograms(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS,
            fin,
        )
        self.f_inference = self._histograms(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            REQUEST_LATENCY_BUCKETS,
            fin,
        )
        self.f_prefill = self._histograms(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            REQUEST_LATENCY_BUCKETS,
            fin,
        )
        self.f_decode = self._histograms(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            REQUEST_LATENCY_BUCKETS,
            fin,
        )
        self.f_request_preemptions = self._histograms(
            "vllm:request_num_preemptions",
            "Histogram of the number of times a request was preempted.",
            REQUEST_NUM_PREEMPTIONS_BUCKETS,
            fin,
        )
        self.f_prefill_kv = self._histograms(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            tokens,
            fin,
        )
        self._finished_families: tuple[_Histograms, ...] = (
            self.f_prompt_hist,
            self.f_gen_hist,
            self.f_params_max_tokens,
            self.f_ttft,
            self.f_tpot,
            self.f_e2e,
            self.f_queue,
            self.f_inference,
            self.f_prefill,
            self.f_decode,
            self.f_request_preemptions,
            self.f_prefill_kv,
        )
        self.f_policy = self._scalars("vllm:scheduler_policy_info", g, SCHEDULER_POLICY_HELP, ("policy",))
        for policy in SCHEDULING_POLICIES:
            self.f_policy.set(float(policy == self.scheduling_policy), policy=policy, **base)
        self.f_priority: _Histograms | None = None
        if priority:
            self.f_priority = self._histograms("vllm:request_priority", REQUEST_PRIORITY_HELP, REQUEST_PRIORITY_BUCKETS)
            self.f_priority.touch(**base)
        # speculative decoding (SpecDecodingProm), only with a speculative config
        self.f_drafts: _Scalars | None = None
        if self.spec_decode:
            self.f_drafts = self._scalars("vllm:spec_decode_num_drafts_total", c, "Number of spec decoding drafts.")
            self.f_draft_tokens = self._scalars("vllm:spec_decode_num_draft_tokens_total", c, "Number of draft tokens.")
            self.f_accepted = self._scalars(
                "vllm:spec_decode_num_accepted_tokens_total", c, "Number of accepted tokens."
            )
            self.f_accepted_per_pos = self._scalars(
                "vllm:spec_decode_num_accepted_tokens_per_pos_total",
                c,
                "Accepted tokens per draft position.",
                ("position",),
            )
            for f in (self.f_drafts, self.f_draft_tokens, self.f_accepted):
                f.touch(**base)
            for pos in range(self.spec_decode):
                self.f_accepted_per_pos.touch(position=str(pos), **base)
        # LoRA: no engine/model_name labels; a series per adapter combination, its value the time it was last seen
        self.f_lora: _Scalars | None = None
        if self.lora_adapters:
            self.f_lora = _Scalars(
                "vllm:lora_requests_info",
                "gauge",
                "Running stats on lora requests.",
                ("max_lora", "waiting_lora_adapters", "running_lora_adapters"),
            )
            self._families.append(self.f_lora)
        self.f_cache_config = _Scalars(
            "vllm:cache_config_info",
            "gauge",
            "Information of the LLMEngine CacheConfig",
            (*cache_config_labels(num_gpu_blocks, gpu_memory_utilization, self.block_size), "engine"),
        )
        self._families.append(self.f_cache_config)
        self.f_cache_config.set(
            1.0, engine="0", **cache_config_labels(num_gpu_blocks, gpu_memory_utilization, self.block_size)
        )
        # upstream creates every per-engine child up front, so these read 0 before any traffic
        for f in (
            self.f_running,
            self.f_waiting,
            self.f_kv,
            self.f_prefix_queries,
            self.f_prefix_hits,
            self.f_external_queries,
            self.f_external_hits,
            self.f_mm_queries,
            self.f_mm_hits,
            self.f_preemptions,
            self.f_prompt_tokens,
            self.f_prompt_cached,
            self.f_generation_tokens,
        ):
            f.touch(**base)
        for reason in WAITING_REASONS:
            self.f_waiting_by_reason.touch(reason=reason, **base)
        for state in SLEEP_STATES:
            self.f_sleep_state.touch(sleep_state=state, **base)
        for source in PROMPT_TOKEN_SOURCES:
            self.f_prompt_by_source.touch(source=source, **base)
        for source in CACHE_HIT_SOURCES:
            self.f_prompt_cached_by_source.touch(source=source, **base)
        for hist in (self.f_iteration, self.f_max_gen, self.f_params_n, self.f_itl):
            hist.touch(**base)
        if not priority:
            for reason in FINISH_REASONS:
                self.f_success.touch(finished_reason=reason, **base)
            for hist in self._finished_families:
                hist.touch(**base)
        # the API server's instrumentator: children appear with the first instrumented request
        self.f_http_requests = _Scalars(
            "http_requests_total",
            "counter",
            "Total number of requests by method, status and handler.",
            ("method", "status", "handler"),
        )
        self.f_http_request_size = _Summaries(
            "http_request_size_bytes",
            "Content length of incoming requests by handler. Only value of header is respected. Otherwise "
            "ignored. No percentile calculated. ",
            ("handler",),
        )
        self.f_http_response_size = _Summaries(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler. Only value of header is respected. Otherwise "
            "ignored. No percentile calculated. ",
            ("handler",),
        )
        self.f_http_highr = _Histograms(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. Made for more accurate percentile calculations. ",
            (),
            HTTP_HIGHR_BUCKETS,
        )
        self.f_http_lowr = _Histograms(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important. ",
            ("method", "handler"),
            HTTP_LOWR_BUCKETS,
        )
        self._families.extend(
            (
                self.f_http_requests,
                self.f_http_request_size,
                self.f_http_response_size,
                self.f_http_highr,
                self.f_http_lowr,
            )
        )

    # -- scenario and clock ----------------------------------------------------------------------
    @property
    def down(self) -> bool:
        return self.scenario == "upstream_down"

    @property
    def dead(self) -> bool:
        return self.scenario == "engine_dead"

    @property
    def sleeping(self) -> bool:
        return self.sleep_level > 0

    def set_scenario(self, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        with self._lock:
            if scenario == "sleeping" and not self.sleeping:
                self._fall_asleep(1)
            elif scenario != "sleeping" and self.sleeping:
                self._wake()
            self.scenario = scenario
            if not self.dead:
                self._update_gauges()
            self._woken.notify_all()

    def sleep(self, level: int = 1) -> None:
        """``POST /sleep?level=N``: level 1 offloads the weights, level 2 discards them; the KV cache goes."""
        if level not in (1, 2):
            raise ValueError("sleep level is 1 or 2")
        with self._lock:
            self._fall_asleep(level)
            self.scenario = "sleeping"
            self._update_gauges()

    def wake_up(self) -> None:
        with self._lock:
            if self.sleeping:
                self._wake()
            if self.scenario == "sleeping":
                self.scenario = "normal"
            self._update_gauges()
            self._woken.notify_all()

    def _fall_asleep(self, level: int) -> None:
        self.sleep_level = level
        self._sleep_reported = True
        # sleep mode "abort": in-flight work is dropped, nothing runs, the KV cache is released
        self.running = 0.0
        self.waiting = 0.0
        self.kv = 0.0

    def _wake(self) -> None:
        self.sleep_level = 0
        self._last_tick = self._clock()  # no background traffic for the time asleep

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
            if self.dead:
                return  # a dead engine reports nothing: its series stay as they were
            if self.sleeping:
                self._update_gauges()
                return
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
                self._preemptions += 1.5 * dt
            else:
                self.running = float(self.in_flight + 2 + int(2 * (1 + math.sin(t / 7))))
                self.waiting = 0.0
                self.kv = 0.2 + 0.1 * (1 + math.sin(t / 11))
            # background traffic: one synthetic request per second, however often /metrics is read
            self._background_due += dt
            synthetic = int(self._background_due)
            self._background_due -= synthetic
            used: list[str] = []
            for _ in range(synthetic):
                adapter = self._next_background_adapter()
                if adapter:
                    used.append(adapter)
                self._finish(self._background_request())
            if synthetic or self.in_flight:
                self._stamp_lora(used)
            self._update_gauges()

    def _next_background_adapter(self) -> str | None:
        # the synthetic traffic takes turns between the base model and each adapter
        turn = self._background % (1 + len(self.lora_adapters))
        self._background += 1
        return self.lora_adapters[turn - 1] if turn else None

    def _background_request(self) -> _Finished:
        reason = "abort" if self.scenario == "error_burst" else "stop"
        preempted = 1 if self.scenario == "kv_cache_full" and self._background % 2 else 0
        return self._timed(
            prompt=120, generated=64, base_latency=0.8, reason=reason, max_tokens=256, preemptions=preempted
        )

    def _timed(
        self,
        prompt: int,
        generated: int,
        base_latency: float,
        reason: str,
        *,
        queue: float | None = None,
        max_tokens: int | None = None,
        n: int = 1,
        priority: int = 0,
        preemptions: int = 0,
    ) -> _Finished:
        f = self._latency_factor()
        ttft = 0.05 * f
        itl = 0.012 * f
        e2e = max(base_latency, ttft + itl * generated) * f
        return _Finished(
            prompt=prompt,
            generated=generated,
            reason=reason,
            ttft=ttft,
            itl=itl,
            e2e=e2e,
            queue=queue if queue is not None else 0.01 * f * (1 + self.waiting),
            prefill=ttft * 0.8,
            decode=max(0.0, e2e - ttft),
            cached=_cached_tokens(prompt, self.block_size),
            max_tokens=max_tokens,
            n=n,
            priority=priority,
            preemptions=preemptions,
        )

    def _update_gauges(self) -> None:
        base = self._base
        if self.sleeping:
            capacity, deferred, running, kv = float(self.held), 0.0, 0.0, 0.0
        else:
            capacity, deferred, running, kv = float(math.floor(self.waiting) + self.held), 0.0, self.running, self.kv
        self.f_running.set(running, **base)
        self.f_waiting.set(capacity + deferred, **base)
        self.f_waiting_by_reason.set(capacity, reason="capacity", **base)
        self.f_waiting_by_reason.set(deferred, reason="deferred", **base)
        self.f_kv.set(kv, **base)
        self.f_preemptions.set(math.floor(self._preemptions), **base)
        level = self.sleep_level
        self.f_sleep_state.set(float(level == 0), sleep_state="awake", **base)
        self.f_sleep_state.set(float(level == 1), sleep_state="weights_offloaded", **base)
        self.f_sleep_state.set(float(level == 2), sleep_state="discard_all", **base)
        if self._sleep_reported:
            current = {
                "scheduler": "paused" if level else "running",
                "weights": {0: "resident", 1: "offloaded", 2: "discarded"}[level],
                "kv_cache": "released" if level else "resident",
            }
            for resource, states in SLEEP_RESOURCE_STATES.items():
                for state in states:
                    self.f_sleep_resource.set(float(current[resource] == state), resource=resource, state=state, **base)
            self.f_fully_awake.set(float(level == 0), **base)

    def _stamp_lora(self, used: Sequence[str]) -> None:
        if self.f_lora is None:
            return
        running = [a for a in self.lora_adapters if a in used or self._inflight_adapters[a] > 0]
        waiting = running if self.scenario == "queue_buildup" else []
        self.f_lora.set(
            self._wall_clock(),
            max_lora=str(self.max_loras),
            waiting_lora_adapters=",".join(waiting),
            running_lora_adapters=",".join(running),
        )

    # -- requests --------------------------------------------------------------------------------
    def _finish(self, fin: _Finished) -> None:
        base = self._base
        computed = fin.prompt - fin.cached
        self.f_prompt_tokens.inc(fin.prompt, **base)
        self.f_prompt_by_source.inc(computed, source="local_compute", **base)
        self.f_prompt_by_source.inc(fin.cached, source="local_cache_hit", **base)
        self.f_prompt_cached.inc(fin.cached, **base)
        self.f_prompt_cached_by_source.inc(fin.cached, source="device", **base)
        self.f_prefix_queries.inc(fin.prompt, **base)
        self.f_prefix_hits.inc(fin.cached, **base)
        self.f_generation_tokens.inc(fin.generated, **base)
        self._preemptions += fin.preemptions
        # one prefill step, then decode steps of the whole running batch (capped, as the ITL sampling is)
        batch = max(1.0, self.running)
        self.f_iteration.observe(computed + batch - 1, **base)
        for _ in range(min(fin.generated, 32)):
            self.f_iteration.observe(batch, **base)
            self.f_itl.observe(fin.itl, **base)
        self.f_max_gen.observe(fin.generated // max(1, fin.n), **base)
        self.f_params_n.observe(fin.n, **base)
        labels = dict(base)
        if self.f_priority is not None:
            labels["priority"] = priority_bucket(fin.priority)
            self.f_priority.observe(fin.priority, **base)
            for reason in FINISH_REASONS:
                self.f_success.touch(finished_reason=reason, **labels)
        self.f_success.inc(1.0, finished_reason=fin.reason, **labels)
        self.f_ttft.observe(fin.ttft, **labels)
        self.f_e2e.observe(fin.e2e, **labels)
        self.f_queue.observe(fin.queue, **labels)
        self.f_prefill.observe(fin.prefill, **labels)
        self.f_decode.observe(fin.decode, **labels)
        self.f_inference.observe(fin.prefill + fin.decode, **labels)
        self.f_request_preemptions.observe(fin.preemptions, **labels)
        self.f_prefill_kv.observe(computed, **labels)
        self.f_prompt_hist.observe(fin.prompt, **labels)
        self.f_gen_hist.observe(fin.generated, **labels)
        self.f_tpot.observe(fin.itl, **labels)
        if fin.max_tokens:
            self.f_params_max_tokens.observe(fin.max_tokens, **labels)
        if self.f_drafts is not None and fin.generated > 0:
            self._observe_drafts(self.f_drafts, fin.generated)

    def _observe_drafts(self, drafts_family: _Scalars, generated: int) -> None:
        base = self._base
        k = self.spec_decode
        # position i is accepted with probability 0.75^(i+1): a later position never beats an earlier one
        rates = [0.75 ** (i + 1) for i in range(k)]
        drafts = max(1, math.ceil(generated / (1 + sum(rates))))
        per_pos = [math.floor(drafts * r) for r in rates]
        drafts_family.inc(drafts, **base)
        self.f_draft_tokens.inc(drafts * k, **base)
        self.f_accepted.inc(sum(per_pos), **base)
        for pos, accepted in enumerate(per_pos):
            self.f_accepted_per_pos.inc(accepted, position=str(pos), **base)

    def record_request(
        self,
        prompt: int,
        generated: int,
        seconds: float,
        reason: str,
        *,
        queue: float | None = None,
        max_tokens: int | None = None,
        n: int = 1,
        priority: int = 0,
        adapter: str | None = None,
    ) -> None:
        """A request the engine finished (the HTTP handler calls this; tests may too)."""
        if reason not in FINISH_REASONS:
            raise ValueError(f"unknown finished_reason {reason!r}")
        with self._lock:
            self._finish(
                self._timed(
                    prompt, generated, seconds, reason, queue=queue, max_tokens=max_tokens, n=n, priority=priority
                )
            )
            self._stamp_lora([adapter] if adapter else [])

    def begin_request(self, adapter: str | None) -> None:
        with self._lock:
            self.in_flight += 1
            if adapter:
                self._inflight_adapters[adapter] += 1

    def end_request(self, adapter: str | None) -> None:
        with self._lock:
            self.in_flight -= 1
            if adapter:
                self._inflight_adapters[adapter] -= 1

    def hold_while_asleep(self) -> tuple[bool, float]:
        """Block a new request while the engine sleeps (upstream queues it unscheduled).

        Returns (woken, seconds held); False when ``sleep_hold_seconds`` passed first.
        """
        t0 = time.monotonic()
        with self._lock:
            if not self.sleeping:
                return True, 0.0
            self.held += 1
            self._update_gauges()
            try:
                woken = self._woken.wait_for(lambda: not self.sleeping, timeout=self.sleep_hold_seconds)
            finally:
                self.held -= 1
                if not self.dead:
                    self._update_gauges()
        return woken, time.monotonic() - t0

    def record_http(
        self, method: str, path: str, status: int, seconds: float, request_bytes: int, response_bytes: int
    ) -> None:
        """What the API server's instrumentator records for one answered request."""
        if any(pattern in path for pattern in UNINSTRUMENTED):
            return
        handler = path if path in ROUTES else "none"
        with self._lock:
            self.f_http_requests.inc(method=method, status=f"{status // 100}xx", handler=handler)
            self.f_http_request_size.observe(request_bytes, handler=handler)
            self.f_http_response_size.observe(response_bytes, handler=handler)
            self.f_http_highr.observe(seconds)
            self.f_http_lowr.observe(seconds, method=method, handler=handler)

    def served_models(self) -> tuple[str, ...]:
        return (self.model, *self.lora_adapters)

    def render_metrics(self) -> bytes:
        self.tick()
        out: list[str] = []
        with self._lock:
            for family in self._families:
                family.render(out)
        return ("\n".join(out) + "\n").encode()

    def models_document(self) -> dict[str, Any]:
        created = int(self._wall_clock())
        cards: list[dict[str, Any]] = [
            {
                "id": self.model,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": self.model,
                "parent": None,
                "max_model_len": self.max_model_len,
                "permission": [],
            }
        ]
        for adapter in self.lora_adapters:
            cards.append(
                {
                    "id": adapter,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": f"/adapters/{adapter}",
                    "parent": self.model,
                    "max_model_len": None,
                    "permission": [],
                }
            )
        return {"object": "list", "data": cards}


def error_body(message: str, err_type: str, code: int, param: str | None = None) -> bytes:
    """vLLM's ErrorResponse: ``code`` is the HTTP status as a number."""
    return json.dumps({"error": {"message": message, "type": err_type, "param": param, "code": code}}).encode()


def validation_error(kind: str, loc: str, msg: str, given: object, ctx: dict[str, str] | None = None) -> bytes:
    """A 400 as vLLM's RequestValidationError handler words it (one pydantic error, inputs summarised)."""
    if isinstance(given, (list, tuple, dict)):
        given = f"<{type(given).__name__} of {len(given)} items>"
    err: dict[str, object] = {"type": kind, "loc": loc, "msg": msg, "input": given}
    if ctx:
        err["ctx"] = ctx
    return error_body(f"1 validation error:\n  {err}", "Bad Request", 400, loc)


class _Dropped(Exception):
    """The connection was closed without an answer."""


class _Handler(BaseHTTPRequestHandler):
    server: SimulatedVllmServer
    protocol_version = "HTTP/1.1"
    server_version = "simulated-vllm"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, content_type: str | None = "application/json") -> None:
        self.send_response(code)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self._status, self._response_bytes = code, len(body)

    def _serve(self, route: Callable[[str], None]) -> None:
        t0 = time.monotonic()
        self._status, self._response_bytes = 0, 0
        path = self.path.split("?", 1)[0]
        try:
            route(path)
        except _Dropped:
            self.close_connection = True
            return
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if self._status:
            request_bytes = int(self.headers.get("Content-Length") or 0)
            self.server.sim.record_http(
                self.command, path, self._status, time.monotonic() - t0, request_bytes, self._response_bytes
            )

    def _wrong_method(self, path: str) -> bool:
        if path in ROUTES and self.command not in ROUTES[path]:
            self._send(405, b'{"detail":"Method Not Allowed"}')
            return True
        if path not in ROUTES:
            self._send(404, b'{"detail":"Not Found"}')
            return True
        return False

    def do_GET(self) -> None:
        self._serve(self._get)

    def do_POST(self) -> None:
        self._serve(self._post)

    def _get(self, path: str) -> None:
        sim = self.server.sim
        if path in ("/health", "/metrics") and sim.down:
            self._send(503, b'{"detail":"simulated upstream_down"}')
        elif self._wrong_method(path):
            return
        elif path == "/health":
            self._send(503 if sim.dead else 200, b"", None)
        elif path == "/metrics":
            self._send(200, sim.render_metrics(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/v1/models":
            self._send(200, json.dumps(sim.models_document()).encode())
        elif path == "/is_sleeping":
            self._send(200, json.dumps({"is_sleeping": sim.sleeping}).encode())

    def _post(self, path: str) -> None:
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 1 << 20)) if length else b""
        if self._wrong_method(path):
            return
        if sim.down:
            self.connection.close()
            raise _Dropped
        if path == "/sleep":
            level = parse_qs(self.path.partition("?")[2]).get("level", ["1"])[0]
            try:
                sim.sleep(int(level))
            except ValueError as exc:
                self._send(400, error_body(str(exc), "BadRequestError", 400))
                return
            self._send(200, b"", None)
            return
        if path == "/wake_up":
            sim.wake_up()
            self._send(200, b"", None)
            return
        chat = path == "/v1/chat/completions"
        req = self._parse_request(raw, chat)
        if req is None:
            return
        model = req.get("model") or sim.model
        if model not in sim.served_models():
            self._send(404, error_body(f"The model `{model}` does not exist.", "NotFoundError", 404))
            return
        priority = req.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            self._send(400, validation_error("int_type", "body.priority", "Input should be a valid integer", priority))
            return
        if priority != 0 and sim.scheduling_policy != "priority":
            msg = f"Got priority {priority} but Priority scheduling is not enabled."
            self._send(400, error_body(msg, "BadRequestError", 400))
            return
        if sim.dead:
            self._send(500, error_body(ENGINE_DEAD_MESSAGE, "InternalServerError", 500))
            return
        if sim.scenario == "error_burst" and uuid.uuid4().int % 2 == 0:
            # EngineGenerateError carries no message of its own
            self._send(500, error_body("", "InternalServerError", 500))
            return
        woken, held = sim.hold_while_asleep()
        if not woken:
            self.connection.close()
            raise _Dropped
        if sim.scenario == "engine_dead":  # it died while the request waited
            self._send(500, error_body(ENGINE_DEAD_MESSAGE, "InternalServerError", 500))
            return
        self._complete(sim, chat, req, str(model), priority, held)

    def _parse_request(self, raw: bytes, chat: bool) -> dict[str, Any] | None:
        try:
            req = json.loads(raw or b"{}")
        except ValueError as exc:
            pos = getattr(exc, "pos", 0)
            msg = getattr(exc, "msg", str(exc))
            self._send(400, validation_error("json_invalid", f"body.{pos}", "JSON decode error", {}, {"error": msg}))
            return None
        if not isinstance(req, dict):
            self._send(
                400,
                validation_error(
                    "model_attributes_type",
                    "body",
                    "Input should be a valid dictionary or object to extract fields from",
                    req,
                ),
            )
            return None
        field_name = "messages" if chat else "prompt"
        if field_name not in req:
            self._send(400, validation_error("missing", f"body.{field_name}", "Field required", req))
            return None
        if chat and not isinstance(req["messages"], list):
            self._send(
                400, validation_error("list_type", "body.messages", "Input should be a valid list", req["messages"])
            )
            return None
        for name in ("max_tokens", "max_completion_tokens", "n"):
            given = req.get(name)
            if given is not None and (not isinstance(given, int) or isinstance(given, bool)):
                self._send(400, validation_error("int_type", f"body.{name}", "Input should be a valid integer", given))
                return None
        if req.get("stream_options") is not None and not req.get("stream"):
            self._send(
                400,
                validation_error(
                    "value_error",
                    "body",
                    "Value error, Stream options can only be defined when `stream=True`.",
                    req,
                ),
            )
            return None
        return req

    def _complete(
        self, sim: SimulatedVllm, chat: bool, req: dict[str, Any], model: str, priority: int, held: float
    ) -> None:
        t0 = time.monotonic()
        if chat:
            text = " ".join(str(m.get("content", "")) for m in req["messages"] if isinstance(m, dict))
        else:
            text = str(req.get("prompt", ""))
        prompt_tokens = max(1, len(text.split()))
        asked = req.get("max_completion_tokens") or req.get("max_tokens")
        # without max_tokens upstream may generate up to the context left, and records that as the parameter
        max_tokens = int(asked) if asked else max(1, sim.max_model_len - prompt_tokens)
        per_choice = max(1, min(max_tokens, 16))
        choices = max(1, int(req.get("n") or 1))
        reason = "length" if max_tokens <= 16 else "stop"
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        generated = per_choice * choices
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + generated,
            "completion_tokens": generated,
        }
        adapter = model if model != sim.model else None
        sim.begin_request(adapter)
        try:
            if req.get("stream"):
                options = req.get("stream_options") or {}
                self._stream(sim, chat, rid, created, model, per_choice, choices, reason, usage, options)
            else:
                out: list[dict[str, Any]] = []
                for index in range(choices):
                    content = " ".join(f"tok{i}" for i in range(per_choice))
                    choice: dict[str, Any] = {"index": index}
                    if chat:
                        choice["message"] = {"role": "assistant", "content": content}
                    else:
                        choice["text"] = content
                    choice.update(logprobs=None, finish_reason=reason, stop_reason=None)
                    out.append(choice)
                body = {"id": rid, "object": obj, "created": created, "model": model, "choices": out, "usage": usage}
                self._send(200, json.dumps(body).encode())
        finally:
            sim.end_request(adapter)
            sim.record_request(
                prompt_tokens,
                generated,
                time.monotonic() - t0,
                reason,
                queue=held or None,
                max_tokens=max_tokens,
                n=choices,
                priority=priority,
                adapter=adapter,
            )

    def _stream(
        self,
        sim: SimulatedVllm,
        chat: bool,
        rid: str,
        created: int,
        model: str,
        per_choice: int,
        choices: int,
        reason: str,
        usage: dict[str, int],
        options: dict[str, Any],
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._status, self._response_bytes = 200, 0  # streamed without a Content-Length
        obj = "chat.completion.chunk" if chat else "text_completion"
        every_chunk_usage = bool(options.get("include_usage") and options.get("continuous_usage_stats"))

        def send(chunk_choices: list[dict[str, Any]], done: int) -> None:
            chunk: dict[str, Any] = {"id": rid, "object": obj, "created": created, "model": model}
            chunk["choices"] = chunk_choices
            if every_chunk_usage:
                prompt = usage["prompt_tokens"]
                chunk["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt + done, "completion_tokens": done}
            self.wfile.write(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
            self.wfile.flush()

        if chat:  # the role comes alone in the first chunk
            send(
                [
                    {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                    for i in range(choices)
                ],
                0,
            )
        for token in range(per_choice):
            last = token == per_choice - 1
            batch = []
            for index in range(choices):
                piece = f"tok{token} "
                choice: dict[str, Any] = {"index": index}
                if chat:
                    choice["delta"] = {"content": piece}
                else:
                    choice["text"] = piece
                choice.update(logprobs=None, finish_reason=reason if last else None)
                if last:
                    choice["stop_reason"] = None
                batch.append(choice)
            send(batch, (token + 1) * choices)
            time.sleep(0.002)
        if options.get("include_usage"):
            final = {"id": rid, "object": obj, "created": created, "model": model, "choices": [], "usage": usage}
            self.wfile.write(b"data: " + json.dumps(final, separators=(",", ":")).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")


class SimulatedVllmServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimulatedVllm) -> None:
        self.sim = sim
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

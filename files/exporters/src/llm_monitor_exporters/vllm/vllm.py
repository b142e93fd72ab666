"""vLLM exporter: discovers vLLM servers (Docker + static), probes them, serves HTTP service discovery.

vLLM's own ``/metrics`` is NOT re-exported: Prometheus scrapes it natively (names unchanged)
through the HTTP SD endpoint (``/sd/vllm``) of this exporter. This exporter adds what vLLM does not
say about itself: whether it answers, which models it serves (``/v1/models``), the max model
length, the GPUs assigned to its container and the container's restarts.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_monitor_exporters.core import httpclient
from llm_monitor_exporters.core.collector import Collector, Snapshot
from llm_monitor_exporters.core.config import ConfigError, opt
from llm_monitor_exporters.docker.docker_api import DockerURLError
from llm_monitor_exporters.docker.docker_meta import DockerMetadata, MetadataSource
from llm_monitor_exporters.vllm.vllm_discovery import ADDRESS_MODES, Target, matches, target_for

log = logging.getLogger(__name__)

LABELS = ["target", "container", "source"]
SD_OWN_LABELS = ("host", "container", "model", "job", "instance")
SD_LABEL_NAME = re.compile(r"^(?!__)[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass
class StaticEndpoint:
    address: str = opt(None, help="host:port of a vLLM server not in a container (scraped and probed)")
    name: str = opt("", allow_empty=True, help="value of the 'container' label (default empty)")
    probe_address: str = opt("", allow_empty=True, help="host:port the exporter probes (default: address)")


@dataclass
class VllmConfig:
    docker: bool = opt(True, help="discover vLLM containers through the Docker API")
    docker_url: str = opt("unix:///var/run/docker.sock", help="Docker API endpoint")
    docker_timeout: float = opt(10.0, minimum=0.1, help="seconds before a Docker API call times out")
    resync_interval: float = opt(60.0, minimum=1, help="seconds between full resyncs of the container list")
    match_images: list[str] = opt(
        factory=lambda: ["vllm/vllm-openai*", "*/vllm/vllm-openai*"], help="image patterns (fnmatch) of vLLM containers"
    )
    match_label: str = opt(
        "llm-monitor.vllm=true", allow_empty=True, help="container label KEY=VALUE (or KEY) marking a vLLM container"
    )
    match_commands: list[str] = opt(
        factory=lambda: ["vllm serve", "vllm.entrypoints.openai.api_server"],
        help="substrings of the container command line marking vLLM",
    )
    port_label: str = opt(
        "llm-monitor.vllm.port", allow_empty=True, help="container label giving vLLM's port inside the container"
    )
    container_port: int = opt(
        8000, minimum=1, help="vLLM's port in the container when neither label nor --port says otherwise"
    )
    address_mode: str = opt("auto", choices=ADDRESS_MODES, help="auto, published or container_ip")
    advertise_host: str = opt(
        "", allow_empty=True, help="host name/IP Prometheus uses for published ports (default: hostname)"
    )
    network: str = opt("", allow_empty=True, help="Docker network for container_ip mode (default: first)")
    host_label: str = opt("", allow_empty=True, help="value of the 'host' SD label (default: advertise_host)")
    sd_labels: dict[str, str] = opt(
        factory=dict,
        help="more labels on every SD target, e.g. the host's fleet labels (team, datacenter) so vLLM's own series "
        "carry them like the other jobs' (the exporters role sets fleet_labels here)",
    )
    static_endpoints: list[StaticEndpoint] = opt(factory=list, help="servers outside containers")
    probe_timeout: float = opt(2.0, minimum=0.05, help="seconds per probe request")
    models_refresh: float = opt(60.0, minimum=0, help="seconds between /v1/models calls per server")
    sd_path: str = opt("/sd/vllm", help="HTTP path of the Prometheus HTTP SD document")


@dataclass
class ServerState:
    up: bool = False
    reachable: bool = False
    probe_seconds: float = 0.0
    models: list[tuple[str, int | None]] = field(default_factory=list)
    models_at: float = 0.0


class VllmCollector(Collector):
    name = "vllm"
    error_kinds = (
        "probe_unreachable",
        "probe_timeout",
        "probe_http",
        "engine_unhealthy",
        "models_malformed",
        "no_address",
    )
    upstream_names: tuple[str, ...] = ("docker",)

    def __init__(
        self, config: VllmConfig, metadata: MetadataSource | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        for name in config.sd_labels:
            if not SD_LABEL_NAME.match(name) or name in SD_OWN_LABELS:
                raise ConfigError(
                    f"vllm.sd_labels: {name!r} is not a label name the SD document may add "
                    f"(a valid Prometheus name, not __* and not {', '.join(SD_OWN_LABELS)})"
                )
        for i, ep in enumerate(config.static_endpoints):
            if not ep.address or ":" not in ep.address:
                raise ConfigError(f"vllm.static_endpoints[{i}].address: expected HOST:PORT, got {ep.address!r}")
        self.config = config
        self.advertise_host = config.advertise_host or socket.gethostname()
        self.host_label = config.host_label or self.advertise_host
        self.metadata: MetadataSource | None = metadata
        if metadata is None and config.docker:
            try:
                self.metadata = DockerMetadata(
                    config.docker_url,
                    timeout=config.docker_timeout,
                    resync_interval=config.resync_interval,
                    include_stopped=False,
                    keep_inspect=True,
                )
            except DockerURLError as exc:  # here so that --check-config refuses it too
                raise ConfigError(f"vllm.docker_url: {exc}") from exc
        if not config.docker:
            self.upstream_names = ()
        self._clock = clock
        self._states: dict[str, ServerState] = {}
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vllm-probe")
        self._sd_lock = threading.Lock()
        self._sd = b"[]\n"
        self._no_address_logged: set[str] = set()

    def start(self) -> None:
        if self.metadata is not None:
            self.metadata.start()

    def close(self) -> None:
        if self.metadata is not None:
            self.metadata.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def http_routes(self) -> dict[str, Callable[[], tuple[int, str, bytes]]]:
        return {self.config.sd_path: self.sd_document}

    def sd_document(self) -> tuple[int, str, bytes]:
        with self._sd_lock:
            return 200, "application/json", self._sd

    # -- discovery -------------------------------------------------------------------------------
    def targets(self, errors: dict[str, int]) -> tuple[list[Target], bool | None]:
        c = self.config
        out: list[Target] = []
        docker_up: bool | None = None
        if self.metadata is not None:
            docker_up, containers, _ = self.metadata.snapshot()
            for meta in sorted(containers.values(), key=lambda m: m.name):
                data = meta.inspect
                if data is None or meta.state != "running":
                    continue
                if matches(data, c.match_images, c.match_label, c.match_commands) is None:
                    continue
                target = target_for(
                    data,
                    mode=c.address_mode,
                    advertise_host=self.advertise_host,
                    network=c.network,
                    default_port=c.container_port,
                    port_label=c.port_label,
                )
                if target is None:
                    errors["no_address"] = errors.get("no_address", 0) + 1
                    if meta.id not in self._no_address_logged:
                        self._no_address_logged.add(meta.id)
                        log.warning(
                            "vLLM container %s: no address in mode %s (no published port, no network IP)",
                            meta.name,
                            c.address_mode,
                        )
                    continue
                out.append(target)
        for ep in c.static_endpoints:
            out.append(
                Target(address=ep.address, probe=ep.probe_address or ep.address, container=ep.name, source="static")
            )
        return out, docker_up

    # -- probing ---------------------------------------------------------------------------------
    def _probe(self, target: Target) -> tuple[ServerState, str | None]:
        c = self.config
        state = self._states.get(target.address) or ServerState()
        base = f"http://{target.probe}"
        t0 = time.perf_counter()
        res = httpclient.get(base + "/health", timeout=c.probe_timeout)
        reachable = res.kind not in ("unreachable", "timeout")
        error: str | None = None
        if res.status == 503:
            # vLLM's /health answers 503 (empty body) once the engine is dead, while /metrics and the API
            # server still answer 200: the server is reachable but serves nothing
            up, error = False, "engine_unhealthy"
        else:
            if not res.ok and reachable:  # no /health here (a proxy in front): the API server answering will do
                res = httpclient.get(base + "/metrics", timeout=c.probe_timeout)
            up = res.ok
            if not up:
                error = {"unreachable": "probe_unreachable", "timeout": "probe_timeout"}.get(res.kind, "probe_http")
        now = self._clock()
        models, models_at = state.models, state.models_at
        if up and (not models or now - state.models_at >= c.models_refresh):
            mres, data = httpclient.get_json(base + "/v1/models", timeout=c.probe_timeout, expect=dict)
            parsed = parse_models(data) if mres.ok else None
            if parsed is not None:
                models, models_at = parsed, now
            elif mres.kind == "malformed" or (mres.ok and parsed is None):
                error = "models_malformed"
        state = ServerState(
            up=up, reachable=reachable, probe_seconds=time.perf_counter() - t0, models=models, models_at=models_at
        )
        return state, error

    def collect_snapshot(self) -> Snapshot:
        errors: dict[str, int] = {}
        targets, docker_up = self.targets(errors)
        results = list(self._pool.map(self._probe, targets)) if targets else []
        states: dict[str, ServerState] = {}
        for target, (state, error) in zip(targets, results, strict=True):
            states[target.address] = state
            if error is not None:
                errors[error] = errors.get(error, 0) + 1
        self._states = states
        self._render_sd(targets, states)
        upstreams = {} if docker_up is None else {"docker": docker_up}
        return Snapshot(families=self._families(targets, states), upstreams=upstreams, errors=errors)

    def _render_sd(self, targets: list[Target], states: dict[str, ServerState]) -> None:
        groups = []
        for t in targets:
            models = states[t.address].models
            groups.append(
                {
                    "targets": [t.address],
                    "labels": {
                        **self.config.sd_labels,
                        "host": self.host_label,
                        "container": t.container,
                        "model": models[0][0] if models else "",
                    },
                }
            )
        body = (json.dumps(groups, indent=1) + "\n").encode()
        with self._sd_lock:
            self._sd = body

    def _families(self, targets: list[Target], states: dict[str, ServerState]) -> list[Metric]:
        p = "llm_monitor_vllm_"
        up = GaugeMetricFamily(
            p + "up",
            "Whether the vLLM server can serve: /health answered 200 (or, without /health, /metrics did) in the "
            "last probe; 0 when its engine is dead (/health 503) or it does not answer.",
            labels=LABELS,
        )
        reachable = GaugeMetricFamily(
            p + "http_reachable",
            "Whether the vLLM server answered HTTP at all in the last probe (1 with up 0: the engine is dead).",
            labels=LABELS,
        )
        info = GaugeMetricFamily(
            p + "model_info", "Model served by the vLLM server (from /v1/models), always 1.", labels=[*LABELS, "model"]
        )
        max_len = GaugeMetricFamily(
            p + "max_model_len", "Maximum model length (context, tokens) from /v1/models.", labels=[*LABELS, "model"]
        )
        gpus = GaugeMetricFamily(
            p + "gpu_assigned",
            "GPU assigned to the server's container (DeviceRequests, "
            "NVIDIA_VISIBLE_DEVICES or CUDA_VISIBLE_DEVICES), always 1.",
            labels=[*LABELS, "gpu"],
        )
        restarts = CounterMetricFamily(
            p + "container_restarts", "Restarts of the server's container (Docker RestartCount).", labels=LABELS
        )
        probe = GaugeMetricFamily(
            p + "probe_duration_seconds", "Duration of the last probe of the server.", labels=LABELS
        )
        count = GaugeMetricFamily(p + "servers", "vLLM servers discovered, by source.", labels=["source"])
        by_source = {"docker": 0, "static": 0}
        for t in targets:
            by_source[t.source] = by_source.get(t.source, 0) + 1
            st = states[t.address]
            lbl = [t.address, t.container, t.source]
            up.add_metric(lbl, 1 if st.up else 0)
            reachable.add_metric(lbl, 1 if st.reachable else 0)
            probe.add_metric(lbl, st.probe_seconds)
            for model, length in st.models:
                info.add_metric([*lbl, model], 1)
                if length is not None:
                    max_len.add_metric([*lbl, model], length)
            for gpu in t.gpus:
                gpus.add_metric([*lbl, gpu], 1)
            if t.source == "docker":
                restarts.add_metric(lbl, t.restarts)
        for source, n in sorted(by_source.items()):
            count.add_metric([source], n)
        return [up, reachable, info, max_len, gpus, restarts, probe, count]


def parse_models(data: object) -> list[tuple[str, int | None]] | None:
    """``GET /v1/models`` body -> [(id, max_model_len)], or None when it is not that shape."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return None
    out: list[tuple[str, int | None]] = []
    for item in data["data"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return None
        length = item.get("max_model_len")
        out.append((item["id"], int(length) if isinstance(length, (int, float)) and length > 0 else None))
    return out

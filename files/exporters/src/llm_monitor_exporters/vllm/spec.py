"""``llm-monitor-exporter vllm``: config section ``vllm:`` (no own flags), the collector."""

from __future__ import annotations

from typing import Any

from llm_monitor_exporters.core.collector import Collector
from llm_monitor_exporters.core.spec import ExporterSpec
from llm_monitor_exporters.vllm.vllm import VllmCollector, VllmConfig


def build(cfg: Any) -> Collector:
    return VllmCollector(cfg)


SPEC = ExporterSpec(
    description="Discovers vLLM servers (containers by image, label or command line; static endpoints), probes "
    "/health and /v1/models, and serves a Prometheus HTTP SD document (/sd/vllm) so Prometheus "
    "scrapes vLLM's native /metrics.",
    config_class=VllmConfig,
    build=build,
)

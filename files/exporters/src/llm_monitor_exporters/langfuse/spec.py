"""``llm-monitor-exporter langfuse``: config section ``langfuse:`` (no own flags: keys never go on the command
line), the collector."""

from __future__ import annotations

from typing import Any

from llm_monitor_exporters.core.collector import Collector
from llm_monitor_exporters.core.spec import ExporterSpec
from llm_monitor_exporters.langfuse.langfuse import LangfuseCollector, LangfuseConfig


def build(cfg: Any) -> Collector:
    return LangfuseCollector(cfg)


SPEC = ExporterSpec(
    description="Polls the Langfuse public API per project (health, metrics/daily, metrics queries) every "
    "poll_interval, caches between polls, backs off on 429/5xx and counts its own API calls.",
    config_class=LangfuseConfig,
    build=build,
)

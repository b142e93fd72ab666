"""``llm-monitor-exporter litellm``: config section ``litellm:`` (no own flags: the key never goes on the command
line), the collector."""

from __future__ import annotations

from typing import Any

from llm_monitor_exporters.core.collector import Collector
from llm_monitor_exporters.core.spec import ExporterSpec
from llm_monitor_exporters.litellm.litellm import LitellmCollector, LitellmConfig


def build(cfg: Any) -> Collector:
    return LitellmCollector(cfg)


SPEC = ExporterSpec(
    description="Polls a LiteLLM proxy: /health/liveliness, /health/readiness, /model/info (no secrets exported), "
    "/health at most every health_interval, and the spend endpoints when a database is connected. "
    "The master key comes from master_key_file or master_key_env, never the command line.",
    config_class=LitellmConfig,
    build=build,
)

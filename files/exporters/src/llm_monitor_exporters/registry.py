"""The table of exporters: name, default metrics port, one-line summary, and where each one's spec is.

Importing this module imports nothing but the standard library (no aiohttp, no pynvml, no exporter), so the
command line's top-level ``--help`` and other code (the Ansible role's unit tests, for one) can read the table
cheaply. :meth:`ExporterEntry.load` imports one exporter's spec when it is about to run::

    from llm_monitor_exporters.registry import EXPORTERS, by_name
    for e in EXPORTERS:
        print(e.name, e.default_port, e.summary)
    spec = by_name("gpu").load()     # imports llm_monitor_exporters.gpu.spec (and the GPU collector)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_monitor_exporters.core.spec import ExporterSpec


@dataclass(frozen=True)
class ExporterEntry:
    #: the subcommand (``llm-monitor-exporter <name>``) and the key of its config file section
    name: str
    #: default port of its metrics endpoint (``--listen-address :<port>``)
    default_port: int
    #: one line for ``llm-monitor-exporter --help``
    summary: str
    #: ``"module:attribute"`` of its :class:`~llm_monitor_exporters.core.spec.ExporterSpec`
    spec_ref: str

    @property
    def module(self) -> str:
        return self.spec_ref.partition(":")[0]

    def load(self) -> ExporterSpec:
        """Import this exporter's spec module (and with it the exporter) and return its spec."""
        module, _, attribute = self.spec_ref.partition(":")
        spec: ExporterSpec = getattr(importlib.import_module(module), attribute)
        return spec


EXPORTERS: tuple[ExporterEntry, ...] = (
    ExporterEntry(
        "gpu", 9835, "NVIDIA GPU metrics from NVML (llm_monitor_gpu_*)", "llm_monitor_exporters.gpu.spec:SPEC"
    ),
    ExporterEntry(
        "containers",
        9417,
        "Docker container metrics from cgroups (container_*, llm_monitor_container_*)",
        "llm_monitor_exporters.containers.spec:SPEC",
    ),
    ExporterEntry(
        "vllm",
        9436,
        "vLLM server discovery (Docker + static) and Prometheus HTTP SD (llm_monitor_vllm_*)",
        "llm_monitor_exporters.vllm.spec:SPEC",
    ),
    ExporterEntry(
        "litellm",
        9437,
        "LiteLLM proxy liveness, catalog, cached deployment health, spend (llm_monitor_litellm_*)",
        "llm_monitor_exporters.litellm.spec:SPEC",
    ),
    ExporterEntry(
        "langfuse",
        9438,
        "Langfuse usage, cost, latency and errors per project (llm_monitor_langfuse_*)",
        "llm_monitor_exporters.langfuse.spec:SPEC",
    ),
    ExporterEntry(
        "ollama_proxy",
        9439,
        "Transparent Ollama monitoring proxy (llm_monitor_ollama_*)",
        "llm_monitor_exporters.ollama.spec:SPEC",
    ),
)

#: exporter names in registry order
NAMES: tuple[str, ...] = tuple(e.name for e in EXPORTERS)


def by_name(name: str) -> ExporterEntry:
    """The entry of one exporter; KeyError naming the known ones otherwise."""
    for entry in EXPORTERS:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown exporter {name!r} (available: {', '.join(NAMES)})")

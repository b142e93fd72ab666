"""``llm-monitor-exporter containers``: flags, config section ``containers:``, the collector."""

from __future__ import annotations

import argparse
from typing import Any

from llm_monitor_exporters.containers.containers import ContainerCollector, ContainersConfig
from llm_monitor_exporters.core.collector import Collector
from llm_monitor_exporters.core.spec import ExporterSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("containers exporter")
    g.add_argument("--docker-url", metavar="URL", help="Docker API endpoint (containers.docker_url)")
    g.add_argument("--cgroup-root", metavar="DIR", help="cgroup mount point (containers.cgroup_root)")
    g.add_argument("--proc-root", metavar="DIR", help="procfs mount point (containers.proc_root)")


def apply_arguments(cfg: ContainersConfig, ns: argparse.Namespace) -> None:
    for attr in ("docker_url", "cgroup_root", "proc_root"):
        value = getattr(ns, attr)
        if value is not None:
            setattr(cfg, attr, value)


def build(cfg: Any) -> Collector:
    return ContainerCollector(cfg)


SPEC = ExporterSpec(
    description="Exports cAdvisor-compatible container metrics read straight from cgroup v1/v2 files and "
    "/proc/<pid>/net/dev, with names and labels from the Docker API (list/inspect and events; "
    "never the stats API).",
    config_class=ContainersConfig,
    add_arguments=add_arguments,
    apply_arguments=apply_arguments,
    build=build,
)

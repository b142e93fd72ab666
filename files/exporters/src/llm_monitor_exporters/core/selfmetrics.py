"""The exporter's own metrics (``llm_monitor_exporter_*``), rendered with every snapshot.

All of them carry an ``exporter`` label (``gpu``, ``containers``) so one alert rule covers every
exporter of this package:

- ``llm_monitor_exporter_build_info{exporter,version}`` 1
- ``llm_monitor_exporter_up{exporter,upstream}`` 1 when the upstream (nvml, docker, cgroup) answered
  in the last cycle, else 0
- ``llm_monitor_exporter_collections_total{exporter}`` completed collection cycles
- ``llm_monitor_exporter_collection_errors_total{exporter,kind}`` errors by kind
- ``llm_monitor_exporter_collection_duration_seconds{exporter}`` wall time of the last cycle
- ``llm_monitor_exporter_collection_cpu_seconds{exporter}`` CPU time (collection thread) of the last cycle
- ``llm_monitor_exporter_last_success_timestamp_seconds{exporter}`` end of the last successful cycle
- ``llm_monitor_exporter_snapshot_age_seconds{exporter}`` (computed per scrape) age of the served snapshot
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_monitor_exporters import __version__

PREFIX = "llm_monitor_exporter_"


class SelfMetrics:
    """Plain counters and gauges (no prometheus_client global state, no ``_created`` series)."""

    def __init__(self, exporter: str) -> None:
        self.exporter = exporter
        self.collections = 0
        self.errors: dict[str, int] = {}
        self.duration = 0.0
        self.cpu = 0.0
        self.last_success = 0.0
        self.upstreams: dict[str, bool] = {}

    def declare_error_kinds(self, kinds: Iterable[str]) -> None:
        """Pre-create error counters at 0 so that ``increase()`` sees the first error."""
        for kind in kinds:
            self.errors.setdefault(kind, 0)

    def record_cycle(
        self,
        *,
        duration: float,
        cpu: float,
        ok: bool,
        finished_at: float,
        upstreams: Mapping[str, bool],
        errors: Mapping[str, int],
    ) -> None:
        self.collections += 1
        self.duration = duration
        self.cpu = cpu
        if ok:
            self.last_success = finished_at
        self.upstreams.update(upstreams)
        for kind, count in errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count

    def families(self) -> list[Metric]:
        ex = [self.exporter]
        build = GaugeMetricFamily(
            PREFIX + "build_info", "Build information of the exporter (always 1).", labels=["exporter", "version"]
        )
        build.add_metric([self.exporter, __version__], 1)
        up = GaugeMetricFamily(
            PREFIX + "up",
            "Whether the upstream answered in the last collection (1) or not (0).",
            labels=["exporter", "upstream"],
        )
        for upstream, ok in sorted(self.upstreams.items()):
            up.add_metric([self.exporter, upstream], 1 if ok else 0)
        total = CounterMetricFamily(PREFIX + "collections", "Completed collection cycles.", labels=["exporter"])
        total.add_metric(ex, self.collections)
        errors = CounterMetricFamily(
            PREFIX + "collection_errors", "Collection errors by kind.", labels=["exporter", "kind"]
        )
        for kind, count in sorted(self.errors.items()):
            errors.add_metric([self.exporter, kind], count)
        duration = GaugeMetricFamily(
            PREFIX + "collection_duration_seconds",
            "Wall-clock duration of the last collection cycle.",
            labels=["exporter"],
        )
        duration.add_metric(ex, self.duration)
        cpu = GaugeMetricFamily(
            PREFIX + "collection_cpu_seconds",
            "CPU time used by the collection thread in the last cycle.",
            labels=["exporter"],
        )
        cpu.add_metric(ex, self.cpu)
        last = GaugeMetricFamily(
            PREFIX + "last_success_timestamp_seconds",
            "Unix time of the end of the last successful collection cycle (0: none yet).",
            labels=["exporter"],
        )
        last.add_metric(ex, self.last_success)
        return [build, up, total, errors, duration, cpu, last]


def snapshot_age_text(exporter: str, age: float) -> bytes:
    """Exposition text for the per-scrape snapshot age gauge (appended to the pre-rendered bytes)."""
    name = PREFIX + "snapshot_age_seconds"
    return (
        f"# HELP {name} Seconds since the served snapshot was collected.\n"
        f"# TYPE {name} gauge\n"
        f'{name}{{exporter="{exporter}"}} {age:.3f}\n'
    ).encode()

"""Container exporter: cAdvisor-compatible names from cgroup files, metadata from Docker events."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from llm_monitor_exporters.core.collector import Collector, Snapshot
from llm_monitor_exporters.core.config import ConfigError, opt
from llm_monitor_exporters.core.procfs import read_net_dev
from llm_monitor_exporters.docker.cgroups import CgroupReader, CgroupStats
from llm_monitor_exporters.docker.docker_api import DockerURLError
from llm_monitor_exporters.docker.docker_meta import ContainerMeta, DockerMetadata, MetadataSource

log = logging.getLogger(__name__)

LABELS = ["name", "id", "image", "compose_project", "compose_service"]
STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy")


@dataclass
class ContainersConfig:
    docker_url: str = opt("unix:///var/run/docker.sock", help="Docker API endpoint (metadata only)")
    docker_timeout: float = opt(10.0, minimum=0.1, help="seconds before a Docker API call times out")
    cgroup_root: str = opt("/sys/fs/cgroup", help="cgroup mount (v1 or v2, detected)")
    proc_root: str = opt("/proc", help="procfs mount (network counters of the container's init pid)")
    resync_interval: float = opt(60.0, minimum=1, help="seconds between full resyncs of the container list")
    reconnect_max_backoff: float = opt(30.0, minimum=0.1, help="maximum seconds between reconnect attempts")
    include_stopped: bool = opt(True, help="also report stopped containers (state, exit code, restarts)")


# name -> (type, help, extra labels)
METRICS: dict[str, tuple[str, str, list[str]]] = {
    "container_cpu_usage_seconds": ("counter", "Cumulative CPU time consumed.", []),
    "container_cpu_user_seconds": ("counter", "Cumulative user CPU time consumed.", []),
    "container_cpu_system_seconds": ("counter", "Cumulative system CPU time consumed.", []),
    "container_cpu_cfs_periods": ("counter", "Number of elapsed CFS enforcement periods.", []),
    "container_cpu_cfs_throttled_periods": ("counter", "Number of throttled CFS periods.", []),
    "container_cpu_cfs_throttled_seconds": ("counter", "Total time the container was throttled.", []),
    "container_memory_usage_bytes": (
        "gauge",
        "Current memory usage, including all memory regardless of when it was accessed.",
        [],
    ),
    "container_memory_working_set_bytes": ("gauge", "Current working set (usage minus inactive file cache).", []),
    "container_memory_rss": ("gauge", "Size of RSS (anonymous memory) in bytes.", []),
    "container_memory_cache": ("gauge", "Page cache memory in bytes.", []),
    "container_memory_max_usage_bytes": ("gauge", "Maximum memory usage recorded.", []),
    "container_spec_memory_limit_bytes": ("gauge", "Memory limit (0 when unlimited).", []),
    "container_fs_reads_bytes": ("counter", "Cumulative bytes read (block IO, all devices).", []),
    "container_fs_writes_bytes": ("counter", "Cumulative bytes written (block IO, all devices).", []),
    "container_fs_reads": ("counter", "Cumulative completed reads (block IO, all devices).", []),
    "container_fs_writes": ("counter", "Cumulative completed writes (block IO, all devices).", []),
    "container_network_receive_bytes": ("counter", "Cumulative bytes received.", ["interface"]),
    "container_network_transmit_bytes": ("counter", "Cumulative bytes transmitted.", ["interface"]),
    "container_network_receive_packets": ("counter", "Cumulative packets received.", ["interface"]),
    "container_network_transmit_packets": ("counter", "Cumulative packets transmitted.", ["interface"]),
    "container_network_receive_errors": ("counter", "Cumulative receive errors.", ["interface"]),
    "container_network_transmit_errors": ("counter", "Cumulative transmit errors.", ["interface"]),
    "container_network_receive_packets_dropped": ("counter", "Cumulative received packets dropped.", ["interface"]),
    "container_network_transmit_packets_dropped": ("counter", "Cumulative transmitted packets dropped.", ["interface"]),
    "container_start_time_seconds": ("gauge", "Start time of the container since the unix epoch.", []),
    "container_last_seen": ("gauge", "Last time the exporter saw the container (unix seconds).", []),
    "llm_monitor_container_pids": ("gauge", "Number of tasks (processes and threads) in the container.", []),
    "llm_monitor_container_restarts": ("counter", "Restarts by Docker's restart policy (RestartCount).", []),
    "llm_monitor_container_state": ("gauge", "Container state (1 for the current state, 0 for the others).", ["state"]),
    "llm_monitor_container_health_status": (
        "gauge",
        "Health check status (1 for the current one); only for containers with a health check.",
        ["status"],
    ),
    "llm_monitor_container_oom_kills": (
        "counter",
        "Processes killed by the OOM killer in the container (cgroup oom_kill, else Docker oom events seen).",
        [],
    ),
    "llm_monitor_container_oom_killed": ("gauge", "Whether Docker reports the container as OOM-killed.", []),
    "llm_monitor_container_exit_code": ("gauge", "Exit code of the last run (meaningful when not running).", []),
    "llm_monitor_container_gpu_assigned": (
        "gauge",
        "GPU assigned to the container (DeviceRequests or NVIDIA_VISIBLE_DEVICES): device index, UUID or 'all'.",
        ["gpu"],
    ),
    "llm_monitor_containers": ("gauge", "Number of containers known, by state.", ["state"]),
}

_NET = (  # (metric, index in /proc/net/dev fields)
    ("container_network_receive_bytes", 0),
    ("container_network_receive_packets", 1),
    ("container_network_receive_errors", 2),
    ("container_network_receive_packets_dropped", 3),
    ("container_network_transmit_bytes", 8),
    ("container_network_transmit_packets", 9),
    ("container_network_transmit_errors", 10),
    ("container_network_transmit_packets_dropped", 11),
)
_CGROUP = (
    ("container_cpu_usage_seconds", "cpu_usage_seconds"),
    ("container_cpu_user_seconds", "cpu_user_seconds"),
    ("container_cpu_system_seconds", "cpu_system_seconds"),
    ("container_cpu_cfs_periods", "cpu_periods"),
    ("container_cpu_cfs_throttled_periods", "cpu_throttled_periods"),
    ("container_cpu_cfs_throttled_seconds", "cpu_throttled_seconds"),
    ("container_memory_usage_bytes", "memory_usage_bytes"),
    ("container_memory_working_set_bytes", "memory_working_set_bytes"),
    ("container_memory_rss", "memory_rss_bytes"),
    ("container_memory_cache", "memory_cache_bytes"),
    ("container_memory_max_usage_bytes", "memory_max_usage_bytes"),
    ("container_spec_memory_limit_bytes", "memory_limit_bytes"),
    ("container_fs_reads_bytes", "io_read_bytes"),
    ("container_fs_writes_bytes", "io_write_bytes"),
    ("container_fs_reads", "io_reads"),
    ("container_fs_writes", "io_writes"),
    ("llm_monitor_container_pids", "pids"),
)


class ContainerCollector(Collector):
    name = "containers"
    error_kinds = ("cgroup_missing", "net_read")
    upstream_names = ("docker", "cgroup")

    def __init__(self, config: ContainersConfig, metadata: MetadataSource | None = None) -> None:
        self.config = config
        try:
            self.metadata: MetadataSource = metadata or DockerMetadata(
                config.docker_url,
                timeout=config.docker_timeout,
                resync_interval=config.resync_interval,
                max_backoff=config.reconnect_max_backoff,
                include_stopped=config.include_stopped,
            )
        except DockerURLError as exc:  # here so that --check-config refuses it too
            raise ConfigError(f"containers.docker_url: {exc}") from exc
        self.cgroups = CgroupReader(config.cgroup_root, config.proc_root)
        self.proc_root = Path(config.proc_root)

    def start(self) -> None:
        self.metadata.start()

    def close(self) -> None:
        self.metadata.stop()

    def collect_snapshot(self) -> Snapshot:
        docker_up, containers, oom_events = self.metadata.snapshot()
        errors: dict[str, int] = {}
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for name, (kind, doc, extra) in METRICS.items():
            labels = extra if name == "llm_monitor_containers" else [*LABELS, *extra]
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fams[name] = cls(name, doc, labels=labels)
        now = time.time()
        by_state: dict[str, int] = dict.fromkeys(STATES, 0)
        running_seen = found_cgroup = 0
        for cid, meta in sorted(containers.items(), key=lambda kv: kv[1].name):
            lb = [meta.name, cid[:12], meta.image, meta.compose_project, meta.compose_service]
            by_state[meta.state] = by_state.get(meta.state, 0) + 1
            for state in STATES:
                fams["llm_monitor_container_state"].add_metric([*lb, state], 1 if meta.state == state else 0)
            if meta.health:
                for status in HEALTH:
                    fams["llm_monitor_container_health_status"].add_metric(
                        [*lb, status], 1 if meta.health == status else 0
                    )
            fams["llm_monitor_container_restarts"].add_metric(lb, meta.restart_count)
            fams["llm_monitor_container_oom_killed"].add_metric(lb, 1 if meta.oom_killed else 0)
            fams["llm_monitor_container_exit_code"].add_metric(lb, meta.exit_code)
            for gpu in meta.gpus:
                fams["llm_monitor_container_gpu_assigned"].add_metric([*lb, gpu], 1)
            if meta.started_at is not None:
                fams["container_start_time_seconds"].add_metric(lb, meta.started_at)
            oom = oom_events.get(cid, 0)
            if meta.state in ("running", "paused", "restarting"):
                running_seen += 1
                stats = self.cgroups.read(cid, meta.pid)
                if stats is None:
                    errors["cgroup_missing"] = errors.get("cgroup_missing", 0) + 1
                else:
                    found_cgroup += 1
                    self._add_cgroup(fams, lb, stats)
                    oom = max(oom, stats.oom_kills or 0)
                    fams["container_last_seen"].add_metric(lb, now)
                if meta.pid > 0 and meta.network_mode != "host":
                    self._add_net(fams, lb, meta, errors)
            fams["llm_monitor_container_oom_kills"].add_metric(lb, oom)
        self.cgroups.forget(set(containers))
        for state, count in sorted(by_state.items()):
            fams["llm_monitor_containers"].add_metric([state], count)
        cgroup_ok = self.cgroups.available() and (running_seen == 0 or found_cgroup > 0)
        return Snapshot(
            families=list(fams.values()), upstreams={"docker": docker_up, "cgroup": cgroup_ok}, errors=errors
        )

    @staticmethod
    def _add_cgroup(
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily], lb: list[str], stats: CgroupStats
    ) -> None:
        for metric, attr in _CGROUP:
            value = getattr(stats, attr)
            if value is not None:
                fams[metric].add_metric(lb, value)

    def _add_net(
        self,
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily],
        lb: list[str],
        meta: ContainerMeta,
        errors: dict[str, int],
    ) -> None:
        try:
            interfaces = read_net_dev(self.proc_root / str(meta.pid) / "net" / "dev")
        except (OSError, ValueError):
            errors["net_read"] = errors.get("net_read", 0) + 1
            return
        for iface, values in sorted(interfaces.items()):
            if iface == "lo":
                continue
            for metric, idx in _NET:
                fams[metric].add_metric([*lb, iface], values[idx])

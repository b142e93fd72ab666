"""cgroup v1/v2 readers and the container collector against recorded fixture trees (no Docker)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import FIXTURES, parse_samples, value
from llm_monitor_exporters.containers.containers import ContainerCollector, ContainersConfig
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.core.procfs import container_id_from_cgroup, read_net_dev
from llm_monitor_exporters.docker.cgroups import CgroupReader
from llm_monitor_exporters.docker.docker_meta import (
    ContainerMeta,
    gpus_from_inspect,
    meta_from_inspect,
    parse_docker_time,
)

V1_ID = "2323da2802e69eed7296fde13a0eee36046b8cbb1f26c580328d9eea69a566e3"
V1_PID = 323
V1S_ID = "c" * 12 + "3" * 52
V2_SYSTEMD = "a" * 12 + "1" * 52
V2_CGROUPFS = "b" * 12 + "2" * 52


def test_v1_recorded_tree() -> None:
    r = CgroupReader(FIXTURES / "cgroup_v1", FIXTURES / "proc")
    assert r.version == 1
    s = r.read(V1_ID, V1_PID)
    assert s is not None
    assert s.cpu_usage_seconds == pytest.approx(0.255306321)
    assert s.memory_usage_bytes == 22208512
    assert s.memory_limit_bytes == 268435456
    assert s.memory_working_set_bytes == 22208512 - 20971520
    assert s.memory_rss_bytes == 53248
    assert s.memory_cache_bytes == 20975616
    assert s.oom_kills == 0
    assert (s.io_read_bytes, s.io_write_bytes) == (0, 0)
    assert s.pids is not None
    assert s.pids >= 1
    assert s.cpu_user_seconds is not None
    assert s.cpu_system_seconds is not None


def test_v1_systemd_layout_and_unlimited_memory() -> None:
    r = CgroupReader(FIXTURES / "cgroup_v1_systemd")
    s = r.read(V1S_ID)
    assert s is not None
    assert s.cpu_usage_seconds == 5.0
    assert s.cpu_user_seconds == pytest.approx(400 / r._hz)
    assert s.memory_limit_bytes == 0  # 9223372036854771712 = unlimited
    assert s.memory_working_set_bytes == 104857600 - 20971520
    assert s.oom_kills == 1
    assert (s.io_read_bytes, s.io_write_bytes) == (4096000 + 1000, 8192000)
    assert (s.io_reads, s.io_writes) == (100, 200)
    assert s.pids == 3


def test_v2_both_layouts() -> None:
    r = CgroupReader(FIXTURES / "cgroup_v2")
    assert r.version == 2
    a = r.read(V2_SYSTEMD)
    assert a is not None
    assert a.cpu_usage_seconds == 12.5
    assert (a.cpu_user_seconds, a.cpu_system_seconds) == (9.0, 3.5)
    assert (a.cpu_periods, a.cpu_throttled_periods, a.cpu_throttled_seconds) == (1000, 25, 1.5)
    assert a.memory_usage_bytes == 536870912
    assert a.memory_working_set_bytes == 536870912 - 33554432
    assert a.memory_limit_bytes == 1073741824
    assert a.memory_max_usage_bytes == 600000000
    assert a.oom_kills == 2
    assert (a.io_read_bytes, a.io_write_bytes, a.io_reads, a.io_writes) == (3145728, 4194304, 48, 128)
    b = r.read(V2_CGROUPFS)
    assert b is not None
    assert b.memory_limit_bytes == 0  # "max"
    assert b.memory_max_usage_bytes is None
    assert (b.io_read_bytes, b.io_write_bytes) == (0, 0)
    assert r.read("f" * 64) is None


def test_procfs_helpers() -> None:
    net = read_net_dev(FIXTURES / "proc" / str(V1_PID) / "net" / "dev")
    assert net["eth0"][0] > 0
    assert "lo" in net
    text = (FIXTURES / "proc" / str(V1_PID) / "cgroup").read_text()
    assert container_id_from_cgroup(text) == V1_ID
    assert container_id_from_cgroup("0::/system.slice/docker-" + V2_SYSTEMD + ".scope\n") == V2_SYSTEMD
    assert container_id_from_cgroup("0::/user.slice\n") is None


def test_inspect_parsing() -> None:
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("2024-05-01T10:00:00.123456789Z") == pytest.approx(1714557600.123456)
    assert parse_docker_time("2024-05-01T10:00:00Z") == 1714557600
    data = {
        "Id": V1_ID,
        "Name": "/vllm-1",
        "RestartCount": 2,
        "Config": {
            "Image": "vllm/vllm-openai:v0.11",
            "Env": ["A=1", "NVIDIA_VISIBLE_DEVICES=2,3"],
            "Labels": {"com.docker.compose.project": "llm", "com.docker.compose.service": "vllm"},
        },
        "State": {
            "Status": "running",
            "Pid": 42,
            "OOMKilled": False,
            "ExitCode": 0,
            "StartedAt": "2024-05-01T10:00:00Z",
            "Health": {"Status": "healthy"},
        },
        "HostConfig": {
            "NetworkMode": "bridge",
            "DeviceRequests": [{"Driver": "", "Count": 0, "DeviceIDs": ["0", "GPU-abc"], "Capabilities": [["gpu"]]}],
        },
    }
    meta = meta_from_inspect(data)
    assert meta.name == "vllm-1"
    assert meta.compose_project == "llm"
    assert meta.compose_service == "vllm"
    assert meta.gpus == ["0", "GPU-abc", "2", "3"]
    assert meta.health == "healthy"
    assert meta.restart_count == 2
    assert meta.pid == 42
    all_gpus = {"HostConfig": {"DeviceRequests": [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}]}}
    assert gpus_from_inspect(all_gpus) == ["all"]
    assert gpus_from_inspect({"Config": {"Env": ["NVIDIA_VISIBLE_DEVICES=void"]}}) == []


class FakeMetadata:
    def __init__(self, up: bool, containers: dict[str, ContainerMeta]) -> None:
        self.up = up
        self.containers = containers

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def snapshot(self) -> tuple[bool, dict[str, ContainerMeta], dict[str, int]]:
        return self.up, dict(self.containers), {}


def _collector(root: str, metas: list[ContainerMeta], up: bool = True) -> SnapshotLoop:
    cfg = ContainersConfig(cgroup_root=str(FIXTURES / root), proc_root=str(FIXTURES / "proc"))
    collector = ContainerCollector(cfg, FakeMetadata(up, {m.id: m for m in metas}))
    return SnapshotLoop(collector, interval=1)


def test_collector_on_recorded_v1(promtool: Callable[[str], None]) -> None:
    metas = [
        ContainerMeta(
            id=V1_ID,
            name="web",
            image="busybox",
            compose_project="demo",
            compose_service="web",
            state="running",
            pid=V1_PID,
            started_at=1714557600.0,
            gpus=["0"],
            health="healthy",
            network_mode="bridge",
        ),
        ContainerMeta(
            id="d" * 64, name="old", image="busybox", state="exited", exit_code=137, restart_count=3, oom_killed=True
        ),
    ]
    loop = _collector("cgroup_v1", metas)
    loop.run_once()
    text = loop.latest().decode()
    promtool(text)
    s = parse_samples(text)
    lb = {"name": "web", "id": V1_ID[:12], "image": "busybox", "compose_project": "demo", "compose_service": "web"}
    assert value(s, "container_cpu_usage_seconds_total", **lb) == pytest.approx(0.255306321)
    assert value(s, "container_memory_usage_bytes", **lb) == 22208512
    assert value(s, "container_memory_working_set_bytes", **lb) == 22208512 - 20971520
    assert value(s, "container_spec_memory_limit_bytes", **lb) == 268435456
    assert value(s, "container_network_receive_bytes_total", interface="eth0", **lb) == 736
    assert value(s, "container_network_receive_bytes_total", interface="lo", **lb) is None
    assert value(s, "container_fs_writes_bytes_total", **lb) == 0
    assert value(s, "container_start_time_seconds", **lb) == 1714557600.0
    assert value(s, "container_last_seen", **lb) is not None
    assert value(s, "llm_monitor_container_state", state="running", **lb) == 1
    assert value(s, "llm_monitor_container_state", state="exited", **lb) == 0
    assert value(s, "llm_monitor_container_health_status", status="healthy", **lb) == 1
    assert value(s, "llm_monitor_container_gpu_assigned", gpu="0", **lb) == 1
    assert value(s, "llm_monitor_container_state", name="old", state="exited") == 1
    assert value(s, "llm_monitor_container_exit_code", name="old") == 137
    assert value(s, "llm_monitor_container_restarts_total", name="old") == 3
    assert value(s, "llm_monitor_container_oom_killed", name="old") == 1
    assert value(s, "container_cpu_usage_seconds_total", name="old") is None  # not running: no cgroup
    assert value(s, "llm_monitor_containers", state="running") == 1
    assert value(s, "llm_monitor_exporter_up", exporter="containers", upstream="docker") == 1
    assert value(s, "llm_monitor_exporter_up", upstream="cgroup") == 1


def test_collector_on_v2(promtool: Callable[[str], None]) -> None:
    metas = [
        ContainerMeta(id=cid, name=f"c{i}", image="img", state="running", pid=0)
        for i, cid in enumerate((V2_SYSTEMD, V2_CGROUPFS))
    ]
    loop = _collector("cgroup_v2", metas, up=False)
    loop.run_once()
    text = loop.latest().decode()
    promtool(text)
    s = parse_samples(text)
    assert value(s, "container_cpu_usage_seconds_total", name="c0") == 12.5
    assert value(s, "container_cpu_cfs_throttled_periods_total", name="c0") == 25
    assert value(s, "llm_monitor_container_oom_kills_total", name="c0") == 2
    assert value(s, "container_fs_reads_bytes_total", name="c0") == 3145728
    assert value(s, "container_spec_memory_limit_bytes", name="c1") == 0
    assert value(s, "llm_monitor_exporter_up", upstream="docker") == 0


def test_missing_cgroup_counts_error() -> None:
    loop = _collector("cgroup_v2", [ContainerMeta(id="e" * 64, name="ghost", image="i", state="running")])
    loop.run_once()
    s = parse_samples(loop.latest().decode())
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="cgroup_missing") == 1
    assert value(s, "llm_monitor_exporter_up", upstream="cgroup") == 0

"""Container exporter against the real Docker engine, plus "daemon stopped and started".

The restart test does NOT touch the machine's shared dockerd: it starts a second, private dockerd
(own --data-root, --exec-root, --pidfile, unix socket, --iptables=false, vfs storage), points the
exporter at its socket, then stops (SIGTERM) and restarts that private daemon.

Never ``--bridge=none`` here: with it, dockerd deletes the host's ``docker0`` interface at startup
(removeDefaultBridgeInterface), breaking the shared daemon's default network. The private daemon
gets its own bridge (``-b lmxbr<N>``, created and deleted by the test) instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import parse_samples, value, wait_for
from llm_monitor_exporters.containers.containers import ContainerCollector, ContainersConfig
from llm_monitor_exporters.core.collector import SnapshotLoop

pytestmark = pytest.mark.docker


@pytest.fixture
def exporter(docker_client: Any) -> Iterator[tuple[ContainerCollector, SnapshotLoop]]:
    url = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    collector = ContainerCollector(ContainersConfig(docker_url=url, resync_interval=60))
    loop = SnapshotLoop(collector, interval=0.2)
    collector.start()
    yield collector, loop
    collector.close()


def _samples(loop: SnapshotLoop) -> dict[str, list[tuple[dict[str, str], float]]]:
    loop.run_once()
    return parse_samples(loop.latest().decode())


def test_real_containers(
    exporter: tuple[ContainerCollector, SnapshotLoop],
    make_container: Callable[..., Any],
    promtool: Callable[[str], None],
) -> None:
    _, loop = exporter
    busy = make_container(
        "busy",
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/tmp/f bs=1M count=8; sleep 600",
        mem_limit="128m",
        labels={"com.docker.compose.project": "lmx", "com.docker.compose.service": "worker"},
        environment={"NVIDIA_VISIBLE_DEVICES": "0,1"},
    )
    name = busy.name
    assert wait_for(
        lambda: value(_samples(loop), "llm_monitor_container_state", name=name, state="running") == 1, timeout=15
    ), "container did not appear via events"
    assert wait_for(
        lambda: (value(_samples(loop), "container_cpu_usage_seconds_total", name=name) or 0) > 0.05, timeout=20
    )
    text = loop.latest().decode()
    promtool(text)
    s = parse_samples(text)
    lb = {
        "name": name,
        "id": busy.id[:12],
        "image": "llm-monitor-test/busybox:1",
        "compose_project": "lmx",
        "compose_service": "worker",
    }
    assert value(s, "container_memory_usage_bytes", **lb) > 0
    assert value(s, "container_memory_working_set_bytes", **lb) >= 0
    assert value(s, "container_spec_memory_limit_bytes", **lb) == 128 * 1024 * 1024
    assert value(s, "container_start_time_seconds", **lb) > time.time() - 120
    assert value(s, "container_last_seen", **lb) > time.time() - 10
    assert value(s, "container_fs_reads_bytes_total", **lb) is not None
    assert value(s, "llm_monitor_container_gpu_assigned", gpu="1", **lb) == 1
    assert value(s, "llm_monitor_container_restarts_total", **lb) == 0
    assert value(s, "llm_monitor_exporter_up", upstream="docker") == 1
    assert value(s, "llm_monitor_exporter_up", upstream="cgroup") == 1
    # the default bridge gives the container an eth0 (unless the engine runs --bridge=none)
    ifaces = {lbl["interface"] for lbl, _ in s.get("container_network_receive_bytes_total", []) if lbl["name"] == name}
    assert "lo" not in ifaces

    # state changes arrive through the events stream (resync is 60 s away)
    busy.stop(timeout=0)
    assert wait_for(
        lambda: value(_samples(loop), "llm_monitor_container_state", name=name, state="exited") == 1, timeout=15
    )
    assert value(_samples(loop), "container_cpu_usage_seconds_total", name=name) is None
    busy.remove(force=True)
    assert wait_for(
        lambda: value(_samples(loop), "llm_monitor_container_state", name=name, state="exited") is None, timeout=15
    )


def test_oom_kill_counted(
    exporter: tuple[ContainerCollector, SnapshotLoop], make_container: Callable[..., Any]
) -> None:
    _, loop = exporter
    # a shell that doubles a string until the 8 MiB limit kills it; the container keeps running (sleep) after
    c = make_container(
        "oom", "sh -c 'x=aaaaaaaaaa; while true; do x=$x$x; done'; sleep 600", mem_limit="8m", memswap_limit="8m"
    )
    assert wait_for(
        lambda: (value(_samples(loop), "llm_monitor_container_oom_kills_total", name=c.name) or 0) >= 1, timeout=20
    )


class PrivateDockerd:
    def __init__(self, root: Path, bridge: str) -> None:
        self.root = root
        self.bridge = bridge
        self.sock = root / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "docker.pid"),
                "-H",
                self.url,
                f"--bridge={self.bridge}",
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
                "--mtu",
                "1400",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        ok = wait_for(
            lambda: subprocess.run(["docker", "-H", self.url, "info"], capture_output=True, timeout=5).returncode == 0,
            timeout=30,
            step=0.2,
        )
        if not ok:
            self.stop()
            pytest.skip("private dockerd did not start: " + (self.root / "dockerd.log").read_text()[-400:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # dockerd stops its own containerd child
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def private_dockerd(docker_client: Any) -> Iterator[PrivateDockerd]:
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.skip("needs root and the dockerd binary to start a private daemon")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (ip) to create the private daemon's bridge")
    root = Path(tempfile.mkdtemp(prefix="lmx-dockerd-", dir="/tmp"))
    bridge = f"lmxbr{os.getpid() % 100000}"
    subnet = f"10.213.{os.getpid() % 200 + 20}.1/24"
    for cmd in (
        ["ip", "link", "add", bridge, "type", "bridge"],
        ["ip", "addr", "add", subnet, "dev", bridge],
        ["ip", "link", "set", bridge, "up"],
    ):
        if subprocess.run(cmd, capture_output=True, timeout=10).returncode != 0:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=10)
            pytest.skip(f"cannot create bridge {bridge} for the private dockerd")
    daemon = PrivateDockerd(root, bridge)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=10)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_docker_daemon_stopped_and_started(private_dockerd: PrivateDockerd) -> None:
    collector = ContainerCollector(
        ContainersConfig(docker_url=private_dockerd.url, reconnect_max_backoff=0.5, docker_timeout=2)
    )
    loop = SnapshotLoop(collector, interval=0.2)
    collector.start()
    try:
        up = lambda: value(_samples(loop), "llm_monitor_exporter_up", upstream="docker")  # noqa: E731
        assert wait_for(lambda: up() == 1, timeout=15)
        private_dockerd.stop()
        assert wait_for(lambda: up() == 0, timeout=15), "docker down not reported"
        # still serving while the daemon is gone
        assert value(_samples(loop), "llm_monitor_exporter_collections_total", exporter="containers") > 1
        private_dockerd.start()
        assert wait_for(lambda: up() == 1, timeout=20), "did not reconnect after the daemon came back"
    finally:
        collector.close()


def test_socket_missing_reports_down(tmp_path: Path) -> None:
    collector = ContainerCollector(
        ContainersConfig(docker_url=f"unix://{tmp_path}/absent.sock", reconnect_max_backoff=0.2, docker_timeout=1)
    )
    loop = SnapshotLoop(collector, interval=0.2)
    collector.start()
    try:
        time.sleep(0.5)
        s = _samples(loop)
        assert value(s, "llm_monitor_exporter_up", upstream="docker") == 0
    finally:
        collector.close()

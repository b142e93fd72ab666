"""Small /proc readers shared by the exporters."""

from __future__ import annotations

import os
import re
from pathlib import Path

# docker (cgroupfs: /docker/<id>, systemd: docker-<id>.scope), containerd/cri, podman (libpod-<id>), and
# Kubernetes with the cgroupfs driver, where the id follows the pod's cgroup with no runtime prefix:
# /kubepods/burstable/pod<uid>/<id>
_CONTAINER_ID = re.compile(
    r"(?:(?:docker|cri-containerd|crio|libpod|containerd)[-/:]|/kubepods[^\n]*?/pod[0-9a-fA-F_-]+/)([0-9a-f]{64})"
)
#: the inode of the initial (host) PID namespace, fixed by the kernel (PROC_PID_INIT_INO)
_INIT_PID_NAMESPACE = "pid:[4026531836]"


def container_id_from_cgroup(text: str) -> str | None:
    """Full 64-hex container id from the content of /proc/<pid>/cgroup, or None."""
    m = _CONTAINER_ID.search(text)
    return m.group(1) if m else None


def process_name(proc_root: Path, pid: int) -> str:
    try:
        return (proc_root / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def process_container_id(proc_root: Path, pid: int) -> str:
    """Short (12 chars) id of the container a process runs in, or "" when not in a container."""
    try:
        text = (proc_root / str(pid) / "cgroup").read_text()
    except OSError:
        return ""
    cid = container_id_from_cgroup(text)
    return cid[:12] if cid else ""


def read_net_dev(path: Path) -> dict[str, tuple[int, ...]]:
    """Parse /proc/<pid>/net/dev: interface -> 16 counters (rx bytes, packets, errs, drop, ...)."""
    out: dict[str, tuple[int, ...]] = {}
    with path.open() as fh:
        for line in fh.readlines()[2:]:
            name, sep, rest = line.partition(":")
            if not sep:
                continue
            fields = rest.split()
            if len(fields) >= 16:
                out[name.strip()] = tuple(int(x) for x in fields[:16])
    return out


def sees_host_pids(proc_root: Path) -> bool | None:
    """Whether ``proc_root`` shows the host's PID namespace, where NVML's PIDs live.

    True for the host's procfs (also when mounted into a container, e.g. at /host/proc: its ``self/status`` then
    lists the exporter's PID in more than one namespace); False for a container's own procfs, where NVML's host
    PIDs would name other processes; None when it cannot tell.
    """
    try:
        status = (proc_root / "self" / "status").read_text()
    except OSError:
        return None
    nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
    if len(nspid) > 1:
        return True
    try:
        return os.readlink(proc_root / "self" / "ns" / "pid") == _INIT_PID_NAMESPACE
    except OSError:
        return None

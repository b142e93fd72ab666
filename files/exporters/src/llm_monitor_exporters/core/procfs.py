"""Small /proc readers shared by the exporters."""

from __future__ import annotations

import re
from pathlib import Path

# docker (cgroupfs: /docker/<id>, systemd: docker-<id>.scope), containerd/cri, podman (libpod-<id>)
_CONTAINER_ID = re.compile(r"(?:docker|cri-containerd|crio|libpod|containerd)[-/:]([0-9a-f]{64})")


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

"""Read container resource usage straight from cgroup files (v1 and v2), never the Docker stats API.

Layouts searched for container ``<id>`` under ``root`` (default ``/sys/fs/cgroup``):

- v1, cgroupfs driver: ``<controller>/docker/<id>/``
- v1, systemd driver: ``<controller>/system.slice/docker-<id>.scope/``
- v2, systemd driver: ``system.slice/docker-<id>.scope/``
- v2, cgroupfs driver: ``docker/<id>/``
- otherwise the path from ``/proc/<pid>/cgroup`` of the container's init process.

v2 is detected by ``<root>/cgroup.controllers``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

V1_CONTROLLERS = ("cpuacct", "cpu", "memory", "blkio", "pids")
UNLIMITED = 1 << 62  # v1 reports ~2**63 - page size for "no limit"


@dataclass
class CgroupStats:
    cpu_usage_seconds: float | None = None
    cpu_user_seconds: float | None = None
    cpu_system_seconds: float | None = None
    cpu_periods: int | None = None
    cpu_throttled_periods: int | None = None
    cpu_throttled_seconds: float | None = None
    memory_usage_bytes: int | None = None
    memory_working_set_bytes: int | None = None
    memory_rss_bytes: int | None = None
    memory_cache_bytes: int | None = None
    memory_max_usage_bytes: int | None = None
    memory_limit_bytes: int | None = None  # 0 = unlimited (as cAdvisor)
    oom_kills: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    io_reads: int | None = None
    io_writes: int | None = None
    pids: int | None = None


def _read(path: Path) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return 0
    try:
        return int(text)
    except ValueError:
        return None


def _kv(path: Path) -> dict[str, int]:
    text = _read(path)
    out: dict[str, int] = {}
    if text is None:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


class CgroupReader:
    """Locates and reads the cgroup of containers; directory lookups are cached per container id."""

    def __init__(self, root: str | Path = "/sys/fs/cgroup", proc_root: str | Path = "/proc") -> None:
        self.root = Path(root)
        self.proc_root = Path(proc_root)
        self.version = 2 if (self.root / "cgroup.controllers").exists() else 1
        self._cache: dict[str, dict[str, Path]] = {}
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def available(self) -> bool:
        return self.root.is_dir()

    def forget(self, keep: set[str]) -> None:
        for cid in list(self._cache):
            if cid not in keep:
                del self._cache[cid]

    def _proc_paths(self, pid: int) -> dict[str, str]:
        text = _read(self.proc_root / str(pid) / "cgroup") if pid > 0 else None
        out: dict[str, str] = {}
        for line in (text or "").splitlines():
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            for ctrl in parts[1].split(",") if parts[1] else ["unified"]:
                out[ctrl] = parts[2]
        return out

    def locate(self, cid: str, pid: int = 0) -> dict[str, Path] | None:
        """Controller name -> directory (v2: key "unified"), or None when not found."""
        cached = self._cache.get(cid)
        if cached is not None:
            return cached
        found: dict[str, Path] = {}
        if self.version == 2:
            for rel in (f"system.slice/docker-{cid}.scope", f"docker/{cid}"):
                if (self.root / rel).is_dir():
                    found["unified"] = self.root / rel
                    break
            else:
                path = self._proc_paths(pid).get("unified")
                if path and (self.root / path.lstrip("/")).is_dir():
                    found["unified"] = self.root / path.lstrip("/")
        else:
            proc: dict[str, str] | None = None
            for ctrl in V1_CONTROLLERS:
                for rel in (f"{ctrl}/docker/{cid}", f"{ctrl}/system.slice/docker-{cid}.scope"):
                    if (self.root / rel).is_dir():
                        found[ctrl] = self.root / rel
                        break
                else:
                    proc = self._proc_paths(pid) if proc is None else proc
                    path = proc.get(ctrl)
                    if path and (self.root / ctrl / path.lstrip("/")).is_dir():
                        found[ctrl] = self.root / ctrl / path.lstrip("/")
        if not found:
            return None
        self._cache[cid] = found
        return found

    def read(self, cid: str, pid: int = 0) -> CgroupStats | None:
        dirs = self.locate(cid, pid)
        if dirs is None:
            return None
        stats = self._read_v2(dirs["unified"]) if self.version == 2 else self._read_v1(dirs)
        if stats.cpu_usage_seconds is None and stats.memory_usage_bytes is None:
            self._cache.pop(cid, None)  # cgroup vanished (container stopped): look it up again next time
            return None
        return stats

    def _read_v1(self, dirs: dict[str, Path]) -> CgroupStats:
        s = CgroupStats()
        cpuacct = dirs.get("cpuacct")
        if cpuacct is not None:
            usage = _int(cpuacct / "cpuacct.usage")
            s.cpu_usage_seconds = usage / 1e9 if usage is not None else None
            stat = _kv(cpuacct / "cpuacct.stat")
            if "user" in stat:
                s.cpu_user_seconds = stat["user"] / self._hz
            if "system" in stat:
                s.cpu_system_seconds = stat["system"] / self._hz
        cpu = dirs.get("cpu")
        if cpu is not None:
            stat = _kv(cpu / "cpu.stat")
            s.cpu_periods = stat.get("nr_periods")
            s.cpu_throttled_periods = stat.get("nr_throttled")
            if "throttled_time" in stat:
                s.cpu_throttled_seconds = stat["throttled_time"] / 1e9
        mem = dirs.get("memory")
        if mem is not None:
            s.memory_usage_bytes = _int(mem / "memory.usage_in_bytes")
            s.memory_max_usage_bytes = _int(mem / "memory.max_usage_in_bytes")
            limit = _int(mem / "memory.limit_in_bytes")
            s.memory_limit_bytes = 0 if limit is not None and limit >= UNLIMITED else limit
            stat = _kv(mem / "memory.stat")
            s.memory_rss_bytes = stat.get("total_rss", stat.get("rss"))
            s.memory_cache_bytes = stat.get("total_cache", stat.get("cache"))
            inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
            if s.memory_usage_bytes is not None:
                s.memory_working_set_bytes = max(0, s.memory_usage_bytes - inactive)
            oom = _kv(mem / "memory.oom_control")
            s.oom_kills = oom.get("oom_kill")
        blkio = dirs.get("blkio")
        if blkio is not None:
            s.io_read_bytes, s.io_write_bytes = self._blkio(blkio, "io_service_bytes")
            s.io_reads, s.io_writes = self._blkio(blkio, "io_serviced")
        pids = dirs.get("pids")
        if pids is not None:
            s.pids = _int(pids / "pids.current")
        return s

    @staticmethod
    def _blkio(path: Path, name: str) -> tuple[int | None, int | None]:
        # Prefer the throttle file (counts all IO incl. direct IO on cgroup v1); fall back to CFQ stats.
        for fname in (f"blkio.throttle.{name}", f"blkio.{name}_recursive", f"blkio.{name}"):
            text = _read(path / fname)
            if text is None:
                continue
            read = write = 0
            seen = False
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3:
                    seen = True
                    if parts[1] == "Read":
                        read += int(parts[2])
                    elif parts[1] == "Write":
                        write += int(parts[2])
            if seen or text.strip().startswith("Total"):
                return read, write
        return None, None

    def _read_v2(self, d: Path) -> CgroupStats:
        s = CgroupStats()
        cpu = _kv(d / "cpu.stat")
        if "usage_usec" in cpu:
            s.cpu_usage_seconds = cpu["usage_usec"] / 1e6
        if "user_usec" in cpu:
            s.cpu_user_seconds = cpu["user_usec"] / 1e6
        if "system_usec" in cpu:
            s.cpu_system_seconds = cpu["system_usec"] / 1e6
        s.cpu_periods = cpu.get("nr_periods")
        s.cpu_throttled_periods = cpu.get("nr_throttled")
        if "throttled_usec" in cpu:
            s.cpu_throttled_seconds = cpu["throttled_usec"] / 1e6
        s.memory_usage_bytes = _int(d / "memory.current")
        s.memory_max_usage_bytes = _int(d / "memory.peak")
        s.memory_limit_bytes = _int(d / "memory.max")
        stat = _kv(d / "memory.stat")
        s.memory_rss_bytes = stat.get("anon")
        s.memory_cache_bytes = stat.get("file")
        if s.memory_usage_bytes is not None:
            s.memory_working_set_bytes = max(0, s.memory_usage_bytes - stat.get("inactive_file", 0))
        events = _kv(d / "memory.events")
        s.oom_kills = events.get("oom_kill")
        text = _read(d / "io.stat")
        if text is not None:
            rb = wb = rios = wios = 0
            for line in text.splitlines():
                for item in line.split()[1:]:
                    key, _, value = item.partition("=")
                    if not value.isdigit():
                        continue
                    if key == "rbytes":
                        rb += int(value)
                    elif key == "wbytes":
                        wb += int(value)
                    elif key == "rios":
                        rios += int(value)
                    elif key == "wios":
                        wios += int(value)
            s.io_read_bytes, s.io_write_bytes, s.io_reads, s.io_writes = rb, wb, rios, wios
        s.pids = _int(d / "pids.current")
        return s

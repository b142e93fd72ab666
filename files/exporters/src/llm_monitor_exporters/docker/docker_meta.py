"""Container metadata from the Docker API (list/inspect only, never stats).

A background thread keeps an in-memory map of containers: a full resync (list + inspect), then the
events stream (``until`` = next resync) re-inspects containers as they change. When the daemon is
unreachable, ``up`` turns False and the thread reconnects with exponential backoff; the last known
containers are kept (their cgroups are still read) until the daemon answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from llm_monitor_exporters.docker.docker_api import DockerClient, EventStream, parse_docker_url

log = logging.getLogger(__name__)


@dataclass
class ContainerMeta:
    id: str
    name: str
    image: str
    compose_project: str = ""
    compose_service: str = ""
    state: str = "unknown"
    health: str | None = None
    restart_count: int = 0
    oom_killed: bool = False
    exit_code: int = 0
    started_at: float | None = None
    pid: int = 0
    network_mode: str = ""
    gpus: list[str] = field(default_factory=list)
    #: the full inspect document, kept only when DockerMetadata(keep_inspect=True) (vllm discovery)
    inspect: dict[str, Any] | None = None


class MetadataSource(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def snapshot(self) -> tuple[bool, dict[str, ContainerMeta], dict[str, int]]: ...


def parse_docker_time(value: str | None) -> float | None:
    """RFC 3339 with nanoseconds (``2024-05-01T10:00:00.123456789Z``) -> unix seconds; zero time -> None."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        frac = ""
        tz = ""
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                frac, tz = rest[:i], rest[i:]
                break
        else:
            frac = rest
        text = f"{head}.{frac[:6].ljust(6, '0')}{tz}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def gpus_from_inspect(data: dict[str, Any]) -> list[str]:
    """GPUs assigned to a container: HostConfig.DeviceRequests and NVIDIA_VISIBLE_DEVICES."""
    out: list[str] = []
    for req in (data.get("HostConfig") or {}).get("DeviceRequests") or []:
        caps = [c for group in (req.get("Capabilities") or []) for c in group]
        if req.get("Driver") not in ("nvidia", "", None) or ("gpu" not in caps and req.get("Driver") != "nvidia"):
            continue
        ids = req.get("DeviceIDs") or []
        count = req.get("Count") or 0
        if ids:
            out.extend(str(i) for i in ids)
        elif count == -1:
            out.append("all")
        elif count > 0:
            out.append(f"count:{count}")
    for env in (data.get("Config") or {}).get("Env") or []:
        key, _, value = env.partition("=")
        if key == "NVIDIA_VISIBLE_DEVICES" and value not in ("", "none", "void"):
            out.extend(v.strip() for v in value.split(",") if v.strip())
    seen: list[str] = []
    for g in out:
        if g not in seen:
            seen.append(g)
    return seen


def meta_from_inspect(data: dict[str, Any]) -> ContainerMeta:
    config = data.get("Config") or {}
    state = data.get("State") or {}
    labels = config.get("Labels") or {}
    health = (state.get("Health") or {}).get("Status")
    return ContainerMeta(
        id=data["Id"],
        name=str(data.get("Name", "")).lstrip("/"),
        image=str(config.get("Image") or data.get("Image", "")),
        compose_project=labels.get("com.docker.compose.project", ""),
        compose_service=labels.get("com.docker.compose.service", ""),
        state=str(state.get("Status") or "unknown"),
        health=str(health) if health else None,
        restart_count=int(data.get("RestartCount") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        exit_code=int(state.get("ExitCode") or 0),
        started_at=parse_docker_time(state.get("StartedAt")),
        pid=int(state.get("Pid") or 0),
        network_mode=str((data.get("HostConfig") or {}).get("NetworkMode") or ""),
        gpus=gpus_from_inspect(data),
    )


class DockerMetadata:
    """Keeps container metadata current from Docker events plus periodic full resyncs."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        resync_interval: float = 60.0,
        max_backoff: float = 30.0,
        include_stopped: bool = True,
        keep_inspect: bool = False,
    ) -> None:
        parse_docker_url(url)  # a URL the client cannot use fails here (DockerURLError), not in the thread
        self.url = url
        self.timeout = timeout
        self.resync_interval = resync_interval
        self.max_backoff = max_backoff
        self.include_stopped = include_stopped
        self.keep_inspect = keep_inspect
        self._lock = threading.Lock()
        self._containers: dict[str, ContainerMeta] = {}
        self._oom_events: dict[str, int] = {}
        self._up = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: EventStream | None = None
        self._client: DockerClient | None = None
        self.resyncs = 0

    def snapshot(self) -> tuple[bool, dict[str, ContainerMeta], dict[str, int]]:
        with self._lock:
            return self._up, dict(self._containers), dict(self._oom_events)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="docker-metadata", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._close_stream()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:
                log.debug("closing the events stream failed", exc_info=True)
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing the docker client failed", exc_info=True)

    def _run(self) -> None:
        backoff = 0.5
        down_logged = False
        while not self._stop.is_set():
            try:
                client = DockerClient(self.url, timeout=self.timeout)
                self._client = client
                if self._stop.is_set():  # stop() may have run before the client was visible to it
                    break
                while not self._stop.is_set():
                    since = int(time.time())
                    self._resync(client)
                    if down_logged:
                        log.info("Docker at %s answers again", self.url)
                    down_logged = False
                    backoff = 0.5
                    self._follow_events(client, since, since + max(1, int(self.resync_interval)))
            except Exception as exc:
                if self._stop.is_set():
                    break
                with self._lock:
                    self._up = False
                if not down_logged:
                    log.warning(
                        "Docker at %s unreachable (%s); reporting up=0 and reconnecting",
                        self.url,
                        exc.__class__.__name__ + ": " + str(exc)[:200],
                    )
                    down_logged = True
                else:
                    log.debug("Docker still unreachable: %s", exc)
                self._close_stream()
                self._stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
        self._close_stream()

    def _resync(self, client: DockerClient) -> None:
        summaries = client.containers(all=self.include_stopped)
        fresh: dict[str, ContainerMeta] = {}
        for summary in summaries:
            cid = summary["Id"]
            meta = self._inspect(client, cid)
            if meta is not None:
                fresh[cid] = meta
        with self._lock:
            self._containers = fresh
            self._oom_events = {k: v for k, v in self._oom_events.items() if k in fresh}
            self._up = True
        self.resyncs += 1

    def _inspect(self, client: DockerClient, cid: str) -> ContainerMeta | None:
        data = client.inspect(cid)
        if data is None:  # removed since it was listed or its event was sent
            return None
        meta = meta_from_inspect(data)
        if self.keep_inspect:
            meta.inspect = data
        return meta

    def _follow_events(self, client: DockerClient, since: int, until: int) -> None:
        stream = client.events(since=since, until=until, filters={"type": "container"})
        self._stream = stream
        if self._stop.is_set():
            stream.close()
            return
        for event in stream:
            if self._stop.is_set():
                return
            action = str(event.get("Action") or event.get("status") or "")
            cid = str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
            if not cid or action.startswith(("exec_", "top", "attach", "resize", "commit", "copy", "archive")):
                continue
            if action == "destroy":
                with self._lock:
                    self._containers.pop(cid, None)
                    self._oom_events.pop(cid, None)
                continue
            if action == "oom":
                with self._lock:
                    self._oom_events[cid] = self._oom_events.get(cid, 0) + 1
            meta = self._inspect(client, cid)
            with self._lock:
                if meta is None or (not self.include_stopped and meta.state != "running"):
                    self._containers.pop(cid, None)
                else:
                    self._containers[cid] = meta
        self._stream = None
        if self._stop.is_set():
            return
        # The stream ended: either `until` was reached (normal) or the daemon went away; the next
        # resync tells which.
        if int(time.time()) < until - 1:
            client.ping()

"""Which containers are vLLM servers, and at which address Prometheus and the exporter reach them.

Pure functions over ``docker inspect`` documents (no Docker calls here), so they are unit-tested
against recorded inspect output.

Address rules (``address_mode``):

- ``auto`` (default): a published port of the server's container port wins (``published``); else a
  container on the host network is reached at the host (``host``); else the container's IP on its
  network (``container_ip``).
- ``published``: ``advertise_host:HostPort`` for Prometheus; the exporter itself probes
  ``127.0.0.1:HostPort`` (it runs on the same host). A binding to one specific host IP
  (``-p 10.0.0.5:8000:8000``) is advertised as that IP.
- ``container_ip``: ``IP:port`` on ``network`` (or the first network, sorted by name); only useful
  when Prometheus can route to the Docker network (same host, or a routed overlay).
"""

from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass
from typing import Any

from llm_monitor_exporters.docker.docker_meta import gpus_from_inspect

ADDRESS_MODES = ("auto", "published", "container_ip")
_ANY = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class Target:
    """One vLLM server: ``address`` is what Prometheus scrapes, ``probe`` what the exporter calls."""

    address: str
    probe: str
    container: str
    source: str  # docker | static
    gpus: tuple[str, ...] = ()
    restarts: int = 0
    container_id: str = ""


def command_line(data: dict[str, Any]) -> str:
    config = data.get("Config") or {}
    parts = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    if not parts:
        parts = [str(data.get("Path") or ""), *(data.get("Args") or [])]
    return " ".join(str(p) for p in parts)


def matches(data: dict[str, Any], images: list[str], label: str, commands: list[str]) -> str | None:
    """Why the container is a vLLM server (``image``, ``label``, ``command``), or None."""
    config = data.get("Config") or {}
    image = str(config.get("Image") or "")
    if any(fnmatch.fnmatchcase(image, pattern) for pattern in images):
        return "image"
    if label:
        key, sep, value = label.partition("=")
        labels = config.get("Labels") or {}
        if key in labels and (not sep or str(labels[key]).lower() == value.lower()):
            return "label"
    cmd = " ".join(command_line(data).split())
    if any(c in cmd for c in commands):
        return "command"
    return None


def server_port(data: dict[str, Any], default: int, port_label: str) -> int:
    """The port vLLM listens on inside the container: label, else ``--port``, else ``default``."""
    labels = (data.get("Config") or {}).get("Labels") or {}
    if port_label and str(labels.get(port_label, "")).isdigit():
        return int(labels[port_label])
    try:
        args = shlex.split(command_line(data))
    except ValueError:
        args = command_line(data).split()
    for i, arg in enumerate(args):
        if arg == "--port" and i + 1 < len(args) and args[i + 1].isdigit():
            return int(args[i + 1])
        if arg.startswith("--port=") and arg[7:].isdigit():
            return int(arg[7:])
    return default


def _join(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _published(data: dict[str, Any], port: int, advertise_host: str) -> tuple[str, str] | None:
    ports = (data.get("NetworkSettings") or {}).get("Ports") or {}
    bindings = ports.get(f"{port}/tcp") or []
    for b in sorted(bindings, key=lambda b: ":" in str(b.get("HostIp", ""))):  # IPv4 first
        host_ip, host_port = str(b.get("HostIp") or ""), str(b.get("HostPort") or "")
        if not host_port.isdigit():
            continue
        if host_ip in _ANY:
            return _join(advertise_host, host_port), _join("127.0.0.1", host_port)
        return _join(host_ip, host_port), _join(host_ip, host_port)
    return None


def _container_ip(data: dict[str, Any], port: int, network: str) -> tuple[str, str] | None:
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    names = [network] if network else sorted(networks)
    for name in names:
        ip = str((networks.get(name) or {}).get("IPAddress") or "")
        if ip:
            return _join(ip, port), _join(ip, port)
    return None


def target_for(
    data: dict[str, Any], *, mode: str, advertise_host: str, network: str, default_port: int, port_label: str
) -> Target | None:
    """Target of a running matched container, or None when no address can be derived."""
    port = server_port(data, default_port, port_label)
    addr: tuple[str, str] | None = None
    if mode in ("auto", "published"):
        addr = _published(data, port, advertise_host)
    if addr is None and mode == "auto" and (data.get("HostConfig") or {}).get("NetworkMode") == "host":
        addr = (_join(advertise_host, port), _join("127.0.0.1", port))
    if addr is None and mode in ("auto", "container_ip"):
        addr = _container_ip(data, port, network)
    if addr is None:
        return None
    gpus = list(gpus_from_inspect(data))
    for env in (data.get("Config") or {}).get("Env") or []:
        key, _, value = str(env).partition("=")
        if key == "CUDA_VISIBLE_DEVICES" and value.strip():
            gpus.extend(v.strip() for v in value.split(",") if v.strip() and v.strip() not in gpus)
    return Target(
        address=addr[0],
        probe=addr[1],
        container=str(data.get("Name", "")).lstrip("/"),
        source="docker",
        gpus=tuple(gpus),
        restarts=int(data.get("RestartCount") or 0),
        container_id=str(data.get("Id", "")),
    )

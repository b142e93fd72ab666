#!/usr/bin/env python3
"""A local fleet of systemd containers, its inventory, and site.yml run against it.

The demo (`make demo`), the fleet tests and the benchmarks all use this one harness:

    fleet.py up      [--name demo] [--publish 9090]   # engine, images, containers, inventory, site.yml
    fleet.py status  [--name demo]                    # Prometheus URL and the state of every target
    fleet.py add-host NAME --groups g1,g2 [--suite trixie] [--label k=v ...]
    fleet.py converge [--name demo]                   # re-run site.yml
    fleet.py down    [--name demo]                    # remove containers, network and state

Hosts are containers on a private Docker network; Ansible reaches them with the docker connection, and
Prometheus reaches their exporters by container name. After site.yml, tests/harness/llm_upstreams.yml (not part
of the collection) starts the LLM services the exporters watch: SIMULATED vLLM, Ollama and Langfuse servers (test
doubles) on the hosts of vllm_servers, ollama_servers and langfuse_servers, and a REAL LiteLLM proxy with mock
deployments on the hosts of litellm_proxies, installed from wheels built here (.cache/litellm-wheels). Release
archives come from a mirror on 127.0.0.1 that serves real binaries (tests/harness/upstream_archives.py), so the
archive install path runs for real.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HARNESS = Path(__file__).resolve().parent
REPO = HARNESS.parents[1]
sys.path.insert(0, str(HARNESS))

import upstream_archives  # noqa: E402

STATE_ROOT = REPO / ".demo"
IMAGE_REPO = "llm-monitor-test/debian"

# What a new demo fleet looks like: one monitoring host and hosts of the other kinds the collection knows.
DEFAULT_HOSTS = [
    {
        "name": "mon-1",
        "suite": "bookworm",
        "groups": ["monitoring"],
        "labels": {"datacenter": "dc1", "rack": "r01", "team": "platform"},
    },
    {
        "name": "gpu-1",
        "suite": "bookworm",
        "groups": ["gpu_hosts"],
        "labels": {"datacenter": "dc1", "rack": "r02", "team": "research"},
    },
    {
        "name": "llm-1",
        "suite": "trixie",
        # Simulated vLLM and Ollama servers run here (tests/harness/llm_upstreams.yml: test doubles).
        "groups": ["vllm_servers", "ollama_servers"],
        "labels": {"datacenter": "dc2", "rack": "r07", "team": "serving"},
    },
    {
        "name": "gw-1",
        # Debian 12: its Python (3.11) is the controller's, for which the LiteLLM wheels are built.
        "suite": "bookworm",
        # A real LiteLLM proxy and a simulated Langfuse run here (tests/harness/llm_upstreams.yml).
        "groups": ["litellm_proxies", "langfuse_servers"],
        "labels": {"datacenter": "dc1", "rack": "r03", "team": "platform"},
    },
]
UPSTREAMS_PLAYBOOK = HARNESS / "llm_upstreams.yml"
# The webhook receiver of llm_upstreams.yml runs on the first monitoring host (by name; webhook_host) and appends
# every notification to this file. Every Alertmanager of the fleet delivers to that one URL (webhook_url), as an
# HA pair delivers to one team endpoint.
WEBHOOK_PORT = 9999
WEBHOOK_LOG = "/var/lib/llm-monitor-webhook/notifications.jsonl"
FAST_ALERTS = {
    "fleet_alert_host_down_for": "30s",
    # Longer than HostDown's, as in the catalog (2m and 5m): inhibition holds back only what arrives while HostDown
    # fires. With equal values the two raced, and an ExporterDown evaluated first went out (CI, stop 19).
    "fleet_alert_exporter_down_for": "60s",
    # long enough that a restarted Prometheus firing again at once is told from one waiting out a new `for`
    "fleet_alert_vllm_queue_build_up_for": "60s",
}
# LiteLLM for the hosts of litellm_proxies: built once on the controller (the containers cannot reach PyPI).
LITELLM_REQUIREMENTS = [
    "litellm[proxy]==1.106.2",
    "prometheus_client==0.26.0",
    "prisma==0.15.0",
    # redis wants it below Python 3.11.3 (Debian 12 has 3.11.2): the controller's newer Python would leave it out
    "async-timeout==5.0.1",
]
LITELLM_WHEELS = REPO / ".cache" / "litellm-wheels"
LITELLM_WHEELS_IN_HOST = "/opt/litellm-wheels"
# Test credentials of the fleet's inventory (not product defaults): the master key of the fleet's LiteLLM, and
# the keys the simulated Langfuse accepts.
FLEET_LITELLM_MASTER_KEY = "sk-fleet-test-master"
SIMULATED_LANGFUSE_KEYS = {"public_key": "pk-lf-simulated", "secret_key": "sk-lf-simulated"}
# Child groups of llm_servers, as in inventories/example.
LLM_CHILDREN = ["vllm_servers", "ollama_servers", "litellm_proxies", "langfuse_servers"]
# The model the simulated vLLM serves (llm-monitor-testkit simulate vllm --model, its default).
SIMULATED_VLLM_MODEL = "simulated/llama-3-8b-instruct"
# Per-model SLOs of the fleet (docs/alerting.md, fleet_slos) for the simulated vLLM, so the SLO rules and dashboard
# have series. Thresholds are bucket boundaries of vLLM's histograms (plugins/module_utils/slo_rules.py).
FLEET_SLOS = [
    {
        "model": SIMULATED_VLLM_MODEL,
        "backend": "vllm",
        "availability": 0.995,
        "ttft": {"seconds": 0.5, "target": 0.99},
        "latency": {"seconds": 10, "target": 0.99},
    }
]
# A harness group, not one the collection knows: the containers of its hosts get the Docker socket of the machine
# running the fleet, so the exporters role finds a Docker socket there (its preflight: /var/run/docker.sock) and
# runs the container exporter against a real engine, whose containers (the fleet's own among them) it reports.
DOCKER_SOCKET_GROUP = "docker_socket_hosts"
DOCKER_SOCKET = "/var/run/docker.sock"


@dataclass
class Host:
    name: str
    suite: str
    groups: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fleet:
    name: str
    publish: int | None = None
    hosts: list[Host] = field(default_factory=list)
    # Grafana's published port, when a real Grafana archive is in the cache (real_grafana_archive); else None.
    grafana_publish: int | None = None

    @property
    def state(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def network(self) -> str:
        return f"{self.name}-net"

    @property
    def inventory(self) -> Path:
        return self.state / "inventory"

    def container(self, host: str) -> str:
        return f"{self.name}-{host}"

    def save(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "fleet.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, name: str) -> Fleet:
        path = STATE_ROOT / name / "fleet.json"
        if not path.exists():
            raise SystemExit(f"no fleet named {name!r}: run `fleet.py up --name {name}` first")
        data = json.loads(path.read_text())
        return cls(
            name=data["name"],
            publish=data.get("publish"),
            hosts=[Host(**h) for h in data["hosts"]],
            grafana_publish=data.get("grafana_publish"),
        )


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], check=check, text=True, capture_output=True)


def ensure_engine_and_images(suites: set[str]) -> None:
    run(["bash", str(HARNESS / "docker-engine.sh")])
    run(["bash", str(HARNESS / "build-images.sh"), *sorted(suites)])


def start_container(fleet: Fleet, host: Host) -> None:
    name = fleet.container(host.name)
    docker("rm", "-f", name, check=False)
    args = [
        "run",
        "-d",
        "--name",
        name,
        "--hostname",
        host.name,
        "--network",
        fleet.network,
        "--label",
        f"llm-monitor-fleet={fleet.name}",
        "--cap-add",
        "SYS_ADMIN",
        "--cgroupns=host",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--tmpfs",
        "/tmp",
    ]
    if DOCKER_SOCKET_GROUP in host.groups:
        args += ["-v", f"{DOCKER_SOCKET}:{DOCKER_SOCKET}"]
    # one published Prometheus: the first monitoring host's (a second one would ask for the same port)
    if fleet.publish is not None and host.name == first_monitoring_host(fleet):
        args += ["-p", f"127.0.0.1:{fleet.publish}:9090"]
        if fleet.grafana_publish is not None:
            args += ["-p", f"127.0.0.1:{fleet.grafana_publish}:3000"]
    docker(*args, f"{IMAGE_REPO}:{host.suite}")


def wait_booted(fleet: Fleet, hosts: list[Host], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for host in hosts:
        while True:
            state = docker("exec", fleet.container(host.name), "systemctl", "is-system-running", check=False)
            if state.stdout.strip() in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{fleet.container(host.name)} did not boot: {state.stdout.strip()}")
            time.sleep(0.5)


def provide_docker_group(fleet: Fleet, hosts: list[Host]) -> None:
    """In each container given the Docker socket, the `docker` group with the socket's GID, as installing Docker
    makes it: the exporters role's preflight wants the group (exporters_containers_docker_group) and its units join
    it (SupplementaryGroups) to reach the socket. Neither the docker binary nor the service is needed."""
    for host in hosts:
        if DOCKER_SOCKET_GROUP in host.groups:
            gid = str(os.stat(DOCKER_SOCKET).st_gid)
            script = f"getent group docker >/dev/null || groupadd --non-unique --gid {gid} docker"
            docker("exec", fleet.container(host.name), "sh", "-c", script)


EXPORTERS_SOURCE = REPO / "files" / "exporters"


def snapshot_exporters_source(fleet: Fleet) -> None:
    """Copy the exporters package source into the fleet's state; the fleet installs from that copy.

    The exporters role rebuilds and reinstalls the package whenever its source changes. A snapshot taken at
    `up` (and at `fleet.py converge`) keeps runs of one fleet comparable while files/exporters is being edited.
    """
    dest = fleet.state / "exporters-source"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(EXPORTERS_SOURCE / name, dest / name)
    shutil.copytree(
        EXPORTERS_SOURCE / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    )


# Where a real Grafana release archive can be put for the demo (Grafana cannot be downloaded on these machines).
GRAFANA_ARCHIVE_DIRS = [REPO / ".cache" / "artifacts", Path.home() / ".cache" / "llm_monitor.fleet" / "artifacts"]


def real_grafana_archive() -> tuple[Path | None, str]:
    """The real Grafana archive of the role's pinned version and checksum, if one is in GRAFANA_ARCHIVE_DIRS;
    else None and why."""
    import yaml

    defaults = yaml.safe_load((REPO / "roles" / "grafana" / "defaults" / "main.yml").read_text())
    name = f"grafana-{defaults['grafana_version']}.linux-amd64.tar.gz"
    expected = defaults["grafana_checksums"]["amd64"].removeprefix("sha256:")
    for directory in GRAFANA_ARCHIVE_DIRS:
        path = directory / name
        if path.is_file():
            if hashlib.sha256(path.read_bytes()).hexdigest() == expected:
                return path, ""
            return None, f"{path} does not match grafana_checksums.amd64 ({expected})"
    return None, (
        f"no real Grafana here: Grafana's servers are unreachable from this machine and {name} is in none of "
        f"{', '.join(str(d) for d in GRAFANA_ARCHIVE_DIRS)}. Put the verified archive there and run the demo again "
        "(roles/grafana/README.md, offline sites)"
    )


def _grafana_vars(fleet: Fleet) -> dict[str, Any]:
    """The grafana role's variables: a real Grafana from the cache with credentials made for this fleet, or off."""
    archive, _ = real_grafana_archive()
    if archive is None or fleet.grafana_publish is None:
        return {"grafana_enabled": False}
    (fleet.state / "artifacts").mkdir(parents=True, exist_ok=True)
    shutil.copy2(archive, fleet.state / "artifacts" / archive.name)
    secrets = fleet.state / "grafana-secrets.json"
    if not secrets.exists():
        secrets.write_text(json.dumps({"password": os.urandom(12).hex(), "secret_key": os.urandom(24).hex()}))
        secrets.chmod(0o600)
    values = json.loads(secrets.read_text())
    return {"grafana_admin_password": values["password"], "grafana_secret_key": values["secret_key"]}


def write_inventory(fleet: Fleet, archives: dict[str, dict[str, str]], mirror_port: int) -> None:
    inv = fleet.inventory
    shutil.rmtree(inv, ignore_errors=True)
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv / "host_vars").mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[str]] = {}
    for host in fleet.hosts:
        for group in host.groups:
            groups.setdefault(group, []).append(host.name)
    children: dict[str, Any] = {
        g: {"hosts": {h: None for h in hs}} for g, hs in groups.items() if g not in LLM_CHILDREN
    }
    children["llm_servers"] = {"children": {g: {"hosts": {h: None for h in groups.get(g, [])}} for g in LLM_CHILDREN}}
    children.setdefault("monitoring", {"hosts": {}})
    hosts_yml = {"all": {"children": children}}
    (inv / "hosts.yml").write_text("---\n# Written by tests/harness/fleet.py\n" + _yaml(hosts_yml))

    group_vars: dict[str, Any] = {
        "ansible_connection": "community.docker.docker",
        "ansible_python_interpreter": "/usr/bin/python3",
        "fleet_artifact_cache_dir": str(fleet.state / "artifacts"),
        # Containers have no NVIDIA devices and cannot reach NVIDIA's repositories: the toolkit role acts only on
        # hosts whose PCI scan finds a GPU (none here), not on every member of gpu_hosts.
        "nvidia_toolkit_target_hosts_from": ["pci"],
    }
    if (fleet.state / "exporters-source").is_dir():
        group_vars["exporters_package_source"] = str(fleet.state / "exporters-source")
    for name, info in archives.items():
        group_vars[f"{name}_version"] = info["version"]
        group_vars[f"{name}_checksums"] = {"amd64": f"sha256:{info['sha256']}"}
        group_vars[f"{name}_download_base_url"] = f"http://127.0.0.1:{mirror_port}/{name}"
    # A demo fleet fires fast: a host or an exporter down, a vLLM queue building up are notified within a minute.
    group_vars.update(FAST_ALERTS)
    (inv / "group_vars" / "all.yml").write_text("---\n" + _yaml(group_vars))
    # Debian's prometheus package ships the web UI (its classic UI, with Debian's libjs packages); the archive the
    # mirror rebuilds from Debian's binary has no web assets. The demo prints the UI's URL: it must show the UI.
    # (molecule/prometheus installs the archive.) Debian's Alertmanager binary reads its templates from the
    # package's files, which the rebuilt archive lacks: the package here too.
    monitoring_vars: dict[str, Any] = {
        "prometheus_install_method": "package",
        "alertmanager_install_method": "package",
        # every notification to the webhook receiver llm_upstreams.yml runs on this host (a test double)
        "alertmanager_receivers": [
            {"name": "fleet-webhook", "type": "webhook", "settings": {"url": webhook_url(fleet)}, "send_resolved": True}
        ],
        "alertmanager_default_receiver": "fleet-webhook",
        # the SLO rules and dashboard of the simulated vLLM model
        "fleet_slos": FLEET_SLOS,
        "alertmanager_route": {"group_by": ["alertname", "host"], "group_wait": "2s", "group_interval": "10s",
                               "repeat_interval": "4h"},
        **_grafana_vars(fleet),
    }  # fmt: skip
    (inv / "group_vars" / "monitoring.yml").write_text("---\n" + _yaml(monitoring_vars))
    # No GPU in a container fleet: the GPU exporter runs on its simulation backend (values are not real).
    gpu_vars = {
        "exporters_gpu_simulate": True,
        "exporters_gpu_simulation": {"gpus": 4, "model": "H100", "scenario": "busy"},
    }
    (inv / "group_vars" / "gpu_hosts.yml").write_text("---\n" + _yaml(gpu_vars))
    # The vLLM exporter monitors the simulated vLLM (llm_simulators.yml) as a static endpoint: Prometheus
    # scrapes it by container name, the exporter probes it on loopback.
    vllm_vars = {
        "exporters_vllm_static_endpoints": [
            {"address": "{{ ansible_host }}:8000", "name": "simulated-vllm", "probe_address": "127.0.0.1:8000"}
        ],
    }
    (inv / "group_vars" / "vllm_servers.yml").write_text("---\n" + _yaml(vllm_vars))
    # The LiteLLM exporter and Prometheus' litellm job watch the real LiteLLM of llm_upstreams.yml.
    litellm_vars = {"exporters_litellm_master_key": FLEET_LITELLM_MASTER_KEY, "litellm_metrics_enabled": True}
    (inv / "group_vars" / "litellm_proxies.yml").write_text("---\n" + _yaml(litellm_vars))
    langfuse_vars = {
        "exporters_langfuse_projects": [
            {"name": "fleet-demo", "host": "http://127.0.0.1:3000", **SIMULATED_LANGFUSE_KEYS}
        ],
        # poll the simulator every 30 s (the default, 300 s, suits Langfuse Cloud's daily call budget); the
        # simulator starts after site.yml, so retry soon after the first refused connection
        "exporters_langfuse_config": {"poll_interval": 30, "min_backoff": 5},
    }
    (inv / "group_vars" / "langfuse_servers.yml").write_text("---\n" + _yaml(langfuse_vars))
    for host in fleet.hosts:
        host_vars = {"ansible_host": fleet.container(host.name), "fleet_labels": host.labels, **host.vars}
        if DOCKER_SOCKET_GROUP in host.groups:
            # The machine's engine runs other containers (other fleets, molecule's), none of them this host's vLLM:
            # the vLLM exporter keeps to its static endpoints rather than discovering containers there.
            host_vars.setdefault("exporters_vllm_docker", False)
        (inv / "host_vars" / f"{host.name}.yml").write_text("---\n" + _yaml(host_vars))


def first_monitoring_host(fleet: Fleet) -> str:
    """The first monitoring host by name: its Prometheus is the published one and the one the tests ask."""
    return sorted(h.name for h in fleet.hosts if "monitoring" in h.groups)[0]


def webhook_host(fleet: Fleet) -> str:
    """The monitoring host the webhook receiver runs on (llm_upstreams.yml: the first of the group by name)."""
    return first_monitoring_host(fleet)


def webhook_url(fleet: Fleet) -> str:
    return f"http://{fleet.container(webhook_host(fleet))}:{WEBHOOK_PORT}/alerts"


def _yaml(data: Any) -> str:
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def archive_mirror(port: int) -> Iterator[None]:
    """Serve the rebuilt upstream archives on 127.0.0.1 while Ansible runs."""
    proc = subprocess.Popen(
        [sys.executable, str(HARNESS / "upstream_archives.py"), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    venv_bin = REPO / ".venv" / "bin"
    if venv_bin.is_dir():
        env["PATH"] = f"{venv_bin}:{env['PATH']}"
    return env


def converge(
    fleet: Fleet,
    *extra: str,
    check: bool = True,
    capture: bool = False,
    edit_inventory: Callable[[Path], None] | None = None,
    playbook: str = str(REPO / "site.yml"),
    collections_path: Path | None = None,
    upstreams: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run site.yml against the fleet; returns the finished process (output captured when asked).

    The inventory is written afresh from the fleet's state each time; edit_inventory may change it first
    (the bad-input tests use it), and the next run writes it back as it was.
    """
    archives = upstream_archives.build(upstream_archives.DEFAULT_OUT)
    port = free_port()
    write_inventory(fleet, archives, port)
    if edit_inventory is not None:
        edit_inventory(fleet.inventory)
    # site.yml, then the LLM services it monitors (llm_upstreams.yml) in the same run: one recap for both.
    # upstreams=False runs site.yml alone (the converge benchmark times the collection, not the test doubles).
    cmd = ["ansible-playbook", "-i", str(fleet.inventory), playbook, *extra]
    if upstreams:
        provide_litellm_wheels(fleet)
        provide_testkit_wheel(fleet)
        cmd.insert(4, str(UPSTREAMS_PLAYBOOK))
    env = ansible_env()
    cwd = REPO
    if collections_path is not None:
        # An installed collection, not the checkout: run from outside the repository, without its ansible.cfg.
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path)
        env.pop("ANSIBLE_CONFIG", None)
        env.pop("ANSIBLE_ROLES_PATH", None)
        cwd = collections_path
    with archive_mirror(port):
        if capture:
            proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        else:
            proc = subprocess.run(cmd, cwd=cwd, env=env, text=True)
    if check and proc.returncode != 0:
        if capture:
            print(proc.stdout[-6000:], file=sys.stderr)
        raise SystemExit(f"site.yml failed on fleet {fleet.name} (exit {proc.returncode})")
    return proc


def provide_litellm_wheels(fleet: Fleet) -> None:
    """Build the LiteLLM wheels once on the controller and copy them into each litellm_proxies host lacking them."""
    hosts = [h for h in fleet.hosts if "litellm_proxies" in h.groups]
    if not hosts:
        return
    # The requirements file, written last, marks a complete wheel directory; llm_upstreams.yml installs from it.
    complete = LITELLM_WHEELS / "requirements.txt"
    wanted = "\n".join(LITELLM_REQUIREMENTS) + "\n"
    if not complete.exists() or complete.read_text() != wanted:
        shutil.rmtree(LITELLM_WHEELS, ignore_errors=True)
        LITELLM_WHEELS.mkdir(parents=True)
        pip = REPO / ".venv" / "bin" / "pip"
        run([str(pip if pip.exists() else "pip"), "wheel", "--quiet", "-w", str(LITELLM_WHEELS), *LITELLM_REQUIREMENTS])
        complete.write_text(wanted)
    for host in hosts:
        name = fleet.container(host.name)
        in_host = docker("exec", name, "cat", f"{LITELLM_WHEELS_IN_HOST}/requirements.txt", check=False).stdout
        if in_host == wanted:
            continue
        docker("exec", name, "rm", "-rf", LITELLM_WHEELS_IN_HOST)
        docker("cp", str(LITELLM_WHEELS), f"{name}:{LITELLM_WHEELS_IN_HOST}")


def provide_testkit_wheel(fleet: Fleet) -> None:
    """Build the testkit wheel (the simulators: test doubles, files/testkit) and copy it to the simulator hosts.

    Built on the controller into .cache/testkit-wheel/<source digest>/ only when files/testkit changed (pip wheel
    --no-deps; the containers cannot reach PyPI), copied to /opt/llm_monitor_testkit/wheels of each host of
    vllm_servers, ollama_servers and langfuse_servers whose copy differs. llm_upstreams.yml installs it into its own
    virtualenv with every dependency from the exporters' wheelhouse that the exporters role left on the host.
    """
    hosts = [h for h in fleet.hosts if {"vllm_servers", "ollama_servers", "langfuse_servers"} & set(h.groups)]
    if not hosts:
        return
    source, cache, in_host = REPO / "files" / "testkit", REPO / ".cache" / "testkit-wheel", "/opt/llm_monitor_testkit"
    skip = {"__pycache__", "build", "dist", "tests", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    built = sorted(
        f
        for f in (source / "src").rglob("*")
        if f.is_file() and not skip & set(f.relative_to(source).parts) and ".egg-info" not in str(f)
    )
    files = [source / "pyproject.toml", source / "README.md", *built]
    digest = hashlib.sha256(b"".join(str(f.relative_to(source)).encode() + b"\0" + f.read_bytes() for f in files))
    wheels = cache / digest.hexdigest()[:16]
    marker = wheels / "DIGEST"  # written last: marks a complete wheel directory, on the controller and the hosts
    if not marker.exists():
        shutil.rmtree(cache, ignore_errors=True)
        wheels.mkdir(parents=True)
        pip = REPO / ".venv" / "bin" / "pip"
        with tempfile.TemporaryDirectory() as tmp:  # build from a copy: no build/ or egg-info in the checkout
            copy = Path(tmp) / "testkit"
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns(*skip, "*.egg-info"))
            run([str(pip if pip.exists() else "pip"), "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(copy)])
        marker.write_text(wheels.name + "\n")
    for host in hosts:
        name = fleet.container(host.name)
        if docker("exec", name, "cat", f"{in_host}/wheels/DIGEST", check=False).stdout == marker.read_text():
            continue
        docker("exec", name, "sh", "-c", f"rm -rf {in_host}/wheels && mkdir -p {in_host}")
        docker("cp", str(wheels), f"{name}:{in_host}/wheels")


def up(name: str, publish: int | None, hosts: list[dict[str, Any]] | None = None) -> Fleet:
    fleet = Fleet(name=name, publish=publish, hosts=[Host(**h) for h in (hosts or DEFAULT_HOSTS)])
    if publish is not None and real_grafana_archive()[0] is not None:
        fleet.grafana_publish = 3000 if publish == 9090 else free_port()
    ensure_engine_and_images({h.suite for h in fleet.hosts})
    down(name)
    docker("network", "create", "-o", "com.docker.network.driver.mtu=1400", *_ipv6_args(name), fleet.network)
    for host in fleet.hosts:
        start_container(fleet, host)
    wait_booted(fleet, fleet.hosts)
    provide_docker_group(fleet, fleet.hosts)
    fleet.save()
    snapshot_exporters_source(fleet)
    return fleet


def _ipv6_args(name: str) -> list[str]:
    """An IPv6 subnet of the fleet's own (unique local, derived from its name), so hosts can be scraped over IPv6."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return ["--ipv6", "--subnet", f"fd{digest[:2]}:{digest[2:6]}:{digest[6:10]}::/64"]


def container_ipv6(fleet: Fleet, host: str) -> str:
    """The host's IPv6 address on the fleet's network."""
    template = "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}"
    return docker("inspect", "-f", template, fleet.container(host)).stdout.strip()


def add_host(fleet: Fleet, host: Host) -> None:
    ensure_engine_and_images({host.suite})
    fleet.hosts = [h for h in fleet.hosts if h.name != host.name] + [host]
    start_container(fleet, host)
    wait_booted(fleet, [host])
    provide_docker_group(fleet, [host])
    fleet.save()


def down(name: str) -> None:
    ids = docker("ps", "-aq", "--filter", f"label=llm-monitor-fleet={name}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    docker("network", "rm", f"{name}-net", check=False)
    shutil.rmtree(STATE_ROOT / name, ignore_errors=True)


def prometheus_api(fleet: Fleet, path: str, host: str | None = None) -> Any:
    """GET a Prometheus API path from inside a monitoring host, the first by default (works with or without a
    published port)."""
    mon = host or first_monitoring_host(fleet)
    out = docker("exec", fleet.container(mon), "curl", "-fsS", "--max-time", "5", f"http://127.0.0.1:9090{path}").stdout
    return json.loads(out)


def status(fleet: Fleet) -> str:
    lines = []
    if fleet.publish:
        base = f"http://127.0.0.1:{fleet.publish}"
        lines.append(f"Prometheus: {base}/  (targets: {base}{_targets_page(fleet)}, API: {base}/api/v1/targets)")
    if fleet.grafana_publish is not None:
        password = json.loads((fleet.state / "grafana-secrets.json").read_text())["password"]
        lines.append(f"Grafana: http://127.0.0.1:{fleet.grafana_publish}/  (user admin, password {password})")
    else:
        lines.append(f"Grafana: skipped - {real_grafana_archive()[1]}")
    targets = prometheus_api(fleet, "/api/v1/targets")["data"]["activeTargets"]
    for target in sorted(targets, key=lambda t: (t["labels"]["job"], t["labels"]["instance"])):
        labels = target["labels"]
        extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("job", "instance"))
        lines.append(
            f"  {labels['job']:<16} {labels['instance']:<10} {target['health']:<8} {target['scrapeUrl']}  {extra}"
        )
    return "\n".join(lines)


def _targets_page(fleet: Fleet) -> str:
    """The path of Prometheus' targets page: /targets (Prometheus 3), /classic/targets (Debian's build, classic UI)."""
    mon = first_monitoring_host(fleet)
    for path in ("/targets", "/classic/targets"):
        probe = docker(
            "exec",
            fleet.container(mon),
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"http://127.0.0.1:9090{path}",
            check=False,
        )
        if probe.stdout.strip() == "200":
            return path
    return "/targets"


def expected_target_count(fleet: Fleet) -> int:
    """node on every host, prometheus and alertmanager on the monitoring host, gpu on each GPU host, vllm_exporter
    and vllm (native, HTTP SD) on each vLLM host, ollama_proxy on each Ollama host, litellm_exporter and litellm
    (native) on each LiteLLM host, langfuse on each Langfuse host, containers on each host given the Docker socket."""
    per_group = {"gpu_hosts": 1, "vllm_servers": 2, "ollama_servers": 1, "litellm_proxies": 2, "langfuse_servers": 1,
                 DOCKER_SOCKET_GROUP: 1}  # fmt: skip
    return len(fleet.hosts) + 2 + sum(per_group.get(g, 0) for h in fleet.hosts for g in h.groups)


def wait_targets_up(fleet: Fleet, expected: int, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        targets = prometheus_api(fleet, "/api/v1/targets")["data"]["activeTargets"]
        if len(targets) >= expected and all(t["health"] == "up" for t in targets):
            return list(targets)
        if time.monotonic() > deadline:
            return list(targets)
        time.sleep(1)


def _parse_labels(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "status", "converge", "add-host", "down"])
    parser.add_argument("host", nargs="?", help="host name (add-host)")
    parser.add_argument("--name", default="demo", help="fleet name, a prefix for containers (default: demo)")
    parser.add_argument("--publish", type=int, default=9090, help="publish Prometheus on 127.0.0.1:PORT")
    parser.add_argument("--groups", default="", help="add-host: comma-separated inventory groups")
    parser.add_argument("--suite", default="bookworm", choices=["bookworm", "trixie"], help="add-host: Debian")
    parser.add_argument("--label", action="append", default=[], help="add-host: fleet label k=v")
    args = parser.parse_args(argv)

    if args.command == "down":
        down(args.name)
        print(f"fleet {args.name} removed")
        return 0
    if args.command == "up":
        fleet = up(args.name, args.publish)
        converge(fleet)
        wait_targets_up(fleet, expected=expected_target_count(fleet), timeout=120)
    else:
        fleet = Fleet.load(args.name)
        if args.command == "add-host":
            if not args.host:
                parser.error("add-host needs a host name")
            add_host(
                fleet,
                Host(
                    name=args.host,
                    suite=args.suite,
                    groups=[g for g in args.groups.split(",") if g],
                    labels=_parse_labels(args.label),
                ),
            )
            converge(fleet)
        elif args.command == "converge":
            snapshot_exporters_source(fleet)
            converge(fleet)
    print(status(fleet))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a user of llm_monitor.fleet.exporters notices on each platform of the scenario."""

from __future__ import annotations

import os
import re
import shlex

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

EXPORTERS = ["gpu", "containers", "litellm", "langfuse"]
UNITS = {name: f"llm-monitor-exporter-{name}" for name in EXPORTERS}
USERS = {name: f"llm-monitor-{name}" for name in EXPORTERS}
PORTS = {"gpu": 9835, "containers": 9417, "litellm": 9437, "langfuse": 9438}
EXPOSURE = re.compile(r"Overall exposure level for \S+: ([0-9.]+)")


def _vars(host):
    return host.ansible.get_variables()


def _enabled(host) -> list[str]:
    hostvars = _vars(host)
    return (
        ["gpu"]
        + (["containers"] if hostvars.get("exporters_containers_enabled") else [])
        + (["litellm"] if hostvars.get("exporters_litellm_enabled") else [])
        + (["langfuse"] if hostvars.get("exporters_langfuse_projects") else [])
    )


def _metrics(host, exporter: str) -> tuple[int, str]:
    hostvars = _vars(host)
    auth: list[str] = []
    if hostvars.get("exporters_web_basic_auth_users"):
        auth = ["-u", f"{hostvars['molecule_basic_auth_user']}:{hostvars['molecule_basic_auth_password']}"]
    out = host.check_output(
        "curl -sS --max-time 5 -o /tmp/metrics.out -w '%{http_code}' "
        + " ".join(shlex.quote(a) for a in (*auth, f"http://127.0.0.1:{PORTS[exporter]}/metrics"))
    )
    return int(out), host.file("/tmp/metrics.out").content_string


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_units_are_active_and_run_as_their_own_user(host, exporter):
    if exporter not in _enabled(host):
        pytest.skip(f"{exporter} exporter not enabled on this host")
    service = host.service(UNITS[exporter])
    assert service.is_running
    assert service.is_enabled
    pid = host.check_output(f"systemctl show -p MainPID --value {UNITS[exporter]}.service")
    assert int(pid) > 0
    assert host.file(f"/proc/{pid}").user == USERS[exporter]
    user = host.user(USERS[exporter])
    assert user.shell == "/usr/sbin/nologin"
    assert not host.file(user.home).exists
    assert host.socket(f"tcp://0.0.0.0:{PORTS[exporter]}").is_listening


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_systemd_exposure_is_at_most_3(host, exporter):
    if exporter not in _enabled(host):
        pytest.skip(f"{exporter} exporter not enabled on this host")
    out = host.check_output(f"systemd-analyze security --no-pager {UNITS[exporter]}.service")
    match = EXPOSURE.search(out)
    assert match, out
    print(f"{host.backend.get_hostname()} {UNITS[exporter]}: overall exposure {match.group(1)}")
    assert float(match.group(1)) <= 3.0, out


def test_simulated_gpus_are_served(host):
    status, body = _metrics(host, "gpu")
    assert status == 200
    gpus = _vars(host)["exporters_gpu_simulation"]["gpus"]
    utilisation = [line for line in body.splitlines() if line.startswith("llm_monitor_gpu_utilization_ratio{")]
    assert len(utilisation) == gpus
    assert f"llm_monitor_gpu_devices {float(gpus)}" in body
    assert 'llm_monitor_exporter_up{exporter="gpu",upstream="nvml"} 1.0' in body


def test_basic_auth_is_enforced_when_configured(host):
    hostvars = _vars(host)
    web = host.file("/etc/llm_monitor/exporters/gpu-web.yml")
    if not hostvars.get("exporters_web_basic_auth_users"):
        assert not web.exists
        return
    assert web.mode == 0o640
    assert web.group == USERS["gpu"]
    out = host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9835/metrics")
    assert out == "401"


def test_container_exporter_follows_docker(host):
    unit = host.file(f"/etc/systemd/system/{UNITS['containers']}.service")
    if "containers" not in _enabled(host):
        # No Docker socket in this container: detection leaves the exporter off.
        assert not host.file("/var/run/docker.sock").exists
        assert not unit.exists
        assert not host.socket("tcp://0.0.0.0:9417").is_listening
        return
    # Switched on without Docker access: it serves and says Docker is not reachable.
    assert "SupplementaryGroups" not in unit.content_string
    status, body = _metrics(host, "containers")
    assert status == 200
    assert 'llm_monitor_exporter_up{exporter="containers",upstream="docker"} 0.0' in body


def test_installed_offline_from_the_wheelhouse(host):
    wheelhouse = host.file("/opt/llm_monitor/exporters/wheelhouse")
    assert wheelhouse.is_directory
    assert any(name.startswith("llm_monitor_exporters-") for name in wheelhouse.listdir())
    version = host.check_output("/opt/llm_monitor/exporters/venv/bin/llm-monitor-exporter --version")
    assert version.startswith("llm-monitor-exporter ")
    python = host.check_output(
        "/opt/llm_monitor/exporters/venv/bin/python -c 'import sys; print(sys.version_info[:2])'"
    )
    system = host.check_output("python3 -c 'import sys; print(sys.version_info[:2])'")
    assert python == system


def test_secrets_are_files_only_their_exporter_can_read(host):
    if "litellm" not in _enabled(host):
        pytest.skip("no LiteLLM/Langfuse exporter on this host")
    hostvars = _vars(host)
    files = {
        "/etc/llm_monitor/exporters/litellm-master-key": (
            "llm-monitor-litellm",
            hostvars["exporters_litellm_master_key"],
        ),
        "/etc/llm_monitor/exporters/langfuse-project-0.key": (
            "llm-monitor-langfuse",
            hostvars["exporters_langfuse_projects"][0]["secret_key"],
        ),
    }
    for path, (group, secret) in files.items():
        f = host.file(path)
        assert f.user == "root" and f.group == group and f.mode == 0o640, path
        with host.sudo():
            assert host.file(path).content_string.strip() == secret
    # Referenced by *_file keys; the secrets appear in no config file and on no command line.
    for name in ("litellm", "langfuse"):
        with host.sudo():
            config = host.file(f"/etc/llm_monitor/exporters/{name}.yml").content_string
        assert "sk-" not in config
        assert "_file: /etc/llm_monitor/exporters/" in config
        cmdline = host.check_output(f"systemctl show -p ExecStart --value {UNITS[name]}.service")
        assert "sk-" not in cmdline
    # Nothing answers at the configured URLs: the exporters serve and say so.
    for name in ("litellm", "langfuse"):
        code, text = _metrics(host, name)
        assert code == 200
        assert "llm_monitor_exporter_" in text

"""What a user of llm_monitor.fleet.node_exporter notices on each platform of the scenario."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import testinfra.utils.ansible_runner
import yaml

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

METRICS_URL = "http://127.0.0.1:9100/metrics"
# The converge playbook takes the versions from the archive mirror's vars file.
MIRROR_VARS = yaml.safe_load(Path(os.environ["LLM_MONITOR_ARCHIVE_VARS"]).read_text())


def _vars(host):
    return host.ansible.get_variables()


def _curl(host, *args: str):
    """(HTTP status, body) of a GET on this host's metrics endpoint."""
    out = host.check_output(
        "curl -sS --max-time 5 -o /tmp/metrics.out -w '%{http_code}' "
        + " ".join(shlex.quote(a) for a in (*args, METRICS_URL))
    )
    return int(out), host.file("/tmp/metrics.out").content_string


def _auth_args(host) -> list[str]:
    hostvars = _vars(host)
    if not hostvars.get("node_exporter_web_basic_auth_users"):
        return []
    return ["-u", f"{hostvars['molecule_basic_auth_user']}:{hostvars['molecule_basic_auth_password']}"]


def test_service_is_active_and_enabled(host):
    service = host.service("node_exporter")
    assert service.is_running
    assert service.is_enabled


def test_process_runs_as_node_exporter(host):
    pid = host.check_output("systemctl show -p MainPID --value node_exporter.service")
    assert int(pid) > 0
    # /proc/<pid> belongs to the process' effective user.
    assert host.file(f"/proc/{pid}").user == "node_exporter"
    assert host.file(f"/proc/{pid}").group == "node_exporter"


def test_user_has_no_login_shell_and_no_home(host):
    user = host.user("node_exporter")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert not host.file(user.home).exists


def test_listens_on_9100(host):
    assert host.socket("tcp://0.0.0.0:9100").is_listening


def test_metrics_carry_node_series(host):
    status, body = _curl(host, *_auth_args(host))
    assert status == 200
    assert "node_cpu_seconds_total{" in body
    assert "node_memory_MemTotal_bytes " in body


def test_basic_auth_is_enforced_when_configured(host):
    hostvars = _vars(host)
    if not hostvars.get("node_exporter_web_basic_auth_users"):
        # Without users the endpoint is open and no web config is left behind.
        assert not host.file("/etc/node_exporter/web.yml").exists
        return
    web = host.file("/etc/node_exporter/web.yml")
    assert web.mode == 0o640
    assert web.group == "node_exporter"
    assert _curl(host)[0] == 401
    assert _curl(host, "-u", f"{hostvars['molecule_basic_auth_user']}:wrong-password")[0] == 401
    assert _curl(host, *_auth_args(host))[0] == 200


def test_archive_binary_is_the_versioned_link(host):
    hostvars = _vars(host)
    if hostvars["node_exporter_install_method"] != "archive":
        assert not host.file("/usr/local/bin/node_exporter").exists
        return
    link = host.file("/usr/local/bin/node_exporter")
    assert link.is_symlink
    version = MIRROR_VARS["node_exporter_version"]
    assert link.linked_to == f"/opt/llm_monitor/node_exporter-{version}/node_exporter"
    assert host.check_output("/usr/local/bin/node_exporter --version 2>&1").startswith(
        f"node_exporter, version {version}"
    )


def test_packaged_unit_is_masked(host):
    if _vars(host)["node_exporter_install_method"] != "package":
        assert not host.package("prometheus-node-exporter").is_installed
        return
    assert host.package("prometheus-node-exporter").is_installed
    assert host.run("systemctl is-enabled prometheus-node-exporter.service").stdout.strip() == "masked"
    assert not host.service("prometheus-node-exporter").is_running
    # Our unit runs the packaged binary.
    assert "/usr/bin/prometheus-node-exporter" in host.check_output(
        "systemctl show -p ExecStart --value node_exporter.service"
    )

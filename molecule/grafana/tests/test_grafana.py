"""What a user of llm_monitor.fleet.grafana notices on the monitoring hosts (Grafana here is the TEST DOUBLE)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("monitoring")
API = "http://127.0.0.1:3000"
PASSWORD = "molecule-Adm1n-pass"
DASHBOARDS = Path(__file__).resolve().parents[3] / "files" / "dashboards"


def _base(host) -> str:
    """graf13 serves HTTPS (a self-signed certificate from prepare), graf12 HTTP."""
    tls = host.ansible.get_variables().get("grafana_tls_cert_file")
    return API.replace("http:", "https:") if tls else API


def _api(host, path: str, auth: str | None = f"admin:{PASSWORD}") -> tuple[int, str]:
    user = f"-u '{auth}'" if auth else ""
    out = host.check_output(f"curl -ksS --max-time 5 {user} -w '\\n%{{http_code}}' '{_base(host)}{path}'")
    body, _, status = out.rpartition("\n")
    return int(status), body


def _json(host, path: str):
    status, body = _api(host, path)
    assert status == 200, (path, status, body)
    return json.loads(body)


def test_the_installed_grafana_is_the_test_double(host):
    # so no one mistakes this scenario for a test of the real Grafana
    assert "TEST DOUBLE of Grafana" in host.check_output("grafana --version")


def test_service_runs_hardened_as_grafana(host):
    service = host.service("grafana-server")
    assert service.is_running and service.is_enabled
    props = host.check_output("systemctl show -p User -p NoNewPrivileges -p ProtectSystem grafana-server.service")
    assert "User=grafana" in props and "NoNewPrivileges=yes" in props and "ProtectSystem=strict" in props


def test_health_answers_with_the_pinned_version(host):
    health = _json(host, "/api/health")
    assert health["database"] == "ok"
    assert health["version"] == "12.4.2+testdouble"


def test_the_admin_password_is_the_vault_one_not_a_default(host):
    assert _api(host, "/api/user")[0] == 200
    assert _api(host, "/api/user", "admin:admin")[0] == 401
    assert _api(host, "/api/search", None)[0] == 401  # anonymous access off


def test_secrets_are_in_files_only_grafana_reads_and_not_in_grafana_ini(host):
    ini = host.file("/etc/grafana/grafana.ini")
    assert PASSWORD not in ini.content_string and "$__file{/etc/grafana/secrets/admin_password}" in ini.content_string
    for name in ("admin_password", "secret_key"):
        secret = host.file(f"/etc/grafana/secrets/{name}")
        assert (secret.user, secret.group, secret.mode) == ("root", "grafana", 0o640)


def test_datasources_have_stable_uids_and_one_default(host):
    sources = {s["uid"]: s for s in _json(host, "/api/datasources")}
    assert set(sources) == {
        "llm-monitor-prometheus",
        "llm-monitor-prometheus-graf12",
        "llm-monitor-prometheus-graf13",
        "llm-monitor-alertmanager",
    }
    assert [uid for uid, s in sources.items() if s["isDefault"]] == ["llm-monitor-prometheus"]
    # the default is this host's own Prometheus; the Alertmanager datasource is named as the dashboards expect
    me = host.backend.get_hostname()
    assert sources["llm-monitor-prometheus"]["url"] == f"http://{me}:9090"
    assert sources["llm-monitor-alertmanager"]["name"] == "Alertmanager"
    assert sources["llm-monitor-alertmanager"]["type"] == "alertmanager"


def test_every_collection_dashboard_is_in_its_folder_and_read_only(host):
    shipped = {}
    for path in DASHBOARDS.glob("*/*.json"):
        shipped[json.loads(path.read_text())["uid"]] = path.parent.name
    found = {d["uid"]: d["folderTitle"] for d in _json(host, "/api/search?type=dash-db")}
    assert found == shipped
    for uid in shipped:
        meta = _json(host, f"/api/dashboards/uid/{uid}")["meta"]
        assert meta["provisioned"] and not meta["canSave"], uid


def test_the_maintenance_notes_of_the_inventory_are_on_system_status(host):
    dashboard = _json(host, "/api/dashboards/uid/llm-monitor-system-status")["dashboard"]
    contents = [p.get("options", {}).get("content", "") for p in dashboard["panels"] if p["type"] == "text"]
    assert "Rack r7 firmware upgrade, **Saturday 02:00 UTC**" in contents
    assert not any("LLM_MONITOR_MAINTENANCE_NOTES" in c for c in contents)


def test_the_home_dashboard_is_the_fleet_overview(host):
    ini = host.file("/etc/grafana/grafana.ini").content_string
    assert "default_home_dashboard_path = /var/lib/grafana/dashboards/fleet/fleet-overview.json" in ini


def test_https_where_a_certificate_is_given_and_only_there(host):
    ini = host.file("/etc/grafana/grafana.ini").content_string
    if host.ansible.get_variables().get("grafana_tls_cert_file"):
        assert "protocol = https" in ini and "cookie_secure = true" in ini
        assert host.run(f"curl -fsS --max-time 5 {API}/api/health").rc != 0  # no plain HTTP beside it
        served = host.check_output("openssl s_client -connect 127.0.0.1:3000 </dev/null 2>/dev/null | grep subject=")
        assert "graf13" in served
    else:
        assert "protocol = http" in ini and "cookie_secure = false" in ini

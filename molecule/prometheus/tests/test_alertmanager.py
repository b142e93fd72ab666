"""What a user of llm_monitor.fleet.alertmanager notices: a cluster of two, one notification per alert, secrets kept."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
testinfra_hosts = RUNNER.get_hosts("monitoring")
AM = "http://127.0.0.1:9093"
SECRET = "og-molecule-key-1f2e3d"
# A webhook receiver that appends every notification body to a file, one JSON document per line.
RECEIVER = r"""
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("/var/tmp/webhook.jsonl", "a") as f:
            f.write(json.dumps(json.loads(body)) + "\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 9999), H).serve_forever()
"""


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def _json(host, url: str, data: str | None = None):
    cmd = f"curl -fsS --max-time 5 '{url}'"
    if data is not None:
        cmd = f"curl -fsS --max-time 5 -H 'Content-Type: application/json' -d {_quote(data)} '{url}'"
    out = host.check_output(cmd)
    return json.loads(out) if out else None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _wait(check, timeout: float = 60, step: float = 1):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(step)


def _only_on_prom_mon(host) -> None:
    if host.backend.get_hostname() != "prom-mon":
        pytest.skip("a cluster-wide check, run once from prom-mon")


def test_service_runs_as_alertmanager(host):
    assert host.service("alertmanager").is_running
    assert host.service("alertmanager").is_enabled
    pid = host.check_output("systemctl show -p MainPID --value alertmanager.service")
    assert host.file(f"/proc/{pid}").user == "alertmanager"
    exec_start = host.check_output("systemctl show -p ExecStart --value alertmanager.service")
    if host.ansible.get_variables()["alertmanager_install_method"] == "package":
        assert "path=/usr/bin/prometheus-alertmanager " in exec_start
    else:
        assert "path=/usr/local/bin/alertmanager " in exec_start


def test_secret_is_in_its_own_file_never_in_the_config(host):
    config = host.file("/etc/alertmanager/alertmanager.yml")
    assert config.mode == 0o640 and config.user == "root" and config.group == "alertmanager"
    assert SECRET not in config.content_string
    assert "api_key_file: /etc/alertmanager/secrets/genie-1.secret" in config.content_string
    secret = host.file("/etc/alertmanager/secrets/genie-1.secret")
    assert secret.mode == 0o640 and secret.user == "root" and secret.group == "alertmanager"
    assert secret.content_string.strip() == SECRET
    assert host.file("/etc/alertmanager/secrets").mode == 0o750
    # amtool accepts what was written (and reads the secret file it names)
    amtool = (
        "/usr/bin/amtool"
        if host.ansible.get_variables()["alertmanager_install_method"] == "package"
        else "/usr/local/bin/amtool"
    )
    assert host.run(f"{amtool} check-config /etc/alertmanager/alertmanager.yml").rc == 0


def test_the_two_form_one_cluster(host):
    def ready():
        status = _json(host, f"{AM}/api/v2/status")
        return status if status["cluster"]["status"] == "ready" and len(status["cluster"]["peers"]) == 2 else None

    status = _wait(ready, timeout=90)
    assert status, _json(host, f"{AM}/api/v2/status")["cluster"]


def test_prometheus_sends_to_both_and_scrapes_both(host):
    def active():
        data = _json(host, "http://127.0.0.1:9090/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        return sorted(a["url"] for a in data)

    assert _wait(lambda: len(active()) == 2, timeout=30), active()
    assert active() == ["http://prom-gpu:9093/api/v2/alerts", "http://prom-mon:9093/api/v2/alerts"]

    def scraped():
        out = host.check_output(
            "curl -fsS --max-time 5 --get --data-urlencode 'query=up{job=\"alertmanager\"}' "
            "http://127.0.0.1:9090/api/v1/query"
        )
        return sorted(r["metric"]["instance"] for r in json.loads(out)["data"]["result"] if r["value"][1] == "1")

    assert _wait(lambda: scraped() == ["prom-gpu", "prom-mon"], timeout=60), scraped()


def test_one_notification_although_both_got_the_alert(host):
    _only_on_prom_mon(host)
    host.run("rm -f /var/tmp/webhook.jsonl; systemctl stop molecule-webhook.service 2>/dev/null")
    host.run(f"cat > /var/tmp/webhook.py <<'EOF'\n{RECEIVER}\nEOF")
    assert host.run("systemd-run --unit=molecule-webhook /usr/bin/python3 /var/tmp/webhook.py").rc == 0
    # a GET answers 501 from the receiver: it is listening
    assert _wait(lambda: host.run("curl -s -o /dev/null http://127.0.0.1:9999/").rc == 0, timeout=10)
    host.run("rm -f /var/tmp/webhook.jsonl")
    alert = json.dumps(
        [
            {
                "labels": {"alertname": "MoleculeTestAlert", "host": "node-7", "severity": "warning"},
                "annotations": {"summary": "delivered once"},
            }
        ]
    )
    # Prometheus sends every alert to every Alertmanager; so does this test.
    for name in ("prom-mon", "prom-gpu"):
        _json(_host(name), f"{AM}/api/v2/alerts", alert)

    def delivered():
        f = host.file("/var/tmp/webhook.jsonl")
        return [json.loads(line) for line in f.content_string.splitlines()] if f.exists else []

    assert _wait(delivered, timeout=60), "no notification reached the webhook receiver"
    # The second Alertmanager waits its peer position x peer timeout (15 s), then finds the first one's entry in
    # the shared notification log and sends nothing.
    time.sleep(25)
    notifications = delivered()
    assert len(notifications) == 1, notifications
    body = notifications[0]
    assert body["receiver"] == "verifier"
    assert body["status"] == "firing"
    assert body["commonLabels"] == {"alertname": "MoleculeTestAlert", "host": "node-7", "severity": "warning"}


def test_a_silence_made_on_one_is_on_both(host):
    _only_on_prom_mon(host)
    silence = json.dumps(
        {
            "matchers": [{"name": "alertname", "value": "MoleculeSilenced", "isRegex": False}],
            "startsAt": "2020-01-01T00:00:00Z",
            "endsAt": "2099-01-01T00:00:00Z",
            "createdBy": "molecule",
            "comment": "gossip check",
        }
    )
    silence_id = _json(_host("prom-gpu"), f"{AM}/api/v2/silences", silence)["silenceID"]

    def replicated():
        return any(s["id"] == silence_id for s in _json(host, f"{AM}/api/v2/silences"))

    assert _wait(replicated, timeout=30)


def test_a_changed_route_reloads_and_a_bad_one_is_refused(host):
    record = json.loads(host.file("/var/tmp/molecule-alertmanager.json").content_string)
    assert record["pid_before"] > 0
    assert record["pid_after"] == record["pid_before"]
    assert "group_interval: 6s" in host.file("/etc/alertmanager/alertmanager.yml").content_string
    # the running Alertmanager loaded it
    config = _json(host, f"{AM}/api/v2/status")["config"]["original"]
    assert "group_interval: 6s" in config
    assert record["bad_accepted"] is False
    assert record["unchanged"] is True
    hostname = host.backend.get_hostname()
    assert (
        f"host '{hostname}': alertmanager_severity_receivers['critical']='pager-that-does-not-exist'"
        in (record["bad_msg"])
    )


def test_every_label_name_in_prometheus_is_reserved_or_a_fleet_label(host):
    """Alertmanager's own series (0.25 on prom-mon, 0.28 on prom-gpu) bring label names the reserved list must know,
    or a host's fleet_labels could take one of them."""
    _only_on_prom_mon(host)
    sys.path.insert(0, os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "collections"))
    from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_catalog import reserved_label

    fleet_label_names = {n for h in RUNNER.get_hosts("all") for n in RUNNER.get_variables(h).get("fleet_labels", {})}
    names = set(_json(host, "http://127.0.0.1:9090/api/v1/labels")["data"])
    assert "integration" in names  # Alertmanager's series are there
    unknown = sorted(n for n in names - fleet_label_names if reserved_label(n) is None and n != "__name__")
    assert not unknown, f"label names no entry of RESERVED_LABELS covers: {unknown}"

"""alertmanager.yml from the alertmanager role's variables: what is written, what amtool accepts, what is refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.llm_monitor.fleet.plugins.filter.alertmanager import (
    alertmanager_config,
    alertmanager_endpoints,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((REPO / "roles" / "alertmanager" / "defaults" / "main.yml").read_text())
SECRETS = "/etc/alertmanager/secrets"


def _vars(**overrides: Any) -> dict[str, Any]:
    names = [k for k in DEFAULTS if k.startswith("alertmanager_")]
    return {**{k: DEFAULTS[k] for k in names}, **overrides}


FULL = _vars(
    alertmanager_receivers=[
        {"name": "oncall", "type": "pagerduty", "secret": "R0UTING-KEY"},
        {
            "name": "research",
            "type": "slack",
            "secret": "https://hooks.slack.com/T/B/x",
            "settings": {"channel": "#gpu"},
        },
        {"name": "research", "type": "email", "settings": {"to": "research@example.com"}},
        {"name": "tickets", "type": "webhook", "settings": {"url": "http://tickets.example.com/hook"}},
        {
            "name": "mail",
            "type": "email",
            "secret": "smtp-pass",
            "settings": {"to": "ops@example.com", "smarthost": "smtp.example.com:587", "auth_username": "ops"},
        },
        {"name": "genie", "type": "opsgenie", "secret": "og-key"},
    ],
    alertmanager_default_receiver="tickets",
    alertmanager_severity_receivers={"critical": "oncall"},
    alertmanager_team_receivers={"research": "research"},
    alertmanager_time_intervals=[
        {"name": "quiet-hours", "time_intervals": [{"times": [{"start_time": "22:00", "end_time": "24:00"}]}]}
    ],
    alertmanager_routes=[{"receiver": "mail", "matchers": ['severity="info"'], "mute_time_intervals": ["quiet-hours"]}],
    alertmanager_global={"smtp_from": "alertmanager@example.com", "smtp_smarthost": "smtp.example.com:25"},
)


def test_receivers_routes_and_secrets_are_rendered() -> None:
    out = alertmanager_config(FULL, "mon-1", SECRETS)
    config, secrets = out["config"], out["secrets"]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) == {"null", "oncall", "research", "tickets", "mail", "genie"}
    # one receiver, two integrations
    assert set(receivers["research"]) == {"name", "slack_configs", "email_configs"}
    assert config["route"]["receiver"] == "tickets"
    assert [r["receiver"] for r in config["route"]["routes"]] == ["mail", "research", "oncall"]
    assert config["route"]["routes"][1]["matchers"] == ['team="research"']
    assert config["route"]["routes"][2]["matchers"] == ['severity="critical"']
    assert config["route"]["group_by"] == ["alertname", "host", "severity"]
    assert len(config["inhibit_rules"]) == 3
    # every secret in its own file, none in the config
    rendered = yaml.safe_dump(config)
    for secret in ("R0UTING-KEY", "hooks.slack.com", "smtp-pass", "og-key"):
        assert secret not in rendered
    assert {s["path"] for s in secrets} == {
        receivers["oncall"]["pagerduty_configs"][0]["routing_key_file"],
        receivers["research"]["slack_configs"][0]["api_url_file"],
        receivers["mail"]["email_configs"][0]["auth_password_file"],
        receivers["genie"]["opsgenie_configs"][0]["api_key_file"],
    }
    assert all(s["path"].startswith(SECRETS + "/") for s in secrets)


def test_amtool_accepts_the_rendered_config(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (bash tests/harness/tools.sh)")
    out = alertmanager_config(FULL, "mon-1", str(tmp_path))
    for secret in out["secrets"]:
        Path(secret["path"]).write_text(secret["content"])
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(out["config"], sort_keys=False))
    res = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Found:" in res.stdout and " - 6 receivers" in res.stdout
    assert " - 3 inhibit rules" in res.stdout


def test_no_receivers_gives_a_null_receiver_that_amtool_accepts(tmp_path: Path) -> None:
    out = alertmanager_config(_vars(), "mon-1", str(tmp_path))
    assert out["config"]["route"]["receiver"] == "null"
    assert out["secrets"] == []
    amtool = shutil.which("amtool")
    if amtool:
        path = tmp_path / "alertmanager.yml"
        path.write_text(yaml.safe_dump(out["config"], sort_keys=False))
        assert subprocess.run([amtool, "check-config", str(path)], capture_output=True, timeout=30).returncode == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"alertmanager_receivers": [{"name": "x", "type": "sms", "secret": "s"}]},
            "host 'mon-1': alertmanager_receivers[0] (x): type='sms' is not a receiver type",
        ),
        (
            {"alertmanager_receivers": [{"name": "pd", "type": "pagerduty"}], "alertmanager_default_receiver": "pd"},
            "alertmanager_receivers[0] (pd): a pagerduty receiver needs its secret",
        ),
        (
            {"alertmanager_receivers": [{"name": "pd", "type": "pagerduty", "secret": ""}]},
            "needs its secret",
        ),
        (
            {"alertmanager_receivers": [{"name": "s", "type": "slack", "secret": "u"}]},
            "type slack needs settings.channel",
        ),
        (
            {
                "alertmanager_receivers": [{"name": "m", "type": "email", "settings": {"to": "a@example.com"}}],
                "alertmanager_default_receiver": "m",
            },
            "an email receiver needs settings.smarthost or alertmanager_global.smtp_smarthost",
        ),
        (
            {"alertmanager_receivers": [{"name": "w", "type": "webhook"}]},
            "a webhook needs exactly one of settings.url",
        ),
        (
            {
                "alertmanager_receivers": [
                    {"name": "p", "type": "pagerduty", "secret": "k", "settings": {"routing_key": "k"}}
                ]
            },
            "settings.routing_key: give the secret in 'secret'",
        ),
        (
            {"alertmanager_receivers": [{"name": "a b", "type": "webhook", "settings": {"url": "http://x"}}]},
            "alertmanager_receivers[0].name='a b' is not a receiver name",
        ),
        (
            {"alertmanager_receivers": "pagerduty"},
            "alertmanager_receivers must be a list",
        ),
        (
            {"alertmanager_receivers": [{"name": "w", "type": "webhook", "settings": {"url": "http://x"}}]},
            "alertmanager_default_receiver is not set",
        ),
        (
            {"alertmanager_default_receiver": "nobody"},
            "alertmanager_route.receiver='nobody' is not a receiver of alertmanager_receivers",
        ),
        (
            {"alertmanager_severity_receivers": {"critical": "pager"}},
            "alertmanager_severity_receivers['critical']='pager' is not a receiver",
        ),
        (
            {"alertmanager_team_receivers": {"research": "research"}},
            "alertmanager_team_receivers['research']='research' is not a receiver",
        ),
        (
            {"alertmanager_routes": [{"receiver": "null"}]},
            "alertmanager_routes[0] needs matchers",
        ),
        (
            {"alertmanager_routes": [{"receiver": "null", "matchers": ['a="b"'], "group_wait": "5 minutes"}]},
            "alertmanager_routes[0].group_wait='5 minutes' is not a duration",
        ),
        (
            {"alertmanager_route": {"group_wait": 30}},
            "alertmanager_route.group_wait=30 is not a duration",
        ),
        (
            {"alertmanager_routes": [{"receiver": "null", "matchers": ['a="b"'], "mute_time_intervals": ["night"]}]},
            "mute_time_intervals: ['night'] not in alertmanager_time_intervals",
        ),
        (
            {"alertmanager_routes": [{"receiver": "null", "matchers": ['a="b"'], "recievers": []}]},
            "alertmanager_routes[0]: unknown keys ['recievers']",
        ),
        (
            {"alertmanager_route": {"receiver": "null"}},
            "set alertmanager_default_receiver instead",
        ),
        (
            {"alertmanager_inhibit_rules": [{"source_matchers": ['a="b"']}]},
            "alertmanager_inhibit_rules[0] needs source_matchers and target_matchers",
        ),
        (
            {"alertmanager_receivers": [{"name": "w", "type": "webhook", "settings": {"url": "alerts.example.com"}}]},
            "alertmanager_receivers[0] (w).settings.url='alerts.example.com' is not an http(s) URL",
        ),
        (
            {
                "alertmanager_receivers": [
                    {"name": "s", "type": "slack", "secret": "T00/B00/xyz-token", "settings": {"channel": "#gpu"}}
                ]
            },
            "alertmanager_receivers[0] (s): its secret is not an http(s) URL",
        ),
        (
            {"alertmanager_routes": [{"receiver": "null", "matchers": ["team=~(research"]}]},
            "alertmanager_routes[0].matchers[0]='team=~(research': the regex does not compile",
        ),
        (
            {"alertmanager_routes": [{"receiver": "null", "matchers": ["team: research"]}]},
            "alertmanager_routes[0].matchers[0]='team: research' is not a matcher",
        ),
        (
            {"alertmanager_inhibit_rules": [{"source_matchers": ['a="b"'], "target_matchers": ["severity"]}]},
            "alertmanager_inhibit_rules[0].target_matchers[0]='severity' is not a matcher",
        ),
    ],
)
def test_bad_input_is_refused_naming_host_and_variable(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=r"llm_monitor\.fleet: host 'mon-1'") as err:
        alertmanager_config(_vars(**overrides), "mon-1", SECRETS)
    assert message in str(err.value)
    assert "xyz-token" not in str(err.value), "a secret is never shown"


def test_fqdn_ipv6_urls_and_odd_team_values_are_accepted_by_amtool(tmp_path: Path) -> None:
    variables = _vars(
        alertmanager_receivers=[
            {"name": "ops", "type": "webhook", "settings": {"url": "http://[2001:db8::1]:9999/alerts"}},
            {"name": "ml", "type": "webhook", "settings": {"url": "https://hooks.ml.example.com/am"}},
        ],
        alertmanager_default_receiver="ops",
        alertmanager_team_receivers={'ml "serving"': "ml", "ml-research.eu": "ml"},
        alertmanager_routes=[{"receiver": "ml", "matchers": ['host=~"gpu-[0-9]+\\.dc1\\.example\\.com"']}],
    )
    rendered = alertmanager_config(variables, "mon-1", SECRETS)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(rendered["config"]))
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (make tools)")
    res = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_endpoints_from_the_inventory() -> None:
    hostvars = {
        "mon-1": {"fleet_scrape_address": "10.0.0.1"},
        "mon-2": {"ansible_host": "fd00::2", "alertmanager_port": "9193"},
        "mon-3": {"alertmanager_enabled": "false"},
        "mon-4.example.com": {},
    }
    groups = {"monitoring": list(hostvars)}
    assert alertmanager_endpoints(hostvars, groups) == ["10.0.0.1:9093", "[fd00::2]:9193", "mon-4.example.com:9093"]
    peers = alertmanager_endpoints(hostvars, groups, "monitoring", "alertmanager_cluster_port", 9094, "mon-1")
    assert peers == ["[fd00::2]:9094", "mon-4.example.com:9094"]
    assert alertmanager_endpoints(hostvars, {}) == []


def test_bad_peer_address_or_port_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match=r"host 'mon-2': alertmanager_cluster_port='gossip' is not a port"):
        alertmanager_endpoints(
            {"mon-1": {}, "mon-2": {"alertmanager_cluster_port": "gossip"}},
            {"monitoring": ["mon-1", "mon-2"]},
            "monitoring",
            "alertmanager_cluster_port",
            9094,
            "mon-1",
        )
    with pytest.raises(AnsibleFilterError, match=r"host 'mon-2': fleet_scrape_address='http://mon-2' is not"):
        alertmanager_endpoints({"mon-2": {"fleet_scrape_address": "http://mon-2"}}, {"monitoring": ["mon-2"]})

"""grafana.ini, the datasources and the dashboards from the grafana role's variables: what is written, what refused."""

from __future__ import annotations

import configparser
import json
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.llm_monitor.fleet.plugins.filter.grafana import (
    grafana_alertmanager_url,
    grafana_check_secrets,
    grafana_dashboards,
    grafana_datasources,
    grafana_ini,
    grafana_prometheus_servers,
)
from ansible_collections.llm_monitor.fleet.plugins.module_utils.grafana_config import UID_MAX, uid

REPO = Path(__file__).resolve().parents[2]
COLLECTION_DASHBOARDS = str(REPO / "files" / "dashboards")


@pytest.mark.parametrize(
    ("password", "secret", "message"),
    [
        ("", "k" * 32, "grafana_admin_password is not set"),
        (None, "k" * 32, "grafana_admin_password is not set"),
        ("admin", "k" * 32, "well-known default"),
        ("Admin ", "k" * 32, "well-known default"),
        ("changeme", "k" * 32, "well-known default"),
        ("two\nlines", "k" * 32, "one line"),
        ("s3cret-Enough", "", "grafana_secret_key is not set"),
        ("s3cret-Enough", "SW2YcwTIb9zpOOhoPsMm", "documented default"),
    ],
)
def test_a_missing_or_default_secret_is_refused_without_showing_it(password: Any, secret: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message) as caught:
        grafana_check_secrets("admin", "mon-1", password, secret)
    assert "host 'mon-1'" in str(caught.value)
    if password and len(password) > 6:
        assert password not in str(caught.value)


def test_the_admin_user_as_password_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="well-known default"):
        grafana_check_secrets("ops", "mon-1", "ops", "k" * 32)


def test_good_secrets_pass() -> None:
    assert grafana_check_secrets("admin", "mon-1", "c0rrect-horse", "9f" * 16)


DEFAULTS = {"server": {"http_port": 3000, "protocol": "http"}, "security": {"admin_password": "$__file{/x}"}}


def _parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def test_grafana_ini_merges_sections_and_renders_types() -> None:
    text = grafana_ini(
        DEFAULTS, "mon-1", {"server": {"http_port": 3443, "enable_gzip": True}, "smtp": {"enabled": False}}
    )
    ini = _parse(text)
    assert ini["server"]["http_port"] == "3443" and ini["server"]["enable_gzip"] == "true"
    assert ini["smtp"]["enabled"] == "false"
    assert ini["security"]["admin_password"] == "$__file{/x}"


def test_grafana_ini_null_removes_a_setting_and_quotes_comment_characters() -> None:
    text = grafana_ini(DEFAULTS, "mon-1", {"server": {"protocol": None, "domain": "a;b#c"}})
    assert "protocol" not in text
    assert 'domain = """a;b#c"""' in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"security": {"admin_password": "x"}}, "grafana_ini.security.admin_password holds a secret"),
        ({"security": {"secret_key": "x"}}, "set grafana_secret_key"),
        ({"server": {"http_port": [1, 2]}}, r"grafana_ini.server.http_port is a list"),
        ({"server": {"root_url": "a\nb"}}, "one line"),
        ({"server": "3000"}, "grafana_ini.server must be a mapping"),
        (["server"], "grafana_ini must be a mapping"),
    ],
)
def test_grafana_ini_refuses(overrides: Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        grafana_ini(DEFAULTS, "mon-1", overrides)


def test_datasource_uids_are_stable_valid_and_short() -> None:
    assert uid("llm-monitor-prometheus", "mon-1") == "llm-monitor-prometheus-mon-1"
    long = uid("llm-monitor-prometheus", "prometheus-a.eu-west-1.compute.internal.example.com")
    assert len(long) <= UID_MAX and long == uid(
        "llm-monitor-prometheus", "prometheus-a.eu-west-1.compute.internal.example.com"
    )
    assert long != uid("llm-monitor-prometheus", "prometheus-b.eu-west-1.compute.internal.example.com")
    assert uid("llm-monitor-prometheus", "MON_1.example") == "llm-monitor-prometheus-mon_1-example"


HOSTVARS: dict[str, dict[str, Any]] = {
    "mon-1": {"fleet_scrape_address": "10.0.0.1"},
    "mon-2": {"ansible_host": "2001:db8::2", "prometheus_port": "9091", "alertmanager_port": 9193},
    "node-1": {},
}
GROUPS = {"monitoring": ["mon-1", "mon-2"], "all": ["mon-1", "mon-2", "node-1"]}


def test_every_monitoring_prometheus_is_a_datasource_and_the_own_one_is_default() -> None:
    servers = grafana_prometheus_servers(HOSTVARS, GROUPS)
    assert servers == [
        {"host": "mon-1", "url": "http://10.0.0.1:9090"},
        {"host": "mon-2", "url": "http://[2001:db8::2]:9091"},
    ]
    doc = grafana_datasources(servers, "mon-2", "", "http://x:9093", "", [], "llm-monitor-prometheus")
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert by_uid["llm-monitor-prometheus"]["url"] == "http://[2001:db8::2]:9091"
    assert by_uid["llm-monitor-prometheus-mon-1"]["url"] == "http://10.0.0.1:9090"
    assert [d["uid"] for d in doc["datasources"] if d["isDefault"]] == ["llm-monitor-prometheus"]
    assert doc["prune"] is True and doc["apiVersion"] == 1


def test_one_monitoring_host_gets_only_the_default_prometheus() -> None:
    servers = grafana_prometheus_servers(HOSTVARS, {"monitoring": ["mon-1"]})
    doc = grafana_datasources(servers, "mon-1", "", "", "", [], "llm-monitor-prometheus")
    assert [d["uid"] for d in doc["datasources"]] == ["llm-monitor-prometheus"]


def test_the_alertmanager_datasource_is_the_hosts_own_or_the_first() -> None:
    assert grafana_alertmanager_url(HOSTVARS, GROUPS, "mon-2") == "http://[2001:db8::2]:9193"
    assert grafana_alertmanager_url(HOSTVARS, GROUPS, "node-1") == "http://10.0.0.1:9093"
    off = {**HOSTVARS, "mon-1": {**HOSTVARS["mon-1"], "alertmanager_enabled": False}}
    assert grafana_alertmanager_url(off, GROUPS, "mon-1") == "http://[2001:db8::2]:9193"


def test_a_global_store_and_loki_and_extra_datasources() -> None:
    extra = [{"name": "TestData", "type": "grafana-testdata-datasource", "uid": "testdata"}]
    doc = grafana_datasources([], "mon-1", "http://vm:8428", "", "http://loki:3100", extra, "testdata")
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert by_uid["llm-monitor-prometheus"]["url"] == "http://vm:8428"
    assert by_uid["llm-monitor-loki"]["type"] == "loki"
    assert by_uid["testdata"]["isDefault"] and not by_uid["llm-monitor-prometheus"]["isDefault"]
    assert by_uid["testdata"]["access"] == "proxy"


@pytest.mark.parametrize(
    ("extra", "default", "message"),
    [
        ([{"name": "G", "type": "graphyte", "uid": "g"}], None, r"grafana_datasources_extra\[0\].type='graphyte'"),
        ([{"name": "G", "type": "graphite"}], None, r"grafana_datasources_extra\[0\].uid is required"),
        ([{"name": "G", "type": "graphite", "uid": "a b"}], None, "at most 40 letters"),
        ([{"name": "G", "type": "graphite", "uid": "g", "isdefault": True}], None, "unknown keys isdefault"),
        ([{"name": "G", "type": "graphite", "uid": "g", "isDefault": True}], None, "grafana_default_datasource_uid"),
        ([{"name": "Prometheus", "type": "graphite", "uid": "g"}], None, "two datasources have the name"),
        ([{"name": "G", "type": "graphite", "uid": "llm-monitor-prometheus"}], None, "two datasources have the uid"),
        ("graphite", None, "must be a list"),
        ([], "nope", "grafana_default_datasource_uid='nope' is none of"),
    ],
)
def test_bad_datasources_are_refused(extra: Any, default: str | None, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        grafana_datasources([], "mon-1", "http://p:9090", "", "", extra, default or "llm-monitor-prometheus")


def test_no_prometheus_at_all_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="Grafana would have no data"):
        grafana_datasources([], "mon-1", "", "", "", [], "llm-monitor-prometheus")


def test_the_collection_dashboards_are_all_provisioned_in_their_folders() -> None:
    found = grafana_dashboards(COLLECTION_DASHBOARDS, "mon-1", [])
    shipped = sorted(Path(COLLECTION_DASHBOARDS).glob("*/*.json"))
    assert [f["src"] for f in found] == [str(p) for p in shipped]
    assert {f["folder"] for f in found} >= {"system", "llm", "fleet", "analytics", "announcements"}
    assert all(f["dest"] == f"{f['folder']}/{f['file']}" for f in found)


def _dashboard_dir(tmp_path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return str(tmp_path)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"team/a.json": '{"title": "A", "uid": "a",,}'}, r"a.json is not valid JSON \(line 1, column 27"),
        ({"team/a.json": '["not", "an", "object"]'}, "must be a JSON object with a non-empty title"),
        ({"team/a.json": '{"title": "A"}'}, "has uid None: every provisioned dashboard needs a stable uid"),
        ({"team/a.json": '{"title": "A", "uid": "' + "x" * 41 + '"}'}, "at most 40"),
        ({"team/a.json": '{"title": "A", "uid": "llm-monitor-slo"}'}, "have the same uid 'llm-monitor-slo'"),
        ({"team/a.json": '{"title": "A", "uid": "a"}', "other/b.json": '{"title": "B", "uid": "a"}'}, "same uid 'a'"),
        ({"fleet/fleet-overview.json": '{"title": "A", "uid": "mine"}'}, "would both be fleet/fleet-overview.json"),
        ({"team/a.json": b"\xff\xfe".decode("latin-1")}, "cannot be read|not valid JSON"),
    ],
)
def test_bad_dashboards_are_refused_naming_the_file(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message) as caught:
        grafana_dashboards(COLLECTION_DASHBOARDS, "mon-1", [_dashboard_dir(tmp_path, files)])
    assert "grafana_dashboards_dirs[0]" in str(caught.value)


def test_extra_dashboards_join_their_folders(tmp_path: Path) -> None:
    extra = _dashboard_dir(tmp_path, {"team/a.json": json.dumps({"title": "A", "uid": "team-a"})})
    found = grafana_dashboards(COLLECTION_DASHBOARDS, "mon-1", [extra])
    assert {"folder": "team", "uid": "team-a"}.items() <= next(f for f in found if f["uid"] == "team-a").items()


@pytest.mark.parametrize("dirs", ["/tmp", [""], [3], None])
def test_dashboards_dirs_must_be_a_list_of_directories(dirs: Any) -> None:
    with pytest.raises(AnsibleFilterError, match="grafana_dashboards_dirs must be a list"):
        grafana_dashboards(COLLECTION_DASHBOARDS, "mon-1", dirs)


def test_a_missing_dashboards_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AnsibleFilterError, match="is not a directory on the controller"):
        grafana_dashboards(COLLECTION_DASHBOARDS, "mon-1", [str(tmp_path / "nope")])

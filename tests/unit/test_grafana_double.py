"""The TEST DOUBLE of Grafana (tests/doubles/grafana) behaves like Grafana where the grafana role relies on it,
and refuses provisioning that breaks Grafana's schema, naming the file and the field."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DOUBLE = Path(__file__).resolve().parents[2] / "tests" / "doubles" / "grafana"
PROGRAM = DOUBLE / "grafana_double.py"
PROM = {"name": "Prometheus", "type": "prometheus", "uid": "prom", "url": "http://localhost:9090", "isDefault": True}


def defaults_ini() -> str:
    """The defaults.ini build.sh ships, so the tests read the packaged defaults."""
    text = (DOUBLE / "build.sh").read_text()
    return text.split("<<'DEFAULTS'\n", 1)[1].split("\nDEFAULTS\n", 1)[0] + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dump(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


class Grafana:
    """A homepath, grafana.ini, provisioning tree and data directory in a temporary directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port = tmp, free_port()
        self.prov, self.boards, self.data = tmp / "provisioning", tmp / "boards", tmp / "data"
        dump(tmp / "home" / "conf" / "defaults.ini", defaults_ini())
        (self.prov / "datasources").mkdir(parents=True)
        (self.prov / "dashboards").mkdir(parents=True)
        self.boards.mkdir()
        self.ini(admin_password="secret")
        self.procs: list[subprocess.Popen[str]] = []
        self.lines: list[str] = []

    def ini(self, **security: str) -> None:
        lines = ["[server]", "http_addr = 127.0.0.1", f"http_port = {self.port}", "[security]"]
        dump(self.tmp / "grafana.ini", "\n".join(lines + [f"{k} = {v}" for k, v in security.items()]) + "\n")

    def args(self, *extra: str, command: str = "server") -> list[str]:
        return [sys.executable, str(PROGRAM), command, "--homepath", str(self.tmp / "home"), "--config",
                str(self.tmp / "grafana.ini"), f"cfg:default.paths.data={self.data}",
                f"cfg:default.paths.provisioning={self.prov}", "cfg:log.mode=console", *extra]  # fmt: skip

    def run(self, *extra: str, command: str = "server", stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(*extra, command=command), input=stdin, capture_output=True, text=True, timeout=20
        )

    def refused(self, *extra: str) -> str:
        """Runs the server, expecting it to refuse to start; returns its output."""
        done = self.run(*extra)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Failed to start grafana. error:" in done.stderr
        assert "level=error" in done.stdout
        return done.stderr

    def start(self, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(self.args(*extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        self.lines = lines = list[str]()
        threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
        self.wait_for(lambda: any("HTTP Server Listen" in line for line in lines) or proc.poll() is not None)
        assert proc.poll() is None, "".join(lines)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)

    @staticmethod
    def wait_for(condition: Callable[[], bool], seconds: float = 8) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    def call(self, path: str, method: str = "GET", auth: tuple[str, str] | None = ("admin", "secret")) -> Any:
        """(status, parsed JSON or text, headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        is_json = resp.getheader("Content-Type", "").startswith("application/json")
        return resp.status, json.loads(body) if is_json else body, dict(resp.getheaders())

    def get(self, path: str, **kw: Any) -> Any:
        status, body, _ = self.call(path, **kw)
        assert status == 200, (path, status, body)
        return body


@pytest.fixture
def grafana(tmp_path: Path) -> Iterator[Grafana]:
    g = Grafana(tmp_path)
    yield g
    g.stop()


def provide(g: Grafana, **provider: Any) -> None:
    provider = {"name": "fleet", "updateIntervalSeconds": 1, "options": {"path": str(g.boards)}, **provider}
    dump(g.prov / "dashboards" / "fleet.yaml", {"apiVersion": 1, "providers": [provider]})


def test_version_and_help() -> None:
    for args in (["--version"], ["-v"], ["server", "-v"]):
        out = subprocess.run([sys.executable, str(PROGRAM), *args], capture_output=True, text=True, check=True).stdout
        assert out.startswith("Version ") and "TEST DOUBLE" in out
    out = subprocess.run([sys.executable, str(PROGRAM), "--help"], capture_output=True, text=True, check=True).stdout
    assert "TEST DOUBLE of Grafana" in out and "NOT Grafana" in out


def test_health_login_and_auth(grafana: Grafana) -> None:
    grafana.start()
    health = grafana.get("/api/health", auth=None)
    assert health["database"] == "ok" and health["commit"] == "testdouble" and health["version"]
    login = grafana.get("/login", auth=None)
    assert "Grafana" in login and "TEST DOUBLE" in login
    status, _, headers = grafana.call("/", auth=None)
    assert (status, headers["Location"]) == (302, "/login")
    assert grafana.call("/api/search", auth=None)[:2] == (401, {"message": "Unauthorized"})
    assert grafana.call("/api/search", auth=("admin", "admin"))[:2] == (
        401,
        {"message": "invalid username or password"},
    )
    assert grafana.get("/api/search") == []
    assert grafana.get("/api/user")["isGrafanaAdmin"] is True
    settings = grafana.get("/api/frontend/settings")
    assert settings["buildInfo"]["version"] == health["version"]
    assert settings["appUrl"] == f"http://localhost:{grafana.port}/"  # root_url's %(http_port)s
    assert grafana.call("/api/admin/provisioning/datasources/reload", "POST", auth=None)[0] == 401
    assert any('msg="HTTP Server Listen" address=127.0.0.1:' in line for line in grafana.lines)


def test_anonymous_is_a_viewer(grafana: Grafana) -> None:
    grafana.start("cfg:auth.anonymous.enabled=true")
    assert grafana.call("/", auth=None)[0] == 200
    assert grafana.get("/api/search", auth=None) == []
    assert grafana.call("/api/admin/provisioning/dashboards/reload", "POST", auth=None)[0] == 403


def test_admin_password_lives_in_the_database(grafana: Grafana) -> None:
    grafana.start()
    grafana.stop()
    grafana.ini(admin_password="changed")  # like Grafana: ignored once the admin user exists
    grafana.start()
    grafana.get("/api/user")
    assert grafana.call("/api/user", auth=("admin", "changed"))[0] == 401
    done = grafana.run("admin", "reset-admin-password", "third-pw", command="cli")
    assert done.returncode == 0 and "Admin password changed successfully" in done.stdout, done.stderr
    grafana.get("/api/user", auth=("admin", "third-pw"))  # read from the DB on each request
    done = grafana.run("admin", "reset-admin-password", "--password-from-stdin", command="cli", stdin="fourth\n")
    assert done.returncode == 0, done.stderr
    grafana.get("/api/user", auth=("admin", "fourth"))
    assert grafana.run("admin", "reset-admin-password", "x", command="cli").returncode == 1


def test_file_and_env_expansion(grafana: Grafana, monkeypatch: pytest.MonkeyPatch) -> None:
    dump(grafana.tmp / "pw", "from-file\n")
    monkeypatch.setenv("GRAFANA_DOUBLE_USER", "root")
    grafana.ini(admin_password=f"$__file{{{grafana.tmp / 'pw'}}}", admin_user="$__env{GRAFANA_DOUBLE_USER}")
    grafana.start()
    grafana.get("/api/user", auth=("root", "from-file"))
    grafana.stop()
    grafana.ini(admin_password=f"$__file{{{grafana.tmp / 'missing'}}}")
    assert "failed to read file" in grafana.refused()


def test_provisioned_datasources_and_dashboards(grafana: Grafana) -> None:
    prom = dict(PROM, jsonData={"timeInterval": "15s"}, secureJsonData={"httpHeaderValue1": "s3cret"})
    loki = {"name": "Loki", "type": "loki", "url": "http://localhost:3100", "access": "proxy", "editable": True}
    dump(grafana.prov / "datasources" / "fleet.yml", {"apiVersion": 1, "datasources": [prom, loki]})
    provide(grafana, options={"path": str(grafana.boards), "foldersFromFilesStructure": True}, allowUiUpdates=True)
    dump(grafana.boards / "home.json", {"title": "Fleet home", "uid": "home"})
    dump(grafana.boards / "GPU" / "gpus.json", {"title": "GPUs", "uid": "gpus", "panels": [{"type": "timeseries"}]})
    grafana.start()
    sources = {d["name"]: d for d in grafana.get("/api/datasources")}
    assert sources["Prometheus"]["isDefault"] is True and sources["Prometheus"]["readOnly"] is True
    assert sources["Loki"]["readOnly"] is False and sources["Loki"]["uid"]
    one = grafana.get("/api/datasources/uid/prom")
    assert one["jsonData"] == {"timeInterval": "15s"} and one["secureJsonFields"] == {"httpHeaderValue1": True}
    assert "s3cret" not in json.dumps(grafana.get("/api/datasources/uid/prom"))
    assert grafana.call("/api/datasources/uid/nope")[0] == 404
    hits = {h["uid"]: h for h in grafana.get("/api/search?type=dash-db&query=")}
    assert hits["gpus"]["folderTitle"] == "GPU" and hits["gpus"]["url"] == "/d/gpus/gpus"
    assert "folderTitle" not in hits["home"] and hits["home"]["type"] == "dash-db"
    assert [f["title"] for f in grafana.get("/api/folders")] == ["GPU"]
    board = grafana.get("/api/dashboards/uid/gpus")
    assert board["dashboard"]["title"] == "GPUs" and board["meta"]["provisioned"] is True
    assert board["meta"]["provisionedExternalId"] == "GPU/gpus.json" and board["meta"]["folderTitle"] == "GPU"
    assert board["meta"]["canSave"] is True
    assert grafana.get("/api/dashboards/uid/home")["meta"]["folderTitle"] == "General"


BAD_DATASOURCES: list[tuple[str, Any, str]] = [
    ("api", {"apiVersion": 2, "datasources": [PROM]}, "apiVersion: must be 1"),
    ("name", {"datasources": [{"type": "prometheus"}]}, "datasources[0].name: required"),
    ("type", {"datasources": [dict(PROM, type="prometheus-typo")]}, "datasources[0].type: plugin not found"),
    ("uid", {"datasources": [dict(PROM, uid="x" * 41)]}, "datasources[0].uid:"),
    ("uid-chars", {"datasources": [dict(PROM, uid="a b")]}, "datasources[0].uid:"),
    ("access", {"datasources": [dict(PROM, access="server")]}, "datasources[0].access: must be proxy or direct"),
    ("typo", {"datasources": [dict(PROM, isDefualt=True)]}, "datasources[0].isDefualt: unknown field"),
    ("bool", {"datasources": [dict(PROM, isDefault="true")]}, "datasources[0].isDefault: must be bool"),
    ("top", {"datasource": [PROM]}, "datasource: unknown field"),
    ("secure", {"datasources": [dict(PROM, secureJsonData={"p": 1})]}, "datasources[0].secureJsonData.p: must be"),
    ("same-uid", {"datasources": [PROM, dict(PROM, name="B", isDefault=False)]}, "datasources[1].uid: 'prom'"),
    ("same-name", {"datasources": [PROM, dict(PROM, uid="b", isDefault=False)]}, "datasources[1].name:"),
    ("delete", {"deleteDatasources": [{"orgId": 1}]}, "deleteDatasources[0].name: required"),
    ("org", {"datasources": [dict(PROM, orgId=2)]}, "datasources[0].orgId: organization 2 not found"),
]


@pytest.mark.parametrize(("case", "doc", "message"), BAD_DATASOURCES, ids=[c[0] for c in BAD_DATASOURCES])
def test_bad_datasource_file_is_refused(grafana: Grafana, case: str, doc: Any, message: str) -> None:
    path = dump(grafana.prov / "datasources" / f"{case}.yaml", doc)
    err = grafana.refused()
    assert f"{path}: " in err and message in err, err


def test_two_default_datasources_are_refused(grafana: Grafana) -> None:
    dump(grafana.prov / "datasources" / "a.yaml", {"apiVersion": 1, "datasources": [PROM]})
    dump(grafana.prov / "datasources" / "b.yml", {"datasources": [dict(PROM, name="Other", uid="other")]})
    err = grafana.refused()
    assert "Only one datasource per organization can be marked as default" in err
    assert "b.yml: datasources[0].isDefault" in err and "a.yaml: datasources[0].isDefault" in err


BAD_PROVIDERS: list[tuple[str, dict[str, Any], str]] = [
    ("path", {"options": {}}, "providers[0].options.path: required"),
    ("missing", {"options": {"path": "/nonexistent/boards"}}, "providers[0].options.path: /nonexistent/boards does"),
    ("folders", {"folder": "GPU", "options": {"foldersFromFilesStructure": True}}, "'folder' and 'folderUID' should"),
    ("type", {"type": "git"}, "providers[0].type: only type 'file'"),
    ("typo", {"updateIntervalSecond": 5}, "providers[0].updateIntervalSecond: unknown field"),
    ("int", {"updateIntervalSeconds": "5"}, "providers[0].updateIntervalSeconds: must be int"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_PROVIDERS, ids=[c[0] for c in BAD_PROVIDERS])
def test_bad_dashboard_provider_is_refused(grafana: Grafana, case: str, change: dict[str, Any], message: str) -> None:
    provider: dict[str, Any] = {"name": "fleet", "options": {"path": str(grafana.boards)}}
    provider |= change
    provider["options"] = {"path": str(grafana.boards), **change.get("options", {})}
    if case == "path":
        provider["options"] = {}
    path = dump(grafana.prov / "dashboards" / "fleet.yaml", {"apiVersion": 1, "providers": [provider]})
    err = grafana.refused()
    assert f"{path}: " in err and message in err, err


def test_providers_with_one_name_are_refused(grafana: Grafana) -> None:
    provider = {"name": "fleet", "options": {"path": str(grafana.boards)}}
    dump(grafana.prov / "dashboards" / "a.yaml", {"providers": [provider, provider]})
    assert "a.yaml: providers[1].name: 'fleet' is also the name of" in grafana.refused()


BAD_BOARDS: list[tuple[str, str, str]] = [
    ("json", "{not json", ": not a valid JSON dashboard"),
    ("list", "[]", ": a dashboard must be a JSON object"),
    ("title", '{"uid": "a"}', ": title: Dashboard title cannot be empty"),
    ("uid", '{"title": "T", "uid": "has space"}', ": uid: 'has space' must be"),
    ("uid-long", json.dumps({"title": "T", "uid": "u" * 41}), ": uid: "),
    ("panels", '{"title": "T", "panels": [{"title": "no type"}]}', ": panels[0].type: every panel must"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD_BOARDS, ids=[c[0] for c in BAD_BOARDS])
def test_bad_dashboard_file_is_refused(grafana: Grafana, case: str, text: str, message: str) -> None:
    provide(grafana)
    path = dump(grafana.boards / "sub" / f"{case}.json", text)
    err = grafana.refused()
    assert f"{path}{message}" in err, err


def test_dashboard_uid_or_title_used_twice_is_refused(grafana: Grafana) -> None:
    other = grafana.tmp / "other"
    dump(grafana.prov / "dashboards" / "two.yaml", {"providers": [
        {"name": "a", "options": {"path": str(grafana.boards)}},
        {"name": "b", "folder": "B", "options": {"path": str(other)}},
    ]})  # fmt: skip
    first = dump(grafana.boards / "a.json", {"title": "A", "uid": "same"})
    second = dump(other / "b.json", {"title": "B", "uid": "same"})
    err = grafana.refused()
    assert f"{second}: uid: 'same' is also the uid of {first}" in err, err
    dump(other / "b.json", {"title": "B", "uid": "b"})
    dump(grafana.boards / "c.json", {"title": "A", "uid": "c"})
    assert "c.json: title: 'A' is also the title of" in grafana.refused()


def test_unusable_data_directory_and_https_without_certificate(grafana: Grafana) -> None:
    dump(grafana.tmp / "file", "")
    assert "data path" in grafana.refused(f"cfg:paths.data={grafana.tmp / 'file' / 'data'}")
    assert "cert_file cannot be empty when using HTTPS" in grafana.refused("cfg:server.protocol=https")


def test_reload_applies_or_keeps_the_old_state(grafana: Grafana) -> None:
    dump(grafana.prov / "datasources" / "a.yaml", {"apiVersion": 1, "datasources": [PROM]})
    grafana.start()
    loki = {"name": "Loki", "type": "loki", "url": "http://loki:3100"}
    dump(grafana.prov / "datasources" / "b.yaml", {"apiVersion": 1, "datasources": [loki]})
    reload = "/api/admin/provisioning/datasources/reload"
    assert grafana.call(reload, "POST")[:2] == (200, {"message": "Datasources config reloaded"})
    assert sorted(d["name"] for d in grafana.get("/api/datasources")) == ["Loki", "Prometheus"]
    bad = dump(grafana.prov / "datasources" / "c.yaml", {"datasources": [{"name": "X", "type": "nope"}]})
    status, body, _ = grafana.call(reload, "POST")
    assert status == 500 and f"{bad}: datasources[0].type: plugin not found" in body["message"]
    assert len(grafana.get("/api/datasources")) == 2
    bad.unlink()
    (grafana.prov / "datasources" / "b.yaml").unlink()  # without prune, Loki stays (as in Grafana)
    assert grafana.call(reload, "POST")[0] == 200 and len(grafana.get("/api/datasources")) == 2
    dump(grafana.prov / "datasources" / "a.yaml", {"apiVersion": 1, "prune": True, "datasources": [PROM]})
    assert grafana.call(reload, "POST")[0] == 200
    assert [d["name"] for d in grafana.get("/api/datasources")] == ["Prometheus"]
    provide(grafana, updateIntervalSeconds=3600)
    dump(grafana.boards / "a.json", {"title": "A", "uid": "a"})
    assert grafana.call("/api/admin/provisioning/dashboards/reload", "POST")[:2] == (
        200, {"message": "Dashboards config reloaded"},
    )  # fmt: skip
    assert [h["uid"] for h in grafana.get("/api/search?type=dash-db")] == ["a"]


def test_polling_adds_changes_and_removes_dashboards(grafana: Grafana) -> None:
    provide(grafana)
    grafana.start()

    def titles() -> list[str]:
        return [h["title"] for h in grafana.get("/api/search?type=dash-db")]

    assert titles() == []
    dump(grafana.boards / "a.json", {"title": "A", "uid": "a"})
    grafana.wait_for(lambda: titles() == ["A"])
    dump(grafana.boards / "a.json", {"title": "A2", "uid": "a"})
    grafana.wait_for(lambda: titles() == ["A2"])
    dump(grafana.boards / "bad.json", "{")
    grafana.wait_for(lambda: any("level=error" in line and "bad.json" in line for line in grafana.lines))
    assert titles() == ["A2"]
    (grafana.boards / "bad.json").unlink()
    (grafana.boards / "a.json").unlink()
    grafana.wait_for(lambda: titles() == [])


def test_disable_deletion_keeps_removed_dashboards(grafana: Grafana) -> None:
    provide(grafana, disableDeletion=True)
    dump(grafana.boards / "a.json", {"title": "A", "uid": "a"})
    grafana.start()
    (grafana.boards / "a.json").unlink()
    time.sleep(1.5)
    assert [h["uid"] for h in grafana.get("/api/search")] == ["a"]


def test_state_outlives_a_restart_like_grafanas_database(grafana: Grafana) -> None:
    loki = {"name": "Loki", "type": "loki", "url": "http://loki:3100"}
    dump(grafana.prov / "datasources" / "a.yaml", {"datasources": [PROM, loki]})
    provide(grafana, disableDeletion=True)
    dump(grafana.boards / "a.json", {"title": "A", "uid": "a"})
    grafana.start()
    grafana.stop()
    dump(grafana.prov / "datasources" / "a.yaml", {"datasources": [PROM]})
    (grafana.boards / "a.json").unlink()
    grafana.start()
    assert sorted(d["name"] for d in grafana.get("/api/datasources")) == ["Loki", "Prometheus"]
    assert [h["uid"] for h in grafana.get("/api/search")] == ["a"]


def test_sigterm_exits_cleanly_and_pidfile_is_written(grafana: Grafana) -> None:
    pidfile = grafana.tmp / "run" / "grafana-server.pid"
    proc = grafana.start("--pidfile", str(pidfile), "--packaging=deb")
    assert pidfile.read_text().strip() == str(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


@pytest.mark.skipif(not all(map(shutil.which, ("dpkg-deb", "apt-ftparchive", "gpg"))), reason="needs dpkg-dev tools")
def test_build_sh_makes_the_package_repository_and_archive(tmp_path: Path) -> None:
    version = "12.2.1+testdouble"
    out = subprocess.run(["bash", str(DOUBLE / "build.sh"), str(tmp_path / "r"), version], capture_output=True,
                         text=True, check=True, timeout=60).stdout  # fmt: skip
    key_sum, archive_sum = out.strip().splitlines()[-1].split(" ")
    apt, tarball = tmp_path / "r" / "apt", tmp_path / "r" / "oss" / "release" / f"grafana-{version}.linux-amd64.tar.gz"
    for name in ("dists/stable/InRelease", "dists/stable/Release.gpg", "dists/stable/main/binary-amd64/Packages.gz"):
        assert (apt / name).is_file(), name
    packages = (apt / "dists/stable/main/binary-amd64/Packages").read_text()
    assert f"Version: {version}\n" in packages and "Architecture: amd64" in packages
    assert "Description: TEST DOUBLE of Grafana, built by llm_monitor.fleet's tests - not Grafana" in packages
    assert "Suite: stable" in (apt / "dists/stable/Release").read_text()
    assert (tarball.parent / f"{tarball.name}.sha256").read_text() == archive_sum and len(key_sum) == 64
    subprocess.run(["tar", "-C", str(tmp_path), "-xzf", str(tarball)], check=True)
    program = tmp_path / f"grafana-v{version}" / "bin" / "grafana"
    done = subprocess.run([sys.executable, str(program), "--version"], capture_output=True, text=True, check=True)
    assert version in done.stdout

#!/usr/bin/python3
"""TEST DOUBLE of Grafana, built by llm_monitor.fleet's tests - not Grafana: reads Grafana's configuration, keeps
its users in <data>/grafana.db, provisions data sources and dashboards, refuses provisioning that breaks Grafana's
schema and serves the HTTP API the collection uses. Needs python3-yaml. See tests/doubles/grafana/README.md."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

VERSION = "0.0.0+testdouble"  # build.sh replaces this line
HELP = f"""grafana {VERSION}: a TEST DOUBLE of Grafana built by llm_monitor.fleet's tests. It is NOT Grafana.
usage: grafana server [--homepath H] [--config C] [--pidfile P] [--packaging P] [cfg:section.key=value ...]
       grafana cli [--homepath H] [--config C] [cfg:...] admin reset-admin-password [--password-from-stdin | PW]"""
CORE_TYPES = {
    "prometheus", "loki", "alertmanager", "tempo", "jaeger", "zipkin", "elasticsearch", "graphite", "influxdb", "mysql",
    "grafana-postgresql-datasource", "postgres", "mssql", "cloudwatch", "stackdriver", "testdata", "opentsdb", "parca",
    "grafana-azure-monitor-datasource", "grafana-testdata-datasource", "grafana-pyroscope-datasource",
}  # fmt: skip
DS_FIELDS: dict[str, type] = {
    "name": str, "type": str, "uid": str, "access": str, "url": str, "isDefault": bool, "orgId": int,
    "editable": bool, "jsonData": dict, "secureJsonData": dict, "basicAuth": bool, "basicAuthUser": str,
    "user": str, "database": str, "withCredentials": bool, "version": int,
}  # fmt: skip
PROVIDER_FIELDS: dict[str, type] = {
    "name": str, "type": str, "orgId": int, "folder": str, "folderUid": str, "disableDeletion": bool,
    "allowUiUpdates": bool, "updateIntervalSeconds": int, "editable": bool, "options": dict,
}  # fmt: skip
PAGE = "<!DOCTYPE html><html><head><title>{0} - Grafana TEST DOUBLE</title></head><body><h1>Grafana TEST DOUBLE "
PAGE += f"{VERSION}</h1><p>{{0}}. A TEST DOUBLE of Grafana built by llm_monitor.fleet's tests, not Grafana.</p></body>"
UID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
UID_RULE = "must be a string of 1-40 characters of a-z A-Z 0-9 _ -"
LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3, "critical": 4}
LOG_LEVEL = [1]
QUOTE_RE = re.compile(r'[\s"=\\]')
Config = dict[str, dict[str, str]]
Board = dict[str, Any]


class Fatal(Exception):
    """Stops the program with exit status 1."""


class ProvisioningError(Exception):
    """A provisioning file breaks the schema; the message names the file and the field."""


def log(logger: str, level: str, msg: str, **fields: object) -> None:
    if LEVELS[level] >= LOG_LEVEL[0]:
        now = time.time()
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        pairs = {"msg": msg, **{k: str(v) for k, v in fields.items()}}
        kv = " ".join(f"{k}={v if v and not QUOTE_RE.search(v) else json.dumps(v)}" for k, v in pairs.items())
        print(f"logger={logger} t={t} level={level} {kv}", flush=True)


def parse_ini(path: Path) -> Config:
    """An ini file as go-ini reads it: `;` and `#` comments, keys before any section in section ''."""
    cfg: Config = {"": {}}
    section = ""
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            cfg.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        if not sep or line.startswith("["):
            raise Fatal(f"failed to parse {path}: line {number}: not a [section] nor a key = value: {raw}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'`":
            value = value[1:-1]
        cfg[section][key.strip()] = value
    return cfg


def _expand(value: str) -> str:
    """Grafana's $__env{VAR}, $__file{path} and ${VAR} expansion of configuration values."""

    def read(m: re.Match[str]) -> str:
        try:
            return Path(m.group(1)).read_text().rstrip("\n")
        except OSError as err:
            raise Fatal(f"failed to read file {m.group(1)}: {err.strerror}") from err

    value = re.sub(r"\$__env\{([^}]*)\}", lambda m: os.environ.get(m.group(1), ""), value)
    value = re.sub(r"\$__file\{([^}]*)\}", read, value)
    return re.sub(r"\$\{(\w+)\}", lambda m: os.environ.get(m.group(1), ""), value)


def load_config(home: Path, config: str | None, props: dict[str, str]) -> Config:
    """Grafana's order: defaults.ini, cfg:default.* props, the --config file (default conf/custom.ini),
    GF_<SECTION>_<KEY> variables, other cfg: props; then expansion; relative paths are under homepath."""
    defaults = home / "conf" / "defaults.ini"
    if not defaults.is_file():
        raise Fatal(f"Could not find config defaults {defaults}, make sure homepath command line parameter is set")
    cfg = parse_ini(defaults)

    def apply(defaults_only: bool) -> None:
        for name, value in props.items():
            if name.startswith("default.") == defaults_only:
                section, _, key = name.removeprefix("default.").rpartition(".")
                cfg.setdefault(section, {})[key] = value

    apply(True)
    custom = Path(config) if config else home / "conf" / "custom.ini"
    for section, values in parse_ini(custom).items() if config or custom.is_file() else ():
        cfg.setdefault(section, {}).update(values)
    for section, values in cfg.items():
        for key in values:
            env = "GF_" + re.sub(r"[.-]", "_", f"{section}_{key}" if section else key).upper()
            values[key] = os.environ.get(env, values[key])
    apply(False)
    for values in cfg.values():
        for key, value in values.items():  # go-ini's %(key)s references, then Grafana's expansion
            ref = lambda m: values.get(m.group(1), cfg[""].get(m.group(1), m.group(0)))  # noqa: B023, E731
            values[key] = _expand(re.sub(r"%\((\w+)\)s", ref, value))
    for key in ("data", "logs", "plugins", "provisioning"):
        path = Path(cfg.setdefault("paths", {}).get(key) or key)
        cfg["paths"][key] = str(path if path.is_absolute() else home / path)
    return cfg


def get(cfg: Config, section: str, key: str, default: str = "") -> str:
    return cfg.get(section, {}).get(key, default)


def get_bool(cfg: Config, section: str, key: str) -> bool:
    return get(cfg, section, key).strip().lower() in ("1", "t", "true", "y", "yes", "on")


def hash_password(password: str, salt: str | None = None) -> str:
    salt = salt or os.urandom(5).hex()
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10000, 50).hex()
    return f"pbkdf2_sha256$10000${salt}${digest}"


def open_db(cfg: Config) -> sqlite3.Connection:
    """Opens <data>/grafana.db, creating it and, on first start, the admin user (as Grafana does)."""
    data = Path(cfg["paths"]["data"])
    try:
        data.mkdir(parents=True, exist_ok=True)
        (data / ".write-test").write_text("")
        (data / ".write-test").unlink()
        db = sqlite3.connect(data / "grafana.db", timeout=10)
        db.execute("CREATE TABLE IF NOT EXISTS user (login TEXT PRIMARY KEY, password_hash TEXT, is_admin INTEGER)")
        db.execute("CREATE TABLE IF NOT EXISTS provisioned (kind TEXT PRIMARY KEY, body TEXT)")
        users = db.execute("SELECT count(*) FROM user").fetchone()[0]
        if not users and not get_bool(cfg, "security", "disable_initial_admin_creation"):
            login = get(cfg, "security", "admin_user", "admin")
            password = hash_password(get(cfg, "security", "admin_password", "admin"))
            db.execute("INSERT INTO user VALUES (?, ?, 1)", (login, password))
            log("sqlstore", "info", "Created default admin", user=login)
        db.commit()
    except (OSError, sqlite3.Error) as err:
        raise Fatal(f"data path {data} is not usable (it must be a writable directory): {err}") from err
    return db


def check_password(cfg: Config, login: str, password: str) -> bool | None:
    """None for bad credentials, else whether the user is an admin; reads the DB on each request."""
    with sqlite3.connect(Path(cfg["paths"]["data"]) / "grafana.db", timeout=10) as db:
        row = db.execute("SELECT password_hash, is_admin FROM user WHERE login = ?", (login,)).fetchone()
    good = row is not None and hash_password(password, str(row[0]).split("$")[2]) == row[0]
    return bool(row[1]) if good else None


def _env(node: Any) -> Any:
    """Grafana's interpolation of provisioning values: $VAR, ${VAR}; $$ is a literal $."""
    if isinstance(node, str):
        expand = lambda m: "$" if m.group(1) else os.environ.get(m.group(2) or m.group(3), "")  # noqa: E731
        return re.sub(r"\$(?:(\$)|\{(\w+)\}|(\w+))", expand, node)
    if isinstance(node, dict):
        return {k: _env(v) for k, v in node.items()}
    return [_env(v) for v in node] if isinstance(node, list) else node


def _load_yaml(path: Path, fields: dict[str, type]) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ProvisioningError(f"{path}: cannot parse the file: {err}") from err
    _check_fields(f"{path}: file", doc, {"apiVersion": int, **fields}, ())
    if doc.get("apiVersion", 1) != 1:
        raise ProvisioningError(f"{path}: apiVersion: must be 1, got {doc['apiVersion']!r}")
    return dict(_env(doc))


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml") and p.is_file())


def _check_fields(where: str, item: Any, fields: dict[str, type], required: tuple[str, ...]) -> None:
    if not isinstance(item, dict):
        raise ProvisioningError(f"{where}: must be a mapping, got {type(item).__name__}")
    for key, value in item.items():
        if key not in fields:
            raise ProvisioningError(f"{where}.{key}: unknown field (the TEST DOUBLE refuses unknown fields)")
        want = fields[key]
        if value is not None and not (type(value) is int if want is int else isinstance(value, want)):
            raise ProvisioningError(f"{where}.{key}: must be {want.__name__}, got {type(value).__name__}")
        if key == "orgId" and value not in (None, 0, 1):
            raise ProvisioningError(f"{where}.orgId: organization {value} not found (a new Grafana has only org 1)")
    for key in required:
        if item.get(key) in (None, ""):
            raise ProvisioningError(f"{where}.{key}: required field missing or empty")


def _short_uid(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:14]


def read_datasources(directory: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]], bool]:
    """Every data source file, checked: (datasources, deleteDatasources, prune)."""
    found, deletes = list[dict[str, Any]](), list[tuple[int, str]]()
    prune = False
    seen: dict[tuple[str, int, Any], str] = {}
    for path in _yaml_files(directory):
        doc = _load_yaml(path, {"datasources": list, "deleteDatasources": list, "prune": bool})
        prune = prune or bool(doc.get("prune"))
        for i, item in enumerate(doc.get("deleteDatasources") or []):
            _check_fields(f"{path}: deleteDatasources[{i}]", item, {"name": str, "orgId": int}, ("name",))
            deletes.append((item.get("orgId") or 1, item["name"]))
        for i, item in enumerate(doc.get("datasources") or []):
            where = f"{path}: datasources[{i}]"
            _check_fields(where, item, DS_FIELDS, ("name", "type"))
            ds = dict(item, orgId=item.get("orgId") or 1, file=str(path))
            org, uid = ds["orgId"], ds.get("uid")
            if ds["type"] not in CORE_TYPES:
                raise ProvisioningError(f"{where}.type: plugin not found: {ds['type']!r} is not a core data source")
            if uid is not None and not UID_RE.match(uid):
                raise ProvisioningError(f"{where}.uid: {uid!r} {UID_RULE}")
            if ds.get("access", "proxy") not in ("proxy", "direct"):
                raise ProvisioningError(f"{where}.access: must be proxy or direct, got {ds['access']!r}")
            for key, value in (ds.get("secureJsonData") or {}).items():
                if not isinstance(value, str):
                    raise ProvisioningError(f"{where}.secureJsonData.{key}: must be a string")
            for field in ("name", "uid"):
                if ds.get(field) is not None and (field, org, ds[field]) in seen:
                    clash = seen[field, org, ds[field]]
                    raise ProvisioningError(f"{where}.{field}: {ds[field]!r} in org {org} is also used by {clash}")
                seen[field, org, ds.get(field)] = where
            if ds.get("isDefault") and ("isDefault", org, True) in seen:
                raise ProvisioningError(
                    "datasource.yaml config is invalid. Only one datasource per organization can be marked "
                    f"as default: {where}.isDefault and {seen['isDefault', org, True]}.isDefault (org {org})"
                )
            seen["isDefault", org, bool(ds.get("isDefault"))] = where
            found.append(ds)
    return found, deletes, prune


def apply_datasources(current: dict[tuple[int, str], Board], directory: Path) -> dict[tuple[int, str], Board]:
    """The new data source table: deleteDatasources, then upserts by (orgId, name), then prune."""
    found, deletes, prune = read_datasources(directory)
    state = {k: v for k, v in current.items() if k not in deletes}
    next_id = max((v["id"] for v in current.values()), default=0) + 1
    for ds in found:
        key = (ds["orgId"], ds["name"])
        old = state.get(key) or {"id": next_id, "uid": _short_uid("ds", *key)}
        next_id += key not in state
        state[key] = dict(ds, id=old["id"], uid=ds.get("uid") or old["uid"])
    if prune:
        names = {(d["orgId"], d["name"]) for d in found}
        state = {k: v for k, v in state.items() if k in names or not v.get("file")}
    return state


def read_providers(directory: Path) -> list[dict[str, Any]]:
    providers, names = list[dict[str, Any]](), dict[str, str]()
    for path in _yaml_files(directory):
        for i, item in enumerate(_load_yaml(path, {"providers": list}).get("providers") or []):
            where = f"{path}: providers[{i}]"
            _check_fields(where, item, PROVIDER_FIELDS, ("name", "options"))
            opts = item["options"]
            _check_fields(f"{where}.options", opts, {"path": str, "foldersFromFilesStructure": bool}, ("path",))
            if item["name"] in names:
                raise ProvisioningError(f"{where}.name: {item['name']!r} is also the name of {names[item['name']]}")
            names[item["name"]] = where
            if item.get("type", "file") != "file":
                raise ProvisioningError(f"{where}.type: only type 'file' is supported, got {item['type']!r}")
            if opts.get("foldersFromFilesStructure") and (item.get("folder") or item.get("folderUid")):
                raise ProvisioningError(
                    f"{where}: 'folder' and 'folderUID' should be empty using 'foldersFromFilesStructure' option"
                )
            if item.get("folderUid") and not UID_RE.match(item["folderUid"]):
                raise ProvisioningError(f"{where}.folderUid: {UID_RULE}")
            if not Path(opts["path"]).is_dir():
                raise ProvisioningError(f"{where}.options.path: {opts['path']} does not exist or is not a directory")
            defaults = {
                "orgId": item.get("orgId") or 1,
                "updateIntervalSeconds": item.get("updateIntervalSeconds") or 10,
            }
            providers.append(item | defaults | {"file": str(path)})
    return providers


def scan_provider(provider: dict[str, Any]) -> dict[str, Board]:
    """Every *.json dashboard under a provider's options.path (recursively), checked: {uid: board}."""
    root = Path(provider["options"]["path"])
    if not root.is_dir():
        raise ProvisioningError(f"{provider['file']}: options.path: {root} does not exist or is not a directory")
    found: dict[str, Board] = {}
    by_directory = provider["options"].get("foldersFromFilesStructure")
    for directory, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for path in sorted(Path(directory, f) for f in files if f.endswith(".json")):
            rel = str(path.relative_to(root))
            try:
                board = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise ProvisioningError(f"{path}: not a valid JSON dashboard: {err}") from err
            if not isinstance(board, dict):
                raise ProvisioningError(f"{path}: a dashboard must be a JSON object")
            if not isinstance(board.get("title"), str) or not board["title"].strip():
                raise ProvisioningError(f"{path}: title: Dashboard title cannot be empty")
            uid = board.get("uid")
            if uid is not None and (not isinstance(uid, str) or not UID_RE.match(uid)):
                raise ProvisioningError(f"{path}: uid: {uid!r} {UID_RULE}")
            panels = board.get("panels", [])
            panels = panels if isinstance(panels, list) else [None]
            bad = [
                i for i, p in enumerate(panels) if not isinstance(p, dict) or not isinstance(p.get("type") or 0, str)
            ]
            if bad:
                raise ProvisioningError(f"{path}: panels[{bad[0]}].type: every panel must be an object with a type")
            uid = uid or _short_uid("dash", provider["name"], rel)
            folder = Path(rel).parent.name if by_directory else provider.get("folder") or ""
            folder_uid = provider.get("folderUid") or (_short_uid("folder", folder) if folder else "")
            if uid in found:
                raise ProvisioningError(f"{path}: uid: {uid!r} is also the uid of {found[uid]['path']}")
            found[uid] = {
                **{"uid": uid, "title": board["title"], "json": dict(board, uid=uid), "rel": rel, "path": str(path)},
                **{"folder": folder, "folderUid": folder_uid, "provider": provider, "orgId": provider["orgId"]},
            }
    return found


def combine(base: dict[str, Board], new: dict[str, Board]) -> dict[str, Board]:
    """base plus new, refusing a uid, or a title in one folder, used by two files."""
    merged = dict(base)
    for uid, board in new.items():
        other = merged.get(uid)
        if other is not None and other["path"] != board["path"]:
            raise ProvisioningError(f"{board['path']}: uid: {uid!r} is also the uid of {other['path']}")
        for b in merged.values():
            same = (b["orgId"], b["folderUid"], b["title"]) == (board["orgId"], board["folderUid"], board["title"])
            if same and b["path"] != board["path"]:
                raise ProvisioningError(f"{board['path']}: title: {board['title']!r} is also the title of {b['path']}")
        merged[uid] = board
    return merged


class State:
    """What the server shows, kept in grafana.db like Grafana's (what prune or deletion did not remove outlives a
    restart); replaced whole under the lock, so a failed (re)load keeps the old state."""

    def __init__(self, cfg: Config) -> None:
        self.cfg, self.lock, self.prov = cfg, threading.Lock(), Path(cfg["paths"]["provisioning"])
        self.db = Path(cfg["paths"]["data"]) / "grafana.db"
        with sqlite3.connect(self.db, timeout=10) as db:
            saved = dict(db.execute("SELECT kind, body FROM provisioned").fetchall())
        self.datasources = {(d["orgId"], d["name"]): d for d in json.loads(saved.get("datasources", "[]"))}
        self.dashboards: dict[str, Board] = json.loads(saved.get("dashboards", "{}"))
        self.providers, self.due = list[dict[str, Any]](), dict[str, float]()

    def _save(self) -> None:
        rows = {"datasources": list(self.datasources.values()), "dashboards": self.dashboards}
        with sqlite3.connect(self.db, timeout=10) as db:
            db.executemany("REPLACE INTO provisioned VALUES (?, ?)", [(k, json.dumps(v)) for k, v in rows.items()])

    def reload_datasources(self) -> None:
        with self.lock:
            self.datasources = apply_datasources(self.datasources, self.prov / "datasources")
            self._save()
        log("provisioning.datasources", "info", "inserted/updated datasources", count=len(self.datasources))

    def reload_dashboards(self) -> None:
        with self.lock:
            providers = read_providers(self.prov / "dashboards")
            boards: dict[str, Board] = {}
            for provider in providers:
                boards = combine(boards, self._scan(provider, boards))
            self.providers, self.dashboards = providers, boards
            self.due = {p["name"]: time.monotonic() + p["updateIntervalSeconds"] for p in providers}
            self._save()
        log("provisioning.dashboard", "info", "finished to provision dashboards", count=len(boards))

    def _scan(self, provider: dict[str, Any], others: dict[str, Board]) -> dict[str, Board]:
        """A provider's dashboards; with disableDeletion, those whose files are gone stay."""
        found = scan_provider(provider)
        if provider.get("disableDeletion"):
            for uid, old in self.dashboards.items():
                if old["provider"]["name"] == provider["name"] and uid not in found and uid not in others:
                    found[uid] = dict(old, provider=provider)
        return found

    def poll(self, stop: threading.Event) -> None:
        """Rescans each provider every updateIntervalSeconds, like Grafana's file reader."""
        while not stop.wait(0.2):
            for provider in list(self.providers):
                if time.monotonic() < self.due.get(provider["name"], 0):
                    continue
                self.due[provider["name"]] = time.monotonic() + provider["updateIntervalSeconds"]
                with self.lock:
                    if not any(p is provider for p in self.providers):
                        continue
                    others = {u: b for u, b in self.dashboards.items() if b["provider"] is not provider}
                    try:
                        boards = combine(others, self._scan(provider, others))
                    except ProvisioningError as err:
                        log("provisioning.dashboard", "error", "failed to load dashboards, keeping the previous ones",
                            provider=provider["name"], error=err)  # fmt: skip
                        continue
                    if boards != self.dashboards:
                        self.dashboards = boards
                        self._save()


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def ds_view(d: Board, full: bool) -> dict[str, Any]:
    keys = {"id": 0, "uid": "", "orgId": 1, "name": "", "type": "", "access": "proxy", "url": "", "user": ""}
    keys |= {"database": "", "basicAuth": False, "isDefault": False, "jsonData": {}}
    keys |= {"basicAuthUser": "", "withCredentials": False, "version": 1} if full else {}
    out = {k: d.get(k, v) for k, v in keys.items()} | {"readOnly": not d.get("editable", False)}
    return out | ({"secureJsonFields": {k: True for k in d.get("secureJsonData") or {}}} if full else {})


def hit(b: Board) -> dict[str, Any]:
    slug = slugify(b["title"])
    out = {"uid": b["uid"], "title": b["title"], "type": "dash-db", "uri": f"db/{slug}", "url": f"/d/{b['uid']}/{slug}"}
    out |= {"tags": b["json"].get("tags", []), "isStarred": False}  # like Grafana, no folder fields for General
    return out | ({"folderUid": b["folderUid"], "folderTitle": b["folder"]} if b["folderUid"] else {})


class Handler(BaseHTTPRequestHandler):
    server_version = f"Grafana-TEST-DOUBLE/{VERSION}"
    state: State
    login = ""

    def log_message(self, format: str, *args: Any) -> None:
        log("context", "debug", "Request Completed", method=self.command, path=self.path)

    def send(self, code: int, body: Any, ctype: str = "application/json", location: str = "") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(data)

    def role(self) -> str | None:
        """'admin' (basic auth, admin user), 'viewer' (anonymous) or None after answering 401."""
        header, self.login = self.headers.get("Authorization", ""), ""
        if header.lower().startswith("basic ") and get_bool(self.state.cfg, "auth.basic", "enabled"):
            try:
                self.login, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                self.login, password = "", ""
            admin = check_password(self.state.cfg, self.login, password)
            if admin is not None:
                return "admin" if admin else "viewer"
            self.send(401, {"message": "invalid username or password"})
        elif get_bool(self.state.cfg, "auth.anonymous", "enabled"):
            return "viewer"
        else:
            self.send(401, {"message": "Unauthorized"})
        return None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path, query, cfg = url.path.rstrip("/") or "/", parse_qs(url.query), self.state.cfg
        if path == "/api/health":
            self.send(200, {"database": "ok", "version": VERSION, "commit": "testdouble"})
        elif path in ("/login", "/") and (path == "/login" or get_bool(cfg, "auth.anonymous", "enabled")):
            self.send(200, PAGE.format("Log in" if path == "/login" else "Home"), "text/html; charset=UTF-8")
        elif path == "/":
            self.send(302, "", "text/html", location="/login")
        elif not path.startswith("/api/"):
            self.send(404, PAGE.format("Page not found"), "text/html; charset=UTF-8")
        elif (role := self.role()) is not None:
            code, body = self.api(path, query, role)
            self.send(code, body)

    def api(self, path: str, query: dict[str, list[str]], role: str) -> tuple[int, Any]:
        with self.state.lock:
            sources = sorted((d for d in self.state.datasources.values() if d["orgId"] == 1), key=lambda d: d["name"])
            boards = sorted((b for b in self.state.dashboards.values() if b["orgId"] == 1), key=lambda b: b["title"])
        folders = {b["folderUid"]: b["folder"] for b in boards if b["folderUid"]}
        last = path.rsplit("/", 1)[1]
        if path == "/api/datasources":
            return 200, [ds_view(d, False) for d in sources]
        if path.startswith("/api/datasources/uid/"):
            found = [ds_view(d, True) for d in sources if d["uid"] == last]
            return (200, found[0]) if found else (404, {"message": "Data source not found"})
        if path == "/api/folders":
            return 200, [{"uid": u, "title": t} for u, t in sorted(folders.items(), key=lambda i: i[1])]
        if path == "/api/search":
            text, kinds = query.get("query", [""])[0].lower(), query.get("type", ["dash-folder", "dash-db"])
            hits = [
                {"uid": u, "title": t, "type": "dash-folder", "uri": f"db/{slugify(t)}", "url": f"/dashboards/f/{u}/"}
                for u, t in sorted(folders.items(), key=lambda i: i[1])
                if "dash-folder" in kinds and text in t.lower()
            ]
            return 200, hits + [hit(b) for b in boards if "dash-db" in kinds and text in b["title"].lower()]
        if path.startswith("/api/dashboards/uid/"):
            for b in (b for b in boards if b["uid"] == last):
                can_save = bool(b["provider"].get("allowUiUpdates")) and role == "admin"
                meta = {"type": "db", "slug": slugify(b["title"]), "url": hit(b)["url"], "provisioned": True}
                meta |= {"provisionedExternalId": b["rel"], "canSave": can_save, "canEdit": can_save}
                meta |= {"canAdmin": role == "admin", "folderTitle": b["folder"] or "General"}
                return 200, {"dashboard": b["json"], "meta": meta | {"folderUid": b["folderUid"]}}
            return 404, {"message": "Dashboard not found"}
        if path == "/api/user":
            user = {"id": 1 if self.login else 0, "login": self.login, "orgId": 1, "isGrafanaAdmin": role == "admin"}
            return 200, user | {"isAnonymous": not self.login}
        if path == "/api/frontend/settings":
            build = {"version": VERSION, "commit": "testdouble", "edition": "Open Source", "env": "production"}
            settings = {"buildInfo": build, "appUrl": get(self.state.cfg, "server", "root_url")}
            return 200, settings | {"anonymousEnabled": get_bool(self.state.cfg, "auth.anonymous", "enabled")}
        return 404, {"message": "Not found"}

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        actions = {"datasources": self.state.reload_datasources, "dashboards": self.state.reload_dashboards}
        kind = path.removeprefix("/api/admin/provisioning/").removesuffix("/reload")
        if kind not in actions or path != f"/api/admin/provisioning/{kind}/reload":
            self.send(404, {"message": "Not found"})
        elif (role := self.role()) is not None and role != "admin":
            self.send(403, {"message": "Permission denied"})
        elif role is not None:
            what, action = kind.title(), actions[kind]
            try:
                action()
                self.send(200, {"message": f"{what} config reloaded"})
            except ProvisioningError as err:
                log("provisioning", "error", f"Failed to reload {what.lower()} config", error=err)
                self.send(500, {"message": str(err)})


class Server(ThreadingHTTPServer):
    daemon_threads, dual_stack = True, False

    def server_bind(self) -> None:  # no reverse DNS look-up, unlike HTTPServer.server_bind
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if self.dual_stack else 1)
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "grafana", int(self.server_address[1])


def make_server(cfg: Config) -> tuple[Server, str]:
    """Listens on [server] http_addr (empty: every IPv6 and IPv4 address) and http_port."""
    addr, port = get(cfg, "server", "http_addr").strip("[]"), get(cfg, "server", "http_port", "3000")
    if not port.isdigit():
        raise Fatal(f"invalid [server] http_port {port!r}")
    tries = [(addr, ":" in addr, False)] if addr else [("::", True, True), ("0.0.0.0", False, False)]
    for host, v6, dual in tries:
        cls = type("S", (Server,), {"address_family": socket.AF_INET6 if v6 else socket.AF_INET, "dual_stack": dual})
        try:
            return cls((host, int(port)), Handler), f"[{host}]:{port}" if v6 else f"{host}:{port}"
        except OSError as err:
            error = err
    raise Fatal(f"failed to open listener on address {addr}:{port}: {error}")


def tls(cfg: Config, server: Server) -> None:
    cert, key = get(cfg, "server", "cert_file"), get(cfg, "server", "cert_key")
    for name, value in (("cert_file", cert), ("cert_key", key)):
        if not Path(value).is_file():
            raise Fatal(f'cannot find SSL {name} at "{value}"' if value else f"{name} cannot be empty when using HTTPS")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)  # an ssl.SSLError is an OSError: main reports it
    server.socket = context.wrap_socket(server.socket, server_side=True)


def split_args(argv: list[str], flags: set[str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Go-style flags (-f v, --f v, --f=v), cfg:section.key=value properties, positional arguments."""
    opts, props = dict[str, str](), dict[str, str]()
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in flags:
            opts[name] = value if eq or name == "password-from-stdin" else next(args, "")
        elif arg.startswith("cfg:"):
            key, _, props[key] = arg[4:].partition("=")
        elif arg.startswith("-") and arg != "-":
            raise Fatal(f"flag provided but not defined: {arg}")
        else:
            rest.append(arg)
    return opts, props, rest


def homepath(opts: dict[str, str]) -> Path:
    if opts.get("homepath"):
        return Path(opts["homepath"]).resolve()
    home = Path(os.path.realpath(sys.argv[0])).parent.parent
    return home if (home / "conf" / "defaults.ini").is_file() else Path.cwd()


def serve(argv: list[str]) -> int:
    opts, props, rest = split_args(argv, {"homepath", "config", "pidfile", "packaging"})
    if rest:
        raise Fatal(f"unexpected arguments {rest}")
    cfg = load_config(home := homepath(opts), opts.get("config"), props)
    LOG_LEVEL[0] = LEVELS.get(get(cfg, "log", "level", "info").lower(), 1)
    log("server", "info", "Starting Grafana (TEST DOUBLE)", version=VERSION, commit="testdouble")
    log("settings", "info", "Paths", home=home, **cfg["paths"])
    if opts.get("pidfile"):  # an OSError here (or reading the config) ends in main, like a Fatal
        Path(opts["pidfile"]).parent.mkdir(parents=True, exist_ok=True)
        Path(opts["pidfile"]).write_text(f"{os.getpid()}\n")
    protocol = get(cfg, "server", "protocol", "http")
    if protocol not in ("http", "https"):
        raise Fatal(f"[server] protocol {protocol!r}: the TEST DOUBLE serves only http and https")
    open_db(cfg).close()
    state = Handler.state = State(cfg)
    state.reload_datasources()  # a ProvisioningError ends in main, like a Fatal
    state.reload_dashboards()
    server, address = make_server(cfg)
    if protocol == "https":
        tls(cfg, server)
    stop = threading.Event()

    def shutdown(signum: int, _frame: object) -> None:
        log("server", "info", "Shutdown started", reason=f"System signal: {signal.Signals(signum).name}")
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, shutdown)
    threading.Thread(target=state.poll, args=(stop,), daemon=True).start()
    log("http.server", "info", "HTTP Server Listen", address=address, protocol=protocol, subUrl="", socket="")
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


def cli(argv: list[str]) -> int:
    opts, props, rest = split_args(argv, {"homepath", "config", "password-from-stdin"})
    if rest[:2] != ["admin", "reset-admin-password"] or len(rest) != 3 - ("password-from-stdin" in opts):
        raise Fatal("the TEST DOUBLE's cli knows only: admin reset-admin-password [--password-from-stdin | PW]")
    password = sys.stdin.readline().rstrip("\n") if "password-from-stdin" in opts else rest[2]
    if len(password) < 4:
        raise Fatal("new password is too short")
    LOG_LEVEL[0] = LEVELS["warn"]
    with open_db(load_config(homepath(opts), opts.get("config"), props)) as db:
        row = db.execute("SELECT login FROM user WHERE is_admin = 1 ORDER BY rowid LIMIT 1").fetchone()
        if row is None:
            raise Fatal("could not find the admin user")
        db.execute("UPDATE user SET password_hash = ? WHERE login = ?", (hash_password(password), row[0]))
    print("\nAdmin password changed successfully ✔\n")
    return 0


def main(argv: list[str]) -> int:
    if {"-v", "--version", "-version"} & set(argv) or {"-h", "--help", "help"} & set(argv[:1] + argv[1:2]):
        print(
            f"Version {VERSION} (commit: testdouble, branch: TEST DOUBLE of Grafana)"
            if {"-v", "--version", "-version"} & set(argv)
            else HELP
        )
        return 0
    try:
        if argv[:1] in (["server"], ["cli"]):
            return serve(argv[1:]) if argv[0] == "server" else cli(argv[1:])
        print(HELP)
        return 2
    except (Fatal, OSError, ProvisioningError, sqlite3.Error) as err:
        log("server", "error", "Failed to start grafana", error=err)
        print(f"Failed to start grafana. error: {err}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

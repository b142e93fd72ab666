"""Prometheus exporter-toolkit web configuration (TLS + basic auth), same file format.

See https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md ::

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    http_server_config:
      headers: {X-Frame-Options: deny}
    basic_auth_users:
      prometheus: $2y$10$...

Relative file names are resolved against the directory of the web config file, like the toolkit does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_monitor_exporters.core.config import ConfigError, read_yaml_mapping

log = logging.getLogger(__name__)

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "cert",
    "key",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
}
_TLS_IGNORED = {"cipher_suites", "curve_preferences", "prefer_server_cipher_suites", "client_allowed_sans"}
_HTTP_KEYS = {"http2", "headers"}
_ALLOWED_HEADERS = {
    "Cache-Control",
    "Content-Security-Policy",
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
}
_BCRYPT_RE = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")


@dataclass
class TLSConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass
class WebConfig:
    source: str | None = None
    tls: TLSConfig | None = None
    basic_auth_users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        """Build the server SSL context (None without TLS). Raises ConfigError naming the file/key."""
        if self.tls is None:
            return None
        tls = self.tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[tls.min_version]
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{self.source}: key 'tls_server_config.cert_file'/'key_file': cannot load "
                f"{tls.cert_file} / {tls.key_file}: {exc}"
            ) from exc
        if tls.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(tls.client_ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"{self.source}: key 'tls_server_config.client_ca_file': cannot load {tls.client_ca_file}: {exc}"
                ) from exc
        if tls.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert"):
            ctx.verify_mode = ssl.CERT_REQUIRED
        elif tls.client_auth_type in ("VerifyClientCertIfGiven", "RequestClientCert") and tls.client_ca_file:
            ctx.verify_mode = ssl.CERT_OPTIONAL
        else:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def authenticator(self) -> BasicAuthenticator | None:
        return BasicAuthenticator(self.basic_auth_users) if self.basic_auth_users else None


def _err(source: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: key '{key}': {msg}")


def _mapping(source: str, key: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(source, key, f"expected a mapping, got {type(value).__name__}")
    return value


def load_web_config(path: str | Path | None) -> WebConfig:
    """Load and validate a web config file. ``None`` means plain HTTP without auth."""
    if path is None or str(path) == "":
        return WebConfig()
    p = Path(path)
    source = str(p)
    data = read_yaml_mapping(p, what="web config file")
    base = p.parent
    for key in data:
        if key not in ("tls_server_config", "http_server_config", "basic_auth_users"):
            raise _err(source, key, "unknown key (expected tls_server_config, http_server_config, basic_auth_users)")
    cfg = WebConfig(source=source)

    tls_data = _mapping(source, "tls_server_config", data.get("tls_server_config"))
    for key in tls_data:
        if key not in _TLS_KEYS:
            raise _err(source, f"tls_server_config.{key}", "unknown key")
        if key in _TLS_IGNORED:
            log.warning("%s: tls_server_config.%s is accepted but ignored by this exporter", source, key)
    if tls_data:
        cfg.tls = _parse_tls(source, base, tls_data)

    http = _mapping(source, "http_server_config", data.get("http_server_config"))
    for key in http:
        if key not in _HTTP_KEYS:
            raise _err(source, f"http_server_config.{key}", "unknown key")
    headers = _mapping(source, "http_server_config.headers", http.get("headers"))
    for name, value in headers.items():
        if name not in _ALLOWED_HEADERS:
            raise _err(
                source,
                f"http_server_config.headers.{name}",
                f"header not allowed (allowed: {', '.join(sorted(_ALLOWED_HEADERS))})",
            )
        if not isinstance(value, str):
            raise _err(source, f"http_server_config.headers.{name}", "expected a string")
        cfg.headers[name] = value

    users = _mapping(source, "basic_auth_users", data.get("basic_auth_users"))
    for user, hashed in users.items():
        key = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user:
            raise _err(source, key, "user names must be non-empty strings")
        if not isinstance(hashed, str) or not _BCRYPT_RE.match(hashed):
            raise _err(
                source, key, "invalid bcrypt hash (expected $2a$/$2b$/$2y$ hash, e.g. from `htpasswd -nBC 10 user`)"
            )
        cost = int(_BCRYPT_RE.match(hashed).group(1))  # type: ignore[union-attr]
        if not 4 <= cost <= 31:
            raise _err(source, key, f"invalid bcrypt hash: cost {cost} out of range 4..31")
        cfg.basic_auth_users[user] = hashed.encode("ascii")
    _validate_hashes(source, cfg.basic_auth_users)
    # Build the SSL context once now so that bad certificates fail before serving.
    cfg.ssl_context()
    return cfg


def _validate_hashes(source: str, users: dict[str, bytes]) -> None:
    import bcrypt  # noqa: PLC0415 - only needed when basic auth is configured

    for user, hashed in users.items():
        try:
            bcrypt.checkpw(b"llm-monitor-startup-probe", _normalise(hashed))
        except ValueError as exc:
            raise _err(source, f"basic_auth_users.{user}", f"invalid bcrypt hash: {exc}") from exc


def _normalise(hashed: bytes) -> bytes:
    # $2y$ (htpasswd) and $2x$ are accepted by bcrypt >= 4; keep as-is. Plain "$2$" → "$2a$".
    if hashed.startswith(b"$2$"):
        return b"$2a$" + hashed[3:]
    return hashed


def _parse_tls(source: str, base: Path, tls: dict[str, Any]) -> TLSConfig:
    def path_of(key: str) -> Path | None:
        value = tls.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise _err(source, f"tls_server_config.{key}", "expected a file name (string)")
        p = Path(value)
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise _err(source, f"tls_server_config.{key}", f"file {p} does not exist or is not a file")
        return p

    if "cert" in tls or "key" in tls:
        raise _err(source, "tls_server_config.cert", "inline certificates are not supported; use cert_file/key_file")
    cert, key = path_of("cert_file"), path_of("key_file")
    if cert is None:
        raise _err(source, "tls_server_config.cert_file", "required when tls_server_config is set")
    if key is None:
        raise _err(source, "tls_server_config.key_file", "required when tls_server_config is set")
    auth_type = tls.get("client_auth_type") or "NoClientCert"
    if auth_type not in CLIENT_AUTH_TYPES:
        raise _err(
            source,
            "tls_server_config.client_auth_type",
            f"expected one of {', '.join(CLIENT_AUTH_TYPES)}, got {auth_type!r}",
        )
    ca = path_of("client_ca_file")
    if auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and ca is None:
        raise _err(source, "tls_server_config.client_ca_file", f"required with client_auth_type {auth_type}")
    versions = {}
    for vkey, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = tls.get(vkey) or default
        if value not in TLS_VERSIONS:
            raise _err(source, f"tls_server_config.{vkey}", f"expected one of {', '.join(TLS_VERSIONS)}, got {value!r}")
        versions[vkey] = value
    return TLSConfig(
        cert_file=cert,
        key_file=key,
        client_auth_type=auth_type,
        client_ca_file=ca,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
    )


class BasicAuthenticator:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, caching successful checks.

    bcrypt is deliberately slow (tens of ms); Prometheus sends the same credentials every scrape, so
    successful results are cached under a SHA-256 of (user, password, hash). Failures are not cached.
    Unknown users are checked against a dummy hash so timing does not reveal which users exist.
    """

    _DUMMY = b"$2b$10$" + b"." * 53

    def __init__(self, users: dict[str, bytes], cache_size: int = 256) -> None:
        self._users = dict(users)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def check_header(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        return self.check(user, password)

    def check(self, user: str, password: str) -> bool:
        import bcrypt  # noqa: PLC0415

        hashed = self._users.get(user)
        key = hashlib.sha256(user.encode() + b"\0" + password.encode() + b"\0" + (hashed or b"")).digest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return hashed is not None
        try:
            ok = bcrypt.checkpw(password.encode(), _normalise(hashed or self._DUMMY))
        except ValueError:
            ok = False
        ok = ok and hashed is not None and hmac.compare_digest(hashed, self._users.get(user, b""))
        if ok:
            with self._lock:
                self._cache[key] = None
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return ok

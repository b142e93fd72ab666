"""Config and web config validation: every error names the file and the key."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest

from llm_monitor_exporters.containers.containers import ContainersConfig
from llm_monitor_exporters.core.config import ConfigError, ServerConfig, build_config, read_yaml_mapping
from llm_monitor_exporters.core.webconfig import BasicAuthenticator, load_web_config
from llm_monitor_exporters.gpu.gpu import GpuConfig

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()


def test_defaults_and_nested_values() -> None:
    cfg = build_config(GpuConfig, {"backend": "simulation", "simulation": {"gpus": 2, "scenario": "idle"}}, "f.yml")
    assert cfg.backend == "simulation"
    assert cfg.simulation.gpus == 2
    assert cfg.simulation.scenario == "idle"
    assert cfg.simulation.model == "NVIDIA H100 80GB HBM3"
    assert build_config(ContainersConfig, {}, "f.yml").cgroup_root == "/sys/fs/cgroup"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"simulation": {"gpus": "many"}}, "f.yml: key 'gpu.simulation.gpus': expected an integer"),
        ({"simulation": {"gpus": 0}}, "key 'gpu.simulation.gpus': expected an integer >= 1"),
        ({"simulation": {"scenario": "boom"}}, "key 'gpu.simulation.scenario': expected one of idle"),
        ({"backend": "cuda"}, "key 'gpu.backend': expected one of nvml, simulation"),
        ({"bogus": 1}, "key 'gpu.bogus': unknown key"),
        ({"xid_events": "yes"}, "key 'gpu.xid_events': expected a boolean"),
        ({"simulation": [1]}, "key 'gpu.simulation': expected a mapping"),
    ],
)
def test_gpu_config_errors_name_the_key(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        build_config(GpuConfig, data, "f.yml: key 'gpu'")
    assert expected in str(info.value)


def test_server_config_errors() -> None:
    with pytest.raises(ConfigError, match="key 'interval': expected a number >= 0.05"):
        build_config(ServerConfig, {"interval": 0}, "f.yml")
    with pytest.raises(ConfigError, match="key 'log_level': expected one of"):
        build_config(ServerConfig, {"log_level": "loud"}, "f.yml")


def test_read_yaml_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("gpu: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yml: malformed YAML at line"):
        read_yaml_mapping(bad)
    lst = tmp_path / "list.yml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level of the config file must be a mapping"):
        read_yaml_mapping(lst)
    with pytest.raises(ConfigError, match="missing.yml: cannot read config file"):
        read_yaml_mapping(tmp_path / "missing.yml")
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert read_yaml_mapping(empty) == {}


def test_web_config_basic_auth_and_headers(tmp_path: Path) -> None:
    wc = tmp_path / "web.yml"
    wc.write_text(
        f"basic_auth_users:\n  prometheus: '{HASH}'\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    )
    cfg = load_web_config(wc)
    assert cfg.tls is None
    assert cfg.headers == {"X-Frame-Options": "deny"}
    auth = cfg.authenticator()
    assert auth is not None
    good = "Basic " + base64.b64encode(b"prometheus:secret").decode()
    bad = "Basic " + base64.b64encode(b"prometheus:wrong").decode()
    assert auth.check_header(good)
    assert not auth.check_header(bad)
    assert not auth.check_header("Basic !!!notbase64")
    assert not auth.check_header(None)
    assert not auth.check_header("Bearer x")
    assert not auth.check("nobody", "secret")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("basic_auth_users:\n  u: 'plaintext'\n", "key 'basic_auth_users.u': invalid bcrypt hash"),
        ("basic_auth_users:\n  u: '$2y$10$short'\n", "key 'basic_auth_users.u': invalid bcrypt hash"),
        ("bogus: 1\n", "key 'bogus': unknown key"),
        ("tls_server_config:\n  key_file: k.pem\n", "does not exist"),
        ("tls_server_config:\n  foo: 1\n", "key 'tls_server_config.foo': unknown key"),
        ("http_server_config:\n  headers:\n    Set-Cookie: x\n", "key 'http_server_config.headers.Set-Cookie'"),
        ("basic_auth_users: [a]\n", "key 'basic_auth_users': expected a mapping"),
    ],
)
def test_web_config_errors(tmp_path: Path, content: str, expected: str) -> None:
    wc = tmp_path / "web.yml"
    wc.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_web_config(wc)
    assert str(wc) in str(info.value)
    assert expected in str(info.value)


def test_web_config_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read web config file"):
        load_web_config(tmp_path / "nope.yml")


def test_bcrypt_checks_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = bcrypt.checkpw

    def counting(pw: bytes, hashed: bytes) -> bool:
        calls.append(pw)
        return bool(real(pw, hashed))

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    auth = BasicAuthenticator({"u": HASH.encode()})
    for _ in range(5):
        assert auth.check("u", "secret")
    assert len(calls) == 1  # later checks hit the cache
    for _ in range(3):
        assert not auth.check("u", "wrong")
    assert len(calls) == 4  # failures are never cached

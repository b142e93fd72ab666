"""The console script, run as a subprocess: help, bad input (clear message, non-zero exit, nothing served)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from conftest import cli, free_port, parse_samples, running_exporter, scrape, value

DEFAULT_PORTS = {"gpu": 9835, "containers": 9417, "vllm": 9436, "litellm": 9437, "langfuse": 9438, "ollama_proxy": 9439}


@pytest.mark.parametrize("exporter", list(DEFAULT_PORTS))
def test_help_explains_itself(exporter: str) -> None:
    res = cli(exporter, "--help")
    assert res.returncode == 0
    for flag in ("--config", "--check-config", "--listen-address", "--web-config-file", "--interval", "--log-level"):
        assert flag in res.stdout
    assert str(DEFAULT_PORTS[exporter]) in res.stdout
    assert f"'{exporter}:' section" in " ".join(res.stdout.split())


def test_top_level_help_lists_exporters() -> None:
    res = cli("--help")
    assert res.returncode == 0
    assert "gpu" in res.stdout
    assert "containers" in res.stdout
    # every exporter with its summary and default metrics port
    flat = " ".join(res.stdout.split())
    for name, port in DEFAULT_PORTS.items():
        assert name in res.stdout
        assert f":{port}" in flat
    for prefix in (
        "llm_monitor_gpu_*",
        "container_*",
        "llm_monitor_vllm_*",
        "llm_monitor_litellm_*",
        "llm_monitor_langfuse_*",
        "llm_monitor_ollama_*",
    ):
        assert prefix in flat


def test_registry_names_ports_without_heavy_imports() -> None:
    """What the role's unit tests read: each exporter's name and default port, importing neither aiohttp nor pynvml."""
    code = (
        "import sys, json; from llm_monitor_exporters.registry import EXPORTERS; "
        "print(json.dumps({'exporters': {e.name: e.default_port for e in EXPORTERS}, "
        "'summaries': all(e.summary for e in EXPORTERS), "
        "'heavy': sorted(m for m in ('aiohttp', 'pynvml', 'yaml', 'prometheus_client') if m in sys.modules)}))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out == {"exporters": DEFAULT_PORTS, "summaries": True, "heavy": []}


def test_every_spec_loads_and_matches_its_entry() -> None:
    from llm_monitor_exporters.core.spec import ExporterSpec
    from llm_monitor_exporters.registry import EXPORTERS, by_name

    for entry in EXPORTERS:
        spec = entry.load()
        assert isinstance(spec, ExporterSpec)
        assert (spec.build is None) != (spec.run is None), entry.name
        assert by_name(entry.name) is entry
    with pytest.raises(KeyError, match="unknown exporter 'ollama-proxy'"):
        by_name("ollama-proxy")


SECTIONS = {
    "langfuse": "\n  projects:\n    - {name: p, host: 'http://127.0.0.1:3000', public_key: pk, secret_key_file: KEY}\n",
}


@pytest.mark.parametrize("exporter", list(DEFAULT_PORTS))
def test_check_config_contract_of_the_role(exporter: str, tmp_path: Path) -> None:
    """The role runs `<name> --check-config --config FILE` and `<name> --check-config --web-config-file FILE`."""
    key = tmp_path / "key"
    key.write_text("sk-test\n")
    section = SECTIONS.get(exporter, " {}\n").replace("KEY", str(key))
    cfg = tmp_path / "exporter.yml"
    cfg.write_text(f"listen_address: 127.0.0.1:{DEFAULT_PORTS[exporter]}\ninterval: 5\n{exporter}:{section}")
    res = cli(exporter, "--check-config", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert f"configuration OK: exporter {exporter}, config {cfg}" in res.stdout
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  p: '{bcrypt.hashpw(b'x', bcrypt.gensalt(4)).decode()}'\n")
    res = cli(exporter, "--check-config", "--web-config-file", str(web))
    assert res.returncode == 0, res.stderr
    assert "1 basic auth user(s)" in res.stdout
    web.write_text("basic_auth_users:\n  p: nothash\n")
    res = cli(exporter, "--check-config", "--web-config-file", str(web))
    assert res.returncode == 1
    assert f"{web}: key 'basic_auth_users.p': invalid bcrypt hash" in res.stderr
    # the exporter's own section is still checked when a config file is named
    cfg.write_text(f"{exporter}:\n  no_such_key: 1\n")
    res = cli(exporter, "--check-config", "--config", str(cfg))
    assert res.returncode == 1
    assert "no_such_key" in res.stderr


def test_old_ollama_proxy_spelling_and_simulate_are_usage_errors() -> None:
    res = cli("ollama-proxy", "--check-config")
    assert res.returncode == 2
    assert "unknown exporter 'ollama-proxy'" in res.stderr
    assert "ollama_proxy" in res.stderr
    res = cli("simulate", "ollama")
    assert res.returncode == 2
    assert "llm-monitor-testkit simulate" in res.stderr


def test_unknown_exporter_exits_2() -> None:
    res = cli("tpu", "--check-config")
    assert res.returncode == 2
    assert "unknown exporter 'tpu'" in res.stderr
    assert "gpu, containers" in res.stderr


def test_no_exporter_is_usage_error() -> None:
    assert cli().returncode == 2


def test_check_config_ok(tmp_path: Path) -> None:
    cfg = tmp_path / "gpu.yml"
    cfg.write_text(
        "listen_address: 127.0.0.1:9835\ninterval: 2\ngpu:\n  backend: simulation\n"
        "  simulation:\n    gpus: 4\n    model: H200\n    scenario: thermal_throttling\n"
    )
    res = cli("gpu", "--config", str(cfg), "--check-config")
    assert res.returncode == 0, res.stderr
    assert "configuration OK" in res.stdout
    res = cli("containers", "--check-config")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("gpu: [unclosed\n", "malformed YAML at line"),
        ("- just\n- a list\n", "top level of the config file must be a mapping"),
        ("gpu:\n  simulation:\n    gpus: lots\n", "key 'gpu.simulation.gpus': expected an integer"),
        ("containers:\n  docker_url: x\n", "key 'containers': unknown key for exporter 'gpu'"),
        ("interval: -1\n", "key 'interval': expected a number >= 0.05"),
        ("gpu:\n  simulation:\n    model: V100\n", "gpu.simulation: unknown GPU model 'V100'"),
        ("gpu:\n  simulation:\n    driver: r550\n", "gpu.simulation: unknown driver version 'r550'"),
    ],
)
def test_malformed_config(tmp_path: Path, content: str, expected: str) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text(content)
    port = free_port()
    res = cli("gpu", "--simulate", "--config", str(cfg), "--listen-address", f"127.0.0.1:{port}")
    assert res.returncode == 1
    assert expected in res.stderr
    if "gpu.simulation: unknown" not in expected:
        assert str(cfg) in res.stderr


def test_the_retired_pcie_interval_is_accepted_with_a_warning(tmp_path: Path) -> None:
    """A config written for the sampled PCIe throughput keeps working after an upgrade."""
    cfg = tmp_path / "old.yml"
    cfg.write_text("gpu:\n  pcie_interval: 30\n")
    res = cli("gpu", "--simulate", "--config", str(cfg), "--check-config")
    assert res.returncode == 0, res.stderr
    assert "gpu.pcie_interval is deprecated and ignored" in res.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    res = cli("containers", "--config", str(tmp_path / "absent.yml"), "--check-config")
    assert res.returncode == 1
    assert "absent.yml: cannot read config file" in res.stderr


def test_unreadable_web_config(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {}\n")
    web.chmod(0)
    target = str(web) if _unreadable(web) else str(tmp_path / "missing-web.yml")
    res = cli("gpu", "--simulate", "--web-config-file", target, "--listen-address", f"127.0.0.1:{free_port()}")
    assert res.returncode == 1
    assert f"{target}: cannot read web config file" in res.stderr


def _unreadable(path: Path) -> bool:
    try:
        path.read_text()
    except OSError:
        return True
    return False  # running as root: permissions do not stop us, use a missing file instead


def test_invalid_bcrypt_hash(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: '$2y$10$notarealhash'\n")
    res = cli("containers", "--web-config-file", str(web), "--check-config")
    assert res.returncode == 1
    assert f"{web}: key 'basic_auth_users.prometheus': invalid bcrypt hash" in res.stderr
    res = cli("gpu", "--simulate", "--web-config-file", str(web), "--listen-address", f"127.0.0.1:{free_port()}")
    assert res.returncode == 1
    assert "invalid bcrypt hash" in res.stderr


def test_port_in_use_exits_before_serving() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = cli("gpu", "--simulate", "--listen-address", f"127.0.0.1:{port}")
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in res.stderr


def test_serve_simulation_then_sigterm(promtool: Callable[[str], None]) -> None:
    with running_exporter("gpu", "--simulate", "--simulate-gpus", "8", "--interval", "0.2") as (proc, port):
        text = scrape(f"http://127.0.0.1:{port}/metrics")
        promtool(text)
        s = parse_samples(text)
        assert len(s["llm_monitor_gpu_up"]) == 8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        _, err = proc.communicate()
        assert "SIMULATION mode" in err
        assert "stopped" in err


def test_nvml_missing_via_cli(tmp_path: Path, promtool: Callable[[str], None]) -> None:
    """The product path on a host without a driver: serve up{upstream="nvml"} 0 and log one clear line."""
    with running_exporter("gpu", "--interval", "0.1") as (proc, port):
        text = scrape(f"http://127.0.0.1:{port}/metrics")
        promtool(text)
        s = parse_samples(text)
        if value(s, "llm_monitor_exporter_up", upstream="nvml") == 1:
            pytest.skip("a real NVML is present here")
        assert value(s, "llm_monitor_exporter_up", upstream="nvml") == 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        _, err = proc.communicate()
    assert err.count("NVML library not found") == 1


@pytest.mark.parametrize("exporter", ["gpu", "containers", "vllm", "litellm", "langfuse", None])
def test_exporters_do_not_import_aiohttp_unless_they_need_it(exporter: str | None) -> None:
    # aiohttp is about 13 MB of RSS: only the Ollama proxy (and the traffic generator) may load it. The CLI's own
    # path: parse, load the configuration, check it (None: the top-level --help).
    args = [exporter, "--check-config"] if exporter else ["--help"]
    code = (
        "import contextlib, io, sys; from llm_monitor_exporters import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        f"    cli.main({args!r})\n"
        "print('aiohttp' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
    if exporter is None:
        return
    # and the proxy does load it (the check above would pass vacuously if nothing were ever imported)
    code = code.replace(repr(args), repr(["ollama_proxy", "--check-config"]))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"


def test_python_m_entrypoint() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "llm_monitor_exporters", "--version"], capture_output=True, text=True, timeout=20
    )
    assert res.returncode == 0
    assert "0.1.0" in res.stdout


def test_valid_web_config_check(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  p: '{bcrypt.hashpw(b'x', bcrypt.gensalt(4)).decode()}'\n")
    res = cli("gpu", "--web-config-file", str(web), "--check-config")
    assert res.returncode == 0, res.stderr
    assert "1 basic auth user(s)" in res.stdout

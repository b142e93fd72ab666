"""``llm-monitor-testkit``: says it is a test double, runs each simulator, rejects bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from conftest import free_port, wait_for

EXE = [sys.executable, "-m", "llm_monitor_testkit"]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status, r.read()


def test_help_says_test_doubles() -> None:
    res = subprocess.run([*EXE, "--help"], capture_output=True, text=True, timeout=20)
    assert res.returncode == 0
    assert "TEST DOUBLES" in res.stdout
    res = subprocess.run([*EXE, "simulate", "--help"], capture_output=True, text=True, timeout=20)
    assert res.returncode == 0
    for kind in ("vllm", "ollama", "langfuse"):
        assert kind in res.stdout


@pytest.mark.parametrize(
    ("kind", "path", "check"),
    [
        ("ollama", "/api/version", lambda body: "version" in json.loads(body)),
        ("langfuse", "/api/public/health", lambda body: json.loads(body)["status"] == "OK"),
        ("vllm", "/v1/models", lambda body: json.loads(body)["data"][0]["id"]),
    ],
)
def test_each_simulator_serves_and_stops_on_sigterm(kind: str, path: str, check: object) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*EXE, "simulate", kind, "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(lambda: _get(f"http://127.0.0.1:{port}{path}")[0] == 200, timeout=15)
        assert callable(check)
        assert check(_get(f"http://127.0.0.1:{port}{path}")[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "SIMULATED" in err


@pytest.mark.parametrize("kind", ["vllm", "ollama", "langfuse"])
def test_bad_listen_address_is_a_usage_error(kind: str) -> None:
    res = subprocess.run([*EXE, "simulate", kind, "--listen", "nowhere"], capture_output=True, text=True, timeout=20)
    assert res.returncode == 2
    assert "nowhere" in res.stderr


def test_unknown_kind_is_a_usage_error() -> None:
    res = subprocess.run([*EXE, "simulate", "tgi"], capture_output=True, text=True, timeout=20)
    assert res.returncode == 2
    assert "invalid choice" in res.stderr

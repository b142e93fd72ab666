"""Shared test helpers: subprocess CLI runs, free ports, promtool, Docker fixtures."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from llm_monitor_testkit.checks import free_port, parse_samples, value, wait_for  # noqa: F401 - the tests import them from here

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
TEST_IMAGE = "llm-monitor-test/busybox:1"
CONTAINER_PREFIX = "lmx-test-"


def cli(*args: str, timeout: float = 20, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``llm-monitor-exporter ARGS`` as a subprocess (python -m, so no PATH assumptions)."""
    return subprocess.run(
        [sys.executable, "-m", "llm_monitor_exporters", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def scrape(url: str, timeout: float = 5, **kwargs: Any) -> str:
    with urllib.request.urlopen(url, timeout=timeout, **kwargs) as resp:
        return str(resp.read().decode())


@contextlib.contextmanager
def running_exporter(*args: str, port: int | None = None) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start the CLI, wait until /metrics answers, yield (process, port), then SIGTERM and expect exit 0."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_monitor_exporters", *args, "--listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ok = wait_for(lambda: scrape(f"http://127.0.0.1:{port}/metrics", timeout=1) != "", timeout=15)
        if not ok:
            proc.kill()
            _out, err = proc.communicate(timeout=5)
            raise AssertionError(f"exporter did not start: rc={proc.returncode}\n{err}")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def promtool() -> Callable[[str], None]:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install -y --no-install-recommends prometheus)")

    def check(text: str) -> None:
        res = subprocess.run([path, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), (
            f"promtool check metrics failed:\n{res.stdout}\n{res.stderr}"
        )

    return check


def _docker_client() -> Any:
    try:
        import docker
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception:
        return None


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = _docker_client()
    if client is None:
        pytest.skip(
            "no Docker engine answers on DOCKER_HOST / /var/run/docker.sock "
            "(start one with tests/harness/docker-engine.sh)"
        )
    res = subprocess.run(["bash", str(HERE / "build_busybox_image.sh")], capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        pytest.skip(f"cannot build {TEST_IMAGE}: {res.stderr.strip()[-300:]}")
    yield client
    client.close()


@pytest.fixture
def make_container(docker_client: Any) -> Iterator[Callable[..., Any]]:
    """Start busybox containers named lmx-test-*; all are removed at the end of the test."""
    created: list[str] = []

    def make(suffix: str, command: str = "sleep 600", **kwargs: Any) -> Any:
        name = f"{CONTAINER_PREFIX}{suffix}-{os.getpid()}"
        with contextlib.suppress(Exception):
            docker_client.containers.get(name).remove(force=True)
        created.append(name)  # before run(): a container that fails to start is removed too
        return docker_client.containers.run(TEST_IMAGE, ["sh", "-c", command], name=name, detach=True, **kwargs)

    yield make
    for name in created:
        with contextlib.suppress(Exception):
            docker_client.containers.get(name).remove(force=True)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1 and a web.yml (exporter-toolkit format) with TLS and basic auth
    (prometheus / s3cret)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI missing")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(d / "server.key"),
            "-out",
            str(d / "server.crt"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    # the exact exporter-toolkit format, relative file names resolved next to the web config
    (d / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    )
    return d

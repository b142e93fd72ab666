"""docker_api.py: against a scripted fake daemon (edge cases) and against the real Docker engine.

The fake daemon speaks just enough HTTP/1.1 on a unix socket (or TCP) for each test to write the exact bytes
it wants: JSON answers, error statuses, chunked event streams split anywhere, streams cut off or left idle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import cli, wait_for
from llm_monitor_exporters.containers.containers import ContainerCollector, ContainersConfig
from llm_monitor_exporters.core.config import ConfigError
from llm_monitor_exporters.docker.docker_api import (
    DockerAPIError,
    DockerClient,
    DockerURLError,
    Endpoint,
    parse_docker_url,
)
from llm_monitor_exporters.docker.docker_meta import DockerMetadata
from llm_monitor_exporters.vllm.vllm import VllmCollector, VllmConfig


class Exchange:
    """One request on the fake daemon; the route handler writes the answer."""

    def __init__(self, conn: socket.socket, target: str, release: threading.Event) -> None:
        self.conn = conn
        self.target = target
        self.release = release
        self.keep_alive = True

    def answer(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.conn.sendall(
            f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )

    def start_chunked(self) -> None:
        self.conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")

    def chunk(self, data: bytes) -> None:
        self.conn.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end_chunked(self) -> None:
        self.conn.sendall(b"0\r\n\r\n")

    def hang(self) -> None:
        """Send nothing more until the test ends."""
        self.release.wait(30)
        self.keep_alive = False


Handler = Callable[[Exchange], None]


class FakeDaemon:
    def __init__(self, unix_dir: Path | None) -> None:
        self.routes: dict[str, Handler] = {
            "/_ping": lambda ex: ex.answer(200, b"OK", "text/plain"),
            "/version": lambda ex: ex.answer(200, {"ApiVersion": "1.41", "Version": "20.10.99"}),
        }
        self.requests: list[str] = []
        self.connections = 0
        self.release = threading.Event()
        if unix_dir is not None:
            path = str(unix_dir / "d.sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            self.url = f"unix://{path}"
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.url = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.release.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                target = line.split()[1].decode()
                while reader.readline() not in (b"\r\n", b""):
                    pass
                self.requests.append(target)
                path = re.sub(r"^/v\d+\.\d+", "", target.split("?")[0])
                ex = Exchange(conn, target, self.release)
                handler = self.routes.get(path)
                if handler is None:
                    ex.answer(404, {"message": f"page not found: {path}"})
                else:
                    handler(ex)
                if not ex.keep_alive:
                    return
        except OSError:
            pass
        finally:
            reader.close()
            conn.close()

    def close(self) -> None:
        self.release.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    tmp = Path(tempfile.mkdtemp(prefix="lmx-da-", dir="/tmp"))  # short: unix socket paths are limited to 107 bytes
    fake = FakeDaemon(tmp)
    yield fake
    fake.close()
    shutil.rmtree(tmp, ignore_errors=True)


def _events_query(target: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(target).query)


# --- URLs --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("unix:///var/run/docker.sock", Endpoint(unix_path="/var/run/docker.sock")),
        ("tcp://127.0.0.1:2375", Endpoint(host="127.0.0.1", port=2375)),
        ("http://docker-proxy:2380/", Endpoint(host="docker-proxy", port=2380)),
        ("TCP://dockerhost", Endpoint(host="dockerhost", port=2375)),
        ("tcp://[::1]:2375", Endpoint(host="::1", port=2375)),
    ],
)
def test_parse_docker_url(url: str, endpoint: Endpoint) -> None:
    assert parse_docker_url(url) == endpoint


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("https://docker.example:2376", "TLS is not supported"),
        ("ssh://user@host", "unsupported scheme 'ssh'"),
        ("npipe:////./pipe/docker_engine", "unsupported scheme 'npipe'"),
        ("unix://var/run/docker.sock", "absolute socket path"),
        ("/var/run/docker.sock", "expected a URL with a scheme"),
        ("tcp://host:notaport", "invalid port"),
        ("tcp://host:2375/prefix", "path, query or fragment"),
        ("tcp://:2375", "expected tcp://HOST:PORT"),
    ],
)
def test_bad_url_refused(url: str, needle: str) -> None:
    with pytest.raises(DockerURLError, match=re.escape(needle)):
        parse_docker_url(url)
    with pytest.raises(DockerURLError):
        DockerClient(url)
    with pytest.raises(DockerURLError):
        DockerMetadata(url)


def test_bad_url_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^containers\.docker_url: TLS is not supported"):
        ContainerCollector(ContainersConfig(docker_url="https://docker.example:2376"))
    with pytest.raises(ConfigError, match=r"^vllm\.docker_url: unsupported scheme 'ssh'"):
        VllmCollector(VllmConfig(docker_url="ssh://host"))
    VllmCollector(VllmConfig(docker=False, docker_url="ssh://host")).close()  # not used: not checked


def test_check_config_rejects_bad_docker_url(tmp_path: Path) -> None:
    res = cli("containers", "--docker-url", "https://docker.example:2376", "--check-config")
    assert res.returncode == 1
    assert "containers.docker_url: TLS is not supported" in res.stderr
    cfg = tmp_path / "vllm.yml"
    cfg.write_text("vllm:\n  docker_url: tcp://host:2375/v1.41\n")
    res = cli("vllm", "--config", str(cfg), "--check-config")
    assert res.returncode == 1
    assert "vllm.docker_url: a path, query or fragment is not supported" in res.stderr
    res = cli("containers", "--docker-url", "tcp://127.0.0.1:2375", "--check-config")
    assert res.returncode == 0, res.stderr


# --- plain calls ---------------------------------------------------------------------------------
def test_version_negotiated_once_and_connection_kept(daemon: FakeDaemon) -> None:
    daemon.routes["/containers/json"] = lambda ex: ex.answer(200, [{"Id": "a"}, {"Id": "b"}])
    daemon.routes["/containers/a/json"] = lambda ex: ex.answer(200, {"Id": "a", "Name": "/one"})
    with DockerClient(daemon.url, timeout=2) as client:
        client.ping()
        assert [c["Id"] for c in client.containers(all=True)] == ["a", "b"]
        assert client.containers() == [{"Id": "a"}, {"Id": "b"}]
        assert client.inspect("a") == {"Id": "a", "Name": "/one"}
    assert daemon.requests == [
        "/_ping",
        "/version",
        "/v1.41/containers/json?all=1",
        "/v1.41/containers/json",
        "/v1.41/containers/a/json",
    ]
    assert daemon.connections == 1


@pytest.mark.parametrize("version", [(200, {"Version": "odd"}), (403, {"message": "forbidden by the proxy"})])
def test_unversioned_paths_when_the_daemon_gives_no_api_version(daemon: FakeDaemon, version: tuple[int, Any]) -> None:
    daemon.routes["/version"] = lambda ex: ex.answer(*version)
    daemon.routes["/containers/json"] = lambda ex: ex.answer(200, [])
    with DockerClient(daemon.url, timeout=2) as client:
        assert client.containers() == []
        assert client.containers() == []
    assert daemon.requests == ["/version", "/containers/json", "/containers/json"]


def test_inspect_404_is_none_other_404_raise(daemon: FakeDaemon) -> None:
    daemon.routes["/containers/gone/json"] = lambda ex: ex.answer(404, {"message": "No such container: gone"})
    with DockerClient(daemon.url, timeout=2) as client:
        assert client.inspect("gone") is None
        assert client.inspect("a/../b") is None  # the id is quoted into one path segment
        assert daemon.requests[-1] == "/v1.41/containers/a%2F..%2Fb/json"
        with pytest.raises(DockerAPIError) as err:
            client.containers()
    assert err.value.status == 404


def test_error_status_carries_the_daemons_message(daemon: FakeDaemon) -> None:
    daemon.routes["/containers/json"] = lambda ex: ex.answer(500, {"message": "boom: disk on fire"})
    daemon.routes["/containers/x/json"] = lambda ex: ex.answer(502, b"<html>bad gateway</html>", "text/html")
    with DockerClient(daemon.url, timeout=2) as client:
        with pytest.raises(DockerAPIError) as err:
            client.containers(all=True)
        assert (err.value.status, err.value.message) == (500, "boom: disk on fire")
        assert "HTTP 500: boom: disk on fire" in str(err.value)
        with pytest.raises(DockerAPIError) as err:
            client.inspect("x")
        assert (err.value.status, err.value.message) == (502, "<html>bad gateway</html>")
        client.ping()  # the connection is still usable after error answers
    assert daemon.connections == 1


def test_malformed_json_answer(daemon: FakeDaemon) -> None:
    daemon.routes["/containers/json"] = lambda ex: ex.answer(200, b"[{not json")
    with DockerClient(daemon.url, timeout=2) as client, pytest.raises(DockerAPIError, match="malformed JSON"):
        client.containers()


def test_stale_keep_alive_connection_is_retried_once(daemon: FakeDaemon) -> None:
    def answer_then_hang_up(ex: Exchange) -> None:
        ex.answer(200, [{"Id": "a"}])
        ex.keep_alive = False  # closed without "Connection: close", as an idle timeout would

    daemon.routes["/containers/json"] = answer_then_hang_up
    with DockerClient(daemon.url, timeout=2) as client:
        assert client.containers() == [{"Id": "a"}]
        time.sleep(0.1)
        assert client.containers() == [{"Id": "a"}]
    assert daemon.connections == 2


def test_connection_errors_are_oserrors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        DockerClient(f"unix://{tmp_path}/absent.sock", timeout=1).ping()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        DockerClient(f"tcp://127.0.0.1:{port}", timeout=1).ping()


def test_a_silent_daemon_times_out(daemon: FakeDaemon) -> None:
    daemon.routes["/containers/json"] = lambda ex: ex.hang()
    client = DockerClient(daemon.url, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        client.containers()
    assert time.monotonic() - start < 2
    client.close()
    with pytest.raises(ConnectionError):  # closed for good
        client.ping()


def test_tcp_endpoint() -> None:
    fake = FakeDaemon(None)
    try:
        fake.routes["/containers/json"] = lambda ex: ex.answer(200, [{"Id": "t"}])
        for url in (fake.url, fake.url.replace("tcp://", "http://")):
            with DockerClient(url, timeout=2) as client:
                client.ping()
                assert client.containers() == [{"Id": "t"}]
    finally:
        fake.close()


# --- events --------------------------------------------------------------------------------------
def test_events_objects_split_across_chunks(daemon: FakeDaemon) -> None:
    def stream(ex: Exchange) -> None:
        ex.start_chunked()
        ex.chunk(b'{"Action":"st')
        ex.chunk(b'art","id":"a"}\n{"Action":"die","id":"b"}\n{"Act')  # the end of one, a whole one, a start
        ex.chunk(b'ion":"oom","id":"c"}\n\n')
        ex.chunk(b'{"Action":"rename","Actor":{"Attributes":{"name":"caf\xc3')  # UTF-8 split inside a character
        ex.chunk(b'\xa9"}}}')  # no newline: a chunk per object is enough too
        ex.chunk(b'{"Action":"destroy","id":"d"}')
        ex.end_chunked()

    daemon.routes["/events"] = stream
    with DockerClient(daemon.url, timeout=2) as client:
        events = list(client.events(since=100, until=200, filters={"type": "container"}))
    assert [e["Action"] for e in events] == ["start", "die", "oom", "rename", "destroy"]
    assert events[3]["Actor"]["Attributes"]["name"] == "café"
    assert _events_query(daemon.requests[-1]) == {
        "since": ["100"],
        "until": ["200"],
        "filters": ['{"type": ["container"]}'],
    }
    assert daemon.requests[-1].startswith("/v1.41/events?")


@pytest.mark.parametrize("cut", ["between_chunks", "inside_chunk"])
def test_events_daemon_closes_mid_stream(daemon: FakeDaemon, cut: str) -> None:
    def stream(ex: Exchange) -> None:
        ex.start_chunked()
        ex.chunk(b'{"Action":"start","id":"a"}\n')
        if cut == "between_chunks":
            ex.chunk(b'{"Action":"st')
        else:
            ex.conn.sendall(b'40\r\n{"Action":"st')  # 64 bytes announced, 13 sent
        ex.keep_alive = False  # and the connection goes, without the final chunk

    daemon.routes["/events"] = stream
    with DockerClient(daemon.url, timeout=2) as client:
        stream_ = client.events(until=time.time() + 60)
        assert next(stream_) == {"Action": "start", "id": "a"}
        with pytest.raises(ConnectionError):
            next(stream_)


def test_events_error_status(daemon: FakeDaemon) -> None:
    daemon.routes["/events"] = lambda ex: ex.answer(400, {"message": "invalid filter 'bogus'"})
    with DockerClient(daemon.url, timeout=2) as client, pytest.raises(DockerAPIError, match="invalid filter"):
        client.events(filters={"bogus": ["x"]})


def test_idle_events_stream_does_not_time_out_before_until(daemon: FakeDaemon) -> None:
    def stream(ex: Exchange) -> None:
        ex.start_chunked()
        time.sleep(0.8)  # longer than the client's timeout
        ex.chunk(b'{"Action":"start","id":"late"}\n')
        ex.end_chunked()

    daemon.routes["/events"] = stream
    with DockerClient(daemon.url, timeout=0.2) as client:
        assert [e["id"] for e in client.events(until=time.time() + 30)] == ["late"]


def test_silent_events_stream_times_out_after_until(daemon: FakeDaemon) -> None:
    def stream(ex: Exchange) -> None:
        ex.start_chunked()
        ex.hang()

    daemon.routes["/events"] = stream
    with DockerClient(daemon.url, timeout=0.3) as client:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            list(client.events(until=time.time() + 0.3))
        assert 0.3 < time.monotonic() - start < 3


@pytest.mark.parametrize("closer", ["stream", "client"])
def test_close_from_another_thread_ends_events_promptly(daemon: FakeDaemon, closer: str) -> None:
    def stream(ex: Exchange) -> None:
        ex.start_chunked()
        ex.chunk(b'{"Action":"start","id":"a"}\n{"Action":"di')
        ex.hang()

    daemon.routes["/events"] = stream
    client = DockerClient(daemon.url, timeout=0.2)
    events = client.events(since=time.time())  # no until: no read timeout at all
    got: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            got.extend(events)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=follow)
    reader.start()
    assert wait_for(lambda: len(got) == 1, timeout=5)
    time.sleep(0.5)  # idle for longer than the timeout: still open
    assert reader.is_alive()
    start = time.monotonic()
    (events if closer == "stream" else client).close()
    reader.join(1)
    assert not reader.is_alive(), "events() still blocked 1 s after close()"
    assert time.monotonic() - start < 1
    assert errors == [] and got == [{"Action": "start", "id": "a"}]
    assert list(events) == []
    client.close()


def test_docker_metadata_on_the_fake_daemon(daemon: FakeDaemon) -> None:
    inspect = {
        "Id": "c1",
        "Name": "/one",
        "Config": {"Image": "img:1", "Labels": {}},
        "State": {"Status": "running", "Pid": 0, "StartedAt": "2024-05-01T10:00:00.123456789Z"},
    }
    daemon.routes["/containers/json"] = lambda ex: ex.answer(200, [{"Id": "c1"}, {"Id": "gone"}])
    daemon.routes["/containers/c1/json"] = lambda ex: ex.answer(200, inspect)

    def stream(ex: Exchange) -> None:
        ex.start_chunked()
        ex.chunk(b'{"status":"oom","id":"c1","Type":"container","Action":"oom"}\n')
        ex.chunk(b'{"Type":"container","Action":"destroy","Actor":{"ID":"gone"}}\n')
        ex.hang()

    daemon.routes["/events"] = stream
    meta = DockerMetadata(daemon.url, timeout=0.3, resync_interval=60)
    meta.start()
    try:
        assert wait_for(lambda: meta.snapshot()[2] == {"c1": 1}, timeout=5)
        up, containers, _ = meta.snapshot()
        assert up and list(containers) == ["c1"]
        assert containers["c1"].name == "one" and containers["c1"].started_at == pytest.approx(1714557600.123456)
        query = _events_query(next(r for r in daemon.requests if "/events?" in r))
        assert json.loads(query["filters"][0]) == {"type": ["container"]}
        assert int(query["until"][0]) - int(query["since"][0]) == 60
        time.sleep(0.5)  # the idle events stream outlives the 0.3 s timeout
        assert meta.snapshot()[0]
    finally:
        start = time.monotonic()
        meta.stop()
        assert time.monotonic() - start < 1, "stop() did not end the events stream promptly"


# --- the real engine ---------------------------------------------------------------------------------
def _url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


@pytest.mark.docker
def test_real_engine_list_inspect_errors(docker_client: Any, make_container: Callable[..., Any]) -> None:
    c = make_container("api", labels={"lmx.test": "docker_api"})
    with DockerClient(_url(), timeout=10) as client:
        client.ping()
        assert re.match(r"^\d+\.\d+$", client.version()["ApiVersion"])
        assert c.id in {s["Id"] for s in client.containers()}
        c.stop(timeout=0)
        assert c.id not in {s["Id"] for s in client.containers()}
        assert c.id in {s["Id"] for s in client.containers(all=True)}
        data = client.inspect(c.id)
        assert data is not None
        assert data["Id"] == c.id and data["Name"] == "/" + c.name
        assert data["Config"]["Labels"]["lmx.test"] == "docker_api"
        assert data["State"]["Status"] == "exited"
        assert client.inspect("lmx-test-no-such-container") is None
        with pytest.raises(DockerAPIError) as err:
            client.events(since=time.time() + 100, until=time.time())
        assert err.value.status == 400 and "cannot be after" in err.value.message


@pytest.mark.docker
def test_real_engine_events(docker_client: Any, make_container: Callable[..., Any]) -> None:
    with DockerClient(_url(), timeout=10) as client:
        past = list(client.events(since=time.time() - 3600, until=time.time(), filters={"type": "container"}))
        assert all(e.get("Type") == "container" for e in past)

        stream = client.events(since=time.time(), until=time.time() + 60, filters={"type": "container"})
        got: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: got.extend(stream))
        reader.start()
        c = make_container("events")
        assert wait_for(lambda: any(e.get("Action") == "start" and e.get("id") == c.id for e in got), timeout=15)
        start = time.monotonic()
        stream.close()
        reader.join(1)
        assert not reader.is_alive() and time.monotonic() - start < 1
        client.ping()  # closing the stream leaves the client usable

"""A small, read-only Docker Engine API client on the standard library (http.client, json, socket).

Only what the exporters use: ``/_ping``, ``/version``, the container list, inspect and the events stream.
Endpoints: ``unix:///path/to/docker.sock`` and plain HTTP (``tcp://HOST:PORT``, ``http://HOST:PORT``); TLS is
not supported. Connection problems surface as ``OSError`` (``ConnectionError``, ``TimeoutError``,
``FileNotFoundError`` ...), answers other than 2xx as :class:`DockerAPIError`.

One thread makes the calls; :meth:`DockerClient.close` and :meth:`EventStream.close` may come from any other
thread and end a call blocked on the daemon at once.
"""

from __future__ import annotations

import codecs
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_TCP_PORT = 2375  # dockerd's conventional plain-HTTP port
MAX_EVENT_CHARS = 1 << 20  # an event larger than this is not an event: refuse it instead of buffering forever
_API_VERSION = re.compile(r"^\d+\.\d+$")
_HEADERS = {"User-Agent": "llm-monitor-exporters", "Accept": "application/json"}


class DockerURLError(ValueError):
    """The Docker endpoint URL is not one this client can talk to."""


class DockerAPIError(Exception):
    """The daemon answered with an error status (or an answer that is not the JSON it should be)."""

    def __init__(self, status: int, message: str, path: str = "") -> None:
        super().__init__(f"Docker API {path or 'call'}: HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.path = path


@dataclass(frozen=True)
class Endpoint:
    """Where the daemon listens: a unix socket path, or host and port for plain HTTP."""

    unix_path: str = ""
    host: str = ""
    port: int = 0


def parse_docker_url(url: str) -> Endpoint:
    """``unix:///path``, ``tcp://host[:port]`` or ``http://host[:port]`` -> Endpoint; anything else: DockerURLError."""
    usage = "use unix:///PATH/docker.sock, tcp://HOST:PORT or http://HOST:PORT"
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise DockerURLError(f"expected a URL with a scheme, got {url!r}: {usage}")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise DockerURLError(f"expected an absolute socket path (unix:///var/run/docker.sock), got {url!r}")
        return Endpoint(unix_path=rest)
    if scheme in ("tcp", "http"):
        parts = urlsplit("http://" + rest)
        try:
            port = parts.port
        except ValueError:
            raise DockerURLError(f"invalid port in {url!r}") from None
        if not parts.hostname or parts.username or parts.password:
            raise DockerURLError(f"expected {scheme}://HOST:PORT, got {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise DockerURLError(f"a path, query or fragment is not supported, got {url!r}: {usage}")
        return Endpoint(host=parts.hostname, port=port or DEFAULT_TCP_PORT)
    if scheme == "https":
        raise DockerURLError(
            f"TLS is not supported by the exporters' Docker client, got {url!r}: {usage} "
            "(for a remote daemon, a local socket proxy is the way)"
        )
    raise DockerURLError(f"unsupported scheme {scheme!r} in {url!r}: {usage}")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)  # the Host header; dockerd ignores it on its socket
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _Channel:
    """One HTTP connection, used by one thread at a time and closable from any thread.

    close() during a call only shuts the socket down: that wakes a blocked recv() at once, whereas closing
    the connection's file objects under the reading thread fails it in odd ways. The caller closes it after.
    """

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.used = False  # a request has completed on it (so the daemon may have dropped it as idle)
        self._lock = threading.Lock()
        self._busy = False
        self._closed = False

    def is_closed(self) -> bool:
        return self._closed

    def enter(self) -> None:
        with self._lock:
            if self._closed:
                raise ConnectionAbortedError("Docker API connection closed")
            self._busy = True

    def connect(self) -> None:
        """Connect now unless connected (between enter() and leave()), so that close() can shut it down."""
        if self.conn.sock is None:
            self.conn.connect()
            if self._closed:  # close() ran while connecting and saw no socket yet
                raise ConnectionAbortedError("Docker API connection closed")

    def leave(self) -> None:
        with self._lock:
            self._busy = False
            if not self._closed:
                return
        self.conn.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            busy = self._busy
            sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected (any more)
        if not busy:
            self.conn.close()


class EventStream:
    """The daemon's event objects, one dict each, as they arrive; ends at ``until`` or on close().

    Docker writes one JSON object per line, but a chunk may hold several objects or part of one, so the
    text is buffered and decoded object by object rather than trusted to arrive a chunk per object.
    """

    def __init__(self, channel: _Channel, response: http.client.HTTPResponse, path: str) -> None:
        self._channel = channel
        self._response = response
        self._path = path
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._decoder = json.JSONDecoder()
        self._text = ""
        self._done = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        while True:
            event = self._pop()
            if event is not None:
                return event
            if self._done:
                raise StopIteration
            chunk = self._read()
            if chunk:
                self._text += self._utf8.decode(chunk)
                if len(self._text) > MAX_EVENT_CHARS:
                    self._finish()
                    raise DockerAPIError(200, f"event larger than {MAX_EVENT_CHARS} characters", self._path)
                continue
            closed = self._channel.is_closed()  # by close() (of the stream or the client)
            self._finish()
            if self._text.strip() and not closed:
                raise ConnectionError(f"Docker API {self._path}: the events stream ended inside an event")

    def _pop(self) -> dict[str, Any] | None:
        while True:
            self._text = self._text.lstrip()
            if not self._text:
                return None
            try:
                obj, end = self._decoder.raw_decode(self._text)
            except json.JSONDecodeError:
                return None  # incomplete: wait for the rest
            self._text = self._text[end:]
            if isinstance(obj, dict):
                return obj

    def _read(self) -> bytes:
        """The next bytes of the body; b"" at its end or after close()."""
        try:
            self._channel.enter()
        except ConnectionAbortedError:
            return b""  # closed
        try:
            return self._response.read1(65536)
        except (OSError, http.client.HTTPException) as exc:
            if self._channel.is_closed():  # by close(): the end, not an error
                return b""
            self._finish()
            if isinstance(exc, OSError):
                raise
            raise ConnectionError(f"Docker API {self._path}: events stream broken ({exc!r})") from exc
        finally:
            self._channel.leave()

    def _finish(self) -> None:
        self._done = True
        self._channel.close()

    def close(self) -> None:
        """End the stream now (from any thread): a blocked iteration returns (StopIteration) at once."""
        self._done = True
        self._channel.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DockerClient:
    """Read-only calls to a Docker daemon over one keep-alive connection (events on their own connection)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.endpoint = parse_docker_url(url)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._channel: _Channel | None = None
        self._streams: list[_Channel] = []  # of the events streams
        self._closed = False
        self._prefix: str | None = None

    # -- calls -----------------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raises unless the daemon answers /_ping."""
        self._get_json("/_ping", versioned=False, expect_json=False)

    def version(self) -> dict[str, Any]:
        data = self._get_json("/version", versioned=False)
        if not isinstance(data, dict):
            raise DockerAPIError(200, "expected a JSON object", "/version")
        return data

    def containers(self, all: bool = False) -> list[dict[str, Any]]:  # `all`: the API parameter's name
        """Container summaries (GET /containers/json); stopped ones too with ``all``."""
        data = self._get_json("/containers/json", {"all": "1"} if all else None)
        if not isinstance(data, list):
            raise DockerAPIError(200, "expected a JSON list", "/containers/json")
        return [c for c in data if isinstance(c, dict)]

    def inspect(self, cid: str) -> dict[str, Any] | None:
        """The container's inspect document, or None when it does not exist (any more)."""
        try:
            data = self._get_json(f"/containers/{quote(cid, safe='')}/json")
        except DockerAPIError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(data, dict):
            raise DockerAPIError(200, "expected a JSON object", "/containers/{id}/json")
        return data

    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        filters: Mapping[str, str | Sequence[str]] | None = None,
    ) -> EventStream:
        """Stream of events (GET /events); with ``until`` the daemon ends it then.

        No read timeout while the stream may legitimately be idle: until ``until`` plus ``timeout``, or
        never without ``until`` (as the Docker SDK). close() ends it at once from any thread.
        """
        query: dict[str, str] = {}
        if since is not None:
            query["since"] = str(int(since))
        if until is not None:
            query["until"] = str(int(until))
        if filters:
            query["filters"] = json.dumps({k: [v] if isinstance(v, str) else list(v) for k, v in filters.items()})
        path = self._path("/events", query, versioned=True)
        channel = _Channel(self._connect())
        with self._lock:
            if self._closed:
                raise ConnectionAbortedError("Docker client closed")
            self._streams = [c for c in self._streams if not c.is_closed()]
            self._streams.append(channel)  # so that close() reaches it from here on
        channel.enter()
        try:
            channel.connect()
            channel.conn.request("GET", path, headers=_HEADERS)
            response = channel.conn.getresponse()
            if response.status != 200:
                raise _api_error(response.status, response.read(), "/events")
            sock = channel.conn.sock
            if sock is not None:
                sock.settimeout(None if until is None else max(0.0, until - time.time()) + self.timeout)
        except http.client.HTTPException as exc:
            channel.close()
            raise ConnectionError(f"Docker API /events: {exc!r}") from exc
        except BaseException:
            channel.close()
            raise
        finally:
            channel.leave()
        return EventStream(channel, response, "/events")

    def close(self) -> None:
        """Close the connection and every events stream (from any thread); later calls fail."""
        with self._lock:
            self._closed = True
            channel, self._channel = self._channel, None
            streams, self._streams = self._streams, []
        for each in ([channel] if channel is not None else []) + streams:
            each.close()

    def __enter__(self) -> DockerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------------------
    def _connect(self, timeout: float | None = None) -> http.client.HTTPConnection:
        t = self.timeout if timeout is None else timeout
        if self.endpoint.unix_path:
            return _UnixHTTPConnection(self.endpoint.unix_path, t)
        return http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=t)

    def _path(self, path: str, query: Mapping[str, str] | None, versioned: bool) -> str:
        prefix = self._api_prefix() if versioned else ""
        return prefix + path + (f"?{urlencode(query)}" if query else "")

    def _api_prefix(self) -> str:
        # Negotiated once per client like the SDK's version="auto": unversioned paths are deprecated by
        # Docker, and a fixed version is refused by older daemons (20.10 speaks 1.41). A proxy that refuses
        # /version gets unversioned paths (the daemon's own version).
        if self._prefix is None:
            try:
                version = self.version().get("ApiVersion")
            except DockerAPIError:
                version = None
            self._prefix = f"/v{version}" if isinstance(version, str) and _API_VERSION.match(version) else ""
        return self._prefix

    def _get_json(
        self, path: str, query: Mapping[str, str] | None = None, versioned: bool = True, expect_json: bool = True
    ) -> Any:
        target = self._path(path, query, versioned)
        status, body = self._get(target)
        if not 200 <= status < 300:
            raise _api_error(status, body, path)
        if not expect_json:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise DockerAPIError(status, f"malformed JSON answer ({exc})", path) from None

    def _get(self, target: str) -> tuple[int, bytes]:
        for attempt in (1, 2):
            channel = self._take_channel()
            retry = channel.used and attempt == 1
            channel.enter()
            try:
                channel.connect()
                channel.conn.request("GET", target, headers=_HEADERS)
                response = channel.conn.getresponse()
                body = response.read()
            except (BrokenPipeError, ConnectionResetError) as exc:
                # RemoteDisconnected is one too: the daemon dropped an idle keep-alive connection; retry once
                self._drop(channel)
                if retry:  # (after close(), taking a channel fails)
                    continue
                raise ConnectionError(f"Docker API {target}: {exc!r}") from exc
            except http.client.HTTPException as exc:
                self._drop(channel)
                raise ConnectionError(f"Docker API {target}: {exc!r}") from exc
            except BaseException:
                self._drop(channel)
                raise
            finally:
                channel.leave()
            channel.used = True
            if response.will_close:
                self._drop(channel)
            return response.status, body
        raise AssertionError("unreachable")  # pragma: no cover

    def _take_channel(self) -> _Channel:
        with self._lock:
            if self._closed:
                raise ConnectionAbortedError("Docker client closed")
            if self._channel is None:
                self._channel = _Channel(self._connect())
            return self._channel

    def _drop(self, channel: _Channel) -> None:
        with self._lock:
            if self._channel is channel:
                self._channel = None
        channel.close()


def _api_error(status: int, body: bytes, path: str) -> DockerAPIError:
    """The daemon's {"message": ...} (or the start of whatever it sent) as a DockerAPIError."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        text = data["message"]
    return DockerAPIError(status, text[:500] or http.client.responses.get(status, "error"), path)

"""HTTP(S) server for ``/metrics`` with optional TLS and basic auth (exporter-toolkit web config)."""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from llm_monitor_exporters import __version__
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.core.webconfig import BasicAuthenticator, WebConfig

log = logging.getLogger(__name__)


class ListenError(Exception):
    """The listen address is invalid or cannot be bound (e.g. port in use)."""


def parse_listen_address(address: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) -> (host, port)."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ListenError(f"invalid listen address {address!r}: expected HOST:PORT or :PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ListenError(f"invalid listen address {address!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ListenError(f"invalid listen address {address!r}: port out of range")
    return host, port


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: str, loop: SnapshotLoop, web: WebConfig, metrics_path: str = "/metrics") -> None:
        host, port = parse_listen_address(address)
        self.display_address = address
        self.loop = loop
        self.metrics_path = metrics_path
        self.routes = loop.collector.http_routes()
        self.response_headers = dict(web.headers)
        self.authenticator: BasicAuthenticator | None = web.authenticator()
        self.ssl_context: ssl.SSLContext | None = web.ssl_context()
        family = socket.AF_INET
        if host == "":
            host = "::" if socket.has_ipv6 else "0.0.0.0"
            family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
        elif ":" in host:
            family = socket.AF_INET6
        self.address_family = family
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ListenError(
                    f"cannot listen on {address}: address already in use (another exporter running?)"
                ) from exc
            raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:  # pragma: no cover - platform without dual stack
                pass
        super().server_bind()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake here, in the per-connection thread, so a slow client never blocks accept().
        if self.ssl_context is not None:
            request.settimeout(10)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error while handling request from %s", client_address, exc_info=True)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="http-server", daemon=True
        )
        thread.start()
        return thread


_LANDING = """<html><head><title>llm_monitor exporter ({name})</title></head><body>
<h1>llm_monitor exporter: {name}</h1><p>version {version}</p><p><a href="{path}">Metrics</a></p>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.1"
    server_version = f"llm-monitor-exporter/{__version__}"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**self.server.response_headers, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _handle(self, head: bool) -> None:
        auth = self.server.authenticator
        if auth is not None and not auth.check_header(self.headers.get("Authorization")):
            self._send(401, b"Unauthorized\n", extra={"WWW-Authenticate": 'Basic realm="llm_monitor"'}, head=head)
            return
        path = self.path.split("?", 1)[0]
        if path == self.server.metrics_path:
            want_gzip = "gzip" in (self.headers.get("Accept-Encoding") or "")
            body = self.server.loop.latest(want_gzip=want_gzip)
            extra = {"Content-Encoding": "gzip"} if want_gzip else {}
            self._send(200, body, CONTENT_TYPE_PLAIN_0_0_4, extra=extra, head=head)
        elif path in self.server.routes:
            code, content_type, body = self.server.routes[path]()
            self._send(code, body, content_type, head=head)
        elif path == "/":
            page = _LANDING.format(
                name=self.server.loop.collector.name, version=__version__, path=self.server.metrics_path
            )
            self._send(200, page.encode(), "text/html; charset=utf-8", head=head)
        else:
            self._send(404, b"Not Found\n", head=head)

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)

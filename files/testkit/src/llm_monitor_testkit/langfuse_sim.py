"""SIMULATED Langfuse public API (test and demo use only; values are not real).

``GET /api/public/health``, ``GET /api/public/metrics/daily`` and ``GET /api/public/metrics?query=<json>``
with HTTP Basic auth (public key, secret key). ``mode`` switches fault behaviour:

- ``normal``; ``rate_limited``: every authenticated call answers 429 with ``Retry-After``;
  ``server_error``: 500; ``malformed``: 200 with a body that is not JSON; ``slow``: sleeps ``slow_seconds``.

``calls`` counts requests per (path, status) so tests can check how often an exporter polled.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("normal", "rate_limited", "server_error", "malformed", "slow")


class SimulatedLangfuse:
    def __init__(
        self,
        public_key: str = "pk-lf-simulated",
        secret_key: str = "sk-lf-simulated",  # noqa: S107
        mode: str = "normal",
        retry_after: int = 2,
        slow_seconds: float = 5.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        self.public_key = public_key
        self.secret_key = secret_key
        self.mode = mode
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.calls: Counter[tuple[str, int]] = Counter()
        self.lock = threading.Lock()

    def count(self, path: str, status: int) -> None:
        with self.lock:
            self.calls[(path, status)] += 1

    def total_calls(self, path: str | None = None) -> int:
        with self.lock:
            return sum(n for (p, _), n in self.calls.items() if path is None or p == path)

    def authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode()
        return header == f"Basic {expected}"

    @staticmethod
    def daily() -> dict[str, Any]:
        today = dt.datetime.now(dt.timezone.utc).date()
        days = []
        for i in range(3):
            scale = 3 - i
            days.append(
                {
                    "date": (today - dt.timedelta(days=i)).isoformat(),
                    "countTraces": 120 * scale,
                    "countObservations": 480 * scale,
                    "totalCost": 1.25 * scale,
                    "usage": [
                        {
                            "model": "gpt-4o-mini",
                            "inputUsage": 20000 * scale,
                            "outputUsage": 5000 * scale,
                            "totalUsage": 25000 * scale,
                            "countObservations": 300 * scale,
                            "countTraces": 100 * scale,
                            "totalCost": 0.75 * scale,
                        },
                        {
                            "model": "llama-3-8b",
                            "inputUsage": 8000 * scale,
                            "outputUsage": 2000 * scale,
                            "totalUsage": 10000 * scale,
                            "countObservations": 180 * scale,
                            "countTraces": 20 * scale,
                            "totalCost": 0.5 * scale,
                        },
                    ],
                }
            )
        return {"data": days, "meta": {"page": 1, "limit": 50, "totalItems": len(days), "totalPages": 1}}

    @staticmethod
    def metrics(query: dict[str, Any]) -> dict[str, Any]:
        """Rows keyed ``<aggregation>_<measure>`` (values as strings, like Langfuse), grouped by dimensions."""
        dims = [d.get("field") for d in query.get("dimensions") or [] if isinstance(d, dict)]
        latency = {"p50": 850.0, "p95": 2400.0, "p99": 4100.0, "avg": 1000.0}

        def row(extra: dict[str, Any], count: int) -> dict[str, Any]:
            r: dict[str, Any] = dict(extra)
            for m in query.get("metrics") or []:
                measure, agg = m.get("measure"), m.get("aggregation")
                if measure == "count":
                    r[f"{agg}_{measure}"] = str(count)
                elif measure == "latency":
                    r[f"{agg}_{measure}"] = latency.get(str(agg), 0.0)
                else:
                    r[f"{agg}_{measure}"] = 0
            return r

        if "level" in dims:
            return {"data": [row({"level": "DEFAULT"}, 400), row({"level": "WARNING"}, 13), row({"level": "ERROR"}, 7)]}
        return {"data": [row({}, 420)]}


class _Handler(BaseHTTPRequestHandler):
    server: SimulatedLangfuseServer
    protocol_version = "HTTP/1.1"
    server_version = "simulated-langfuse"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.server.sim.count(self.path.split("?", 1)[0], code)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        sim = self.server.sim
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        if path == "/api/public/health" and sim.mode not in ("server_error", "slow"):
            self._send(200, b'{"status":"OK","version":"simulated-3.0.0"}')
            return
        if not sim.authorized(self.headers.get("Authorization")):
            self._send(401, b'{"message":"Invalid credentials. Confirm that you\'ve configured the correct host."}')
            return
        if sim.mode == "slow":
            time.sleep(sim.slow_seconds)
        if sim.mode == "rate_limited":
            self._send(429, b'{"message":"Rate limit exceeded"}', {"Retry-After": str(sim.retry_after)})
            return
        if sim.mode == "server_error":
            self._send(500, b'{"message":"Internal Server Error"}')
            return
        if sim.mode == "malformed":
            self._send(200, b"<html>not json")
            return
        if path == "/api/public/health":
            self._send(200, b'{"status":"OK","version":"simulated-3.0.0"}')
        elif path == "/api/public/metrics/daily":
            self._send(200, json.dumps(sim.daily()).encode())
        elif path == "/api/public/metrics":
            qs = urllib.parse.parse_qs(parsed.query)
            try:
                query = json.loads(qs["query"][0])
                if not isinstance(query, dict) or "view" not in query or "metrics" not in query:
                    raise ValueError("query needs view and metrics")
            except (KeyError, ValueError) as exc:
                self._send(400, json.dumps({"message": f"Invalid request data: {exc}"}).encode())
                return
            self._send(200, json.dumps(sim.metrics(query)).encode())
        else:
            self._send(404, b'{"message":"Not Found"}')


class SimulatedLangfuseServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimulatedLangfuse) -> None:
        self.sim = sim
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

"""SIMULATED Langfuse public API (test and demo use only; values are not real).

Models Langfuse web **v4.16.0** (and v3.225.4 for ``server="v3"``), from web/src/pages/api/public/
(health.ts, metrics/daily.ts, metrics/index.ts, v2/metrics.ts), createAuthedProjectAPIRoute.ts,
withMiddlewares.ts, RateLimitService.ts and packages/shared/src/features/query/dataModel.ts:

- ``server``: ``v4_events_only`` (today's default write mode: ``/api/public/metrics/daily`` and
  ``/api/public/metrics`` answer 404 before auth, ``/api/public/v2/metrics`` answers), ``v4_legacy``
  (write mode legacy: v1 answers, v2 answers 404 ``LangfuseNotFoundError``), ``v3`` (v1 only; the v2
  path does not exist: Next.js' HTML 404 page).
- ``plan``: ``self_hosted`` (no quota) or a Cloud plan (``hobby``, ``core``, ``pro``) whose per-resource
  quotas are enforced in fixed windows that start with the first call (rate-limiter-flexible), per
  organisation (this server is one organisation): 429 with ``Retry-After``, ``X-RateLimit-*`` and
  ``{"message","code":"rate_limited","details"}``. Cloud v1 answers carry ``_deprecation``.
- ``mode`` adds faults: ``normal``; ``rate_limited`` (every authenticated call 429 with Retry-After),
  ``server_error`` (500), ``malformed`` (200, not JSON), ``slow`` (sleeps ``slow_seconds``).

v2 queries are validated as upstream does (view without ``traces``, known measures, dimensions and
aggregations, ``fromTimestamp`` before ``toTimestamp``, ``row_limit`` 1-1000, default 100); rows are keyed
``<aggregation>_<measure>`` and by dimension alias, 64-bit integers as strings (ClickHouse JSON).
``calls`` counts requests per (path, status) so tests can check how often an exporter polled.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("normal", "rate_limited", "server_error", "malformed", "slow")
SERVERS = ("v4_events_only", "v4_legacy", "v3")
VERSIONS = {"v4_events_only": "4.16.0", "v4_legacy": "4.16.0", "v3": "3.225.4"}

HEALTH = "/api/public/health"
V1_DAILY = "/api/public/metrics/daily"
V1_METRICS = "/api/public/metrics"
V2_METRICS = "/api/public/v2/metrics"

# RateLimitService.ts getPlanBasedRateLimitConfig, v4.16.0: resource -> (points, window seconds)
DAILY_LEGACY, METRICS_V1, METRICS_V2 = "public-api-daily-metrics-legacy", "public-api-metrics", "public-api-v2-metrics"
PLAN_QUOTAS: dict[str, dict[str, tuple[int, int]]] = {
    "self_hosted": {},
    "hobby": {DAILY_LEGACY: (10, 86400), METRICS_V1: (100, 86400), METRICS_V2: (100, 86400)},
    "core": {DAILY_LEGACY: (200, 86400), METRICS_V1: (2000, 86400), METRICS_V2: (100, 3600)},
    "pro": {DAILY_LEGACY: (200, 86400), METRICS_V1: (2000, 86400), METRICS_V2: (500, 3600)},
}
PLANS = tuple(PLAN_QUOTAS)
RESOURCE_OF = {V1_DAILY: DAILY_LEGACY, V1_METRICS: METRICS_V1, V2_METRICS: METRICS_V2}

EVENTS_ONLY_404 = (
    "This endpoint is not available on deployments running in Langfuse v4 events_only mode. "
    "Learn more about Langfuse v4 at: https://langfuse.com/docs/v4"
)
V2_404 = "The metrics v2 API is only available in a Langfuse v4 write mode. Learn more at: https://langfuse.com/docs/v4"
DEPRECATION = {
    "message": "On Langfuse Cloud, Langfuse v3 is deprecated and this endpoint will be removed on November 16, "
    "2026. Use GET /api/public/v2/metrics?query=<urlencoded json query> instead.",
    "replacement": "GET /api/public/v2/metrics?query=<urlencoded json query>",
    "docsUrl": "https://langfuse.com/docs/metrics/features/metrics-api",
    "sunsetAt": "2026-11-16",
}
NEXT_404_PAGE = b"<!DOCTYPE html><html><head><title>404: This page could not be found</title></head></html>"

# dataModel.ts: the observations view (v1 table and v2 events) and the aggregations (query/types.ts)
AGGREGATIONS = ("sum", "avg", "count", "max", "min", "p50", "p75", "p90", "p95", "p99", "histogram", "uniq")
OBS_MEASURES = (
    "count", "traceId", "uniqueUserIds", "uniqueSessionIds", "latency", "streamingLatency", "inputTokens",
    "outputTokens", "totalTokens", "outputTokensPerSecond", "tokensPerSecond", "inputCost", "outputCost",
    "totalCost", "timeToFirstToken", "countScores",
)  # fmt: skip
OBS_DIMENSIONS = (
    "id", "traceId", "environment", "parentObservationId", "type", "name", "level", "version", "userId",
    "sessionId", "tags", "release", "traceName", "traceRelease", "traceVersion", "providedModelName",
    "promptName", "promptVersion",
)  # fmt: skip
TRACE_MEASURES = ("count", "observationsCount", "latency", "totalTokens", "totalCost", "uniqueUserIds")
V1_VIEWS = ("traces", "observations", "scores-numeric", "scores-categorical", "scores-boolean")
V2_VIEWS = ("observations", "scores-numeric", "scores-categorical", "scores-boolean")


@dataclass(frozen=True)
class _Usage:
    model: str
    input: int
    output: int
    observations: int
    traces: int
    cost: float


# today's usage; the days before scale down (v1 daily answers three days)
MODELS = (
    _Usage("gpt-4o-mini", input=20000, output=5000, observations=300, traces=100, cost=0.75),
    _Usage("llama-3-8b", input=8000, output=2000, observations=180, traces=20, cost=0.5),
)
SPANS_PER_DAY = 200  # observations without a model (spans, events), per scale unit
LATENCY_MS = {"p50": 850.0, "p75": 1300.0, "p90": 1900.0, "p95": 2400.0, "p99": 4100.0, "avg": 1000.0}


class QueryError(ValueError):
    """A query the real API refuses with 400."""


class SimulatedLangfuse:
    def __init__(
        self,
        public_key: str = "pk-lf-simulated",
        secret_key: str = "sk-lf-simulated",  # noqa: S107
        mode: str = "normal",
        retry_after: int = 2,
        slow_seconds: float = 5.0,
        *,
        server: str = "v4_events_only",
        plan: str = "self_hosted",
        extra_models: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        if server not in SERVERS:
            raise ValueError(f"unknown server {server!r} (known: {', '.join(SERVERS)})")
        if plan not in PLAN_QUOTAS:
            raise ValueError(f"unknown plan {plan!r} (known: {', '.join(PLANS)})")
        self.public_key = public_key
        self.secret_key = secret_key
        self.mode = mode
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.server = server
        self.plan = plan
        self.extra_models = extra_models  # more models in v2 answers (row-limit tests)
        self._clock = clock
        self.calls: Counter[tuple[str, int]] = Counter()
        self.lock = threading.Lock()
        # resource -> (window start, points used)
        self._windows: dict[str, tuple[float, int]] = {}

    @property
    def version(self) -> str:
        return VERSIONS[self.server]

    def count(self, path: str, status: int) -> None:
        with self.lock:
            self.calls[(path, status)] += 1

    def total_calls(self, path: str | None = None, status: int | None = None) -> int:
        with self.lock:
            return sum(
                n for (p, s), n in self.calls.items() if (path is None or p == path) and (status is None or s == status)
            )

    def authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode()
        return header == f"Basic {expected}"

    def consume(self, resource: str) -> dict[str, Any] | None:
        """Spend one point of ``resource``; the 429 details when the window's points are gone."""
        quota = PLAN_QUOTAS[self.plan].get(resource)
        if quota is None:
            return None
        points, window = quota
        now = self._clock()
        with self.lock:
            start, used = self._windows.get(resource, (now, 0))
            if now >= start + window:
                start, used = now, 0
            used += 1
            self._windows[resource] = (start, used)
        if used <= points:
            return None
        ms_before_next = (start + window - now) * 1000
        return {
            "retryAfterSeconds": math.ceil(ms_before_next / 1000),
            "limit": points,
            "remaining": 0,
            "resetAt": dt.datetime.fromtimestamp(start + window, dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        }

    # -- answers ---------------------------------------------------------------------------------
    def daily(self) -> dict[str, Any]:
        today = dt.datetime.fromtimestamp(self._clock(), dt.timezone.utc).date()
        days = []
        for i in range(3):
            scale = 3 - i
            usage: list[dict[str, Any]] = [
                {
                    "model": m.model,
                    "inputUsage": m.input * scale,
                    "outputUsage": m.output * scale,
                    "totalUsage": (m.input + m.output) * scale,
                    "countObservations": m.observations * scale,
                    "countTraces": m.traces * scale,
                    "totalCost": m.cost * scale,
                }
                for m in MODELS
            ]
            days.append(
                {
                    "date": (today - dt.timedelta(days=i)).isoformat(),
                    "countTraces": sum(m.traces for m in MODELS) * scale,
                    "countObservations": (sum(m.observations for m in MODELS) + SPANS_PER_DAY) * scale,
                    "totalCost": sum(m.cost for m in MODELS) * scale,
                    "usage": usage,
                }
            )
        body: dict[str, Any] = {"data": days, "meta": {"page": 1, "limit": 50, "totalItems": 3, "totalPages": 1}}
        if self.plan != "self_hosted":
            body["_deprecation"] = DEPRECATION
        return body

    def _model_rows(self) -> list[dict[str, Any]]:
        """Today's observations per model (scale 3, as the newest day of ``daily``), spans without a model."""
        rows: list[dict[str, Any]] = [
            {
                "providedModelName": m.model,
                "inputTokens": m.input * 3,
                "outputTokens": m.output * 3,
                "totalTokens": (m.input + m.output) * 3,
                "totalCost": m.cost * 3,
                "count": m.observations * 3,
                "traceId": m.traces * 3,
            }
            for m in MODELS
        ]
        rows += [
            {
                "providedModelName": f"sim-model-{i:04d}",
                "inputTokens": 10,
                "outputTokens": 1,
                "totalTokens": 11,
                "totalCost": 0.0001,
                "count": 1,
                "traceId": 1,
            }
            for i in range(self.extra_models)
        ]
        rows.append(
            {
                "providedModelName": None,
                "inputTokens": None,
                "outputTokens": None,
                "totalTokens": None,
                "totalCost": None,
                "count": SPANS_PER_DAY * 3,
                "traceId": 0,
            }
        )
        return rows

    def metrics(self, query: dict[str, Any], version: str) -> list[dict[str, Any]]:
        """Validate a metrics query as Langfuse does and answer its rows."""
        views = V2_VIEWS if version == "v2" else V1_VIEWS
        view = query.get("view")
        if view not in views:
            raise QueryError(f"Invalid option: expected one of {'|'.join(views)} (view {view!r})")
        metrics = query.get("metrics")
        if not isinstance(metrics, list) or not metrics:
            raise QueryError("metrics: expected a non-empty array")
        dims = query.get("dimensions", [])
        if not isinstance(dims, list):
            raise QueryError("dimensions: expected an array")
        measures = TRACE_MEASURES if view == "traces" else OBS_MEASURES
        for m in metrics:
            if not isinstance(m, dict) or m.get("aggregation") not in AGGREGATIONS:
                raise QueryError(f"metrics: invalid aggregation in {m!r}")
            if m.get("measure") not in measures:
                raise QueryError(f"Invalid measure '{m.get('measure')}' for view '{view}'")
        fields = []
        for d in dims:
            if not isinstance(d, dict) or d.get("field") not in OBS_DIMENSIONS:
                raise QueryError(f"Invalid dimension {d!r} for view '{view}'")
            fields.append(d["field"])
        try:
            frm = dt.datetime.fromisoformat(str(query["fromTimestamp"]).replace("Z", "+00:00"))
            to = dt.datetime.fromisoformat(str(query["toTimestamp"]).replace("Z", "+00:00"))
        except (KeyError, ValueError) as exc:
            raise QueryError(f"fromTimestamp/toTimestamp: invalid ISO datetime ({exc})") from None
        if frm >= to:
            raise QueryError("fromTimestamp must be before toTimestamp")
        config = query.get("config") or {}
        limit = config.get("row_limit", 100) if isinstance(config, dict) else 100
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise QueryError("config.row_limit: expected an integer from 1 to 1000")

        def cell(measure: str, agg: str, group: list[dict[str, Any]]) -> Any:
            if measure == "latency":
                return LATENCY_MS.get(agg, 0.0)
            values = [r[measure] for r in group if r.get(measure) is not None]
            if measure == "count" and agg == "count":
                return str(sum(values))
            if not values:
                return None
            total = sum(values)
            if isinstance(total, int):
                return str(total)  # 64-bit integers arrive quoted
            return round(total, 6)

        if "level" in fields:
            levels = {"DEFAULT": 400, "WARNING": 13, "ERROR": 7}
            return [
                {"level": lvl, **{f"{m['aggregation']}_{m['measure']}": str(n) for m in metrics}}
                for lvl, n in levels.items()
            ][:limit]
        source = self._model_rows()
        if "providedModelName" in fields:
            groups = [[r] for r in source]
        else:
            groups = [source]
        out = []
        for g in groups:
            row = {f: g[0].get(f) for f in fields}
            for m in metrics:
                row[f"{m['aggregation']}_{m['measure']}"] = cell(m["measure"], m["aggregation"], g)
            out.append(row)
        return out[:limit]


class _Handler(BaseHTTPRequestHandler):
    server: SimulatedLangfuseServer
    protocol_version = "HTTP/1.1"
    server_version = "simulated-langfuse"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self, code: int, body: Any, headers: dict[str, str] | None = None, content_type: str = "application/json"
    ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.server.sim.count(self.path.split("?", 1)[0], code)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        sim = self.server.sim
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        if path == HEALTH:
            if sim.mode == "slow":
                time.sleep(sim.slow_seconds)
            if sim.mode == "server_error":
                self._send(503, {"status": "Database not available", "version": sim.version})
            else:
                self._send(200, {"status": "OK", "version": sim.version})
            return
        if path == V2_METRICS and sim.server == "v3":
            self._send(404, NEXT_404_PAGE, content_type="text/html; charset=utf-8")
            return
        if path not in (V1_DAILY, V1_METRICS, V2_METRICS):
            self._send(404, {"message": "Not Found", "error": "LangfuseNotFoundError"})
            return
        if path != V2_METRICS and sim.server == "v4_events_only":
            self._send(404, {"message": EVENTS_ONLY_404})  # before auth, costs no quota
            return
        if not sim.authorized(self.headers.get("Authorization")):
            self._send(
                401,
                {
                    "message": "Invalid credentials. Confirm that you've configured the correct host.",
                    "error": "UnauthorizedError",
                },
            )
            return
        limited = sim.consume(RESOURCE_OF[path])
        if limited is not None:
            self._send(
                429,
                {"message": "Rate limit exceeded", "code": "rate_limited", "details": limited},
                {
                    "Retry-After": str(limited["retryAfterSeconds"]),
                    "X-RateLimit-Limit": str(limited["limit"]),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": limited["resetAt"],
                },
            )
            return
        if sim.mode == "slow":
            time.sleep(sim.slow_seconds)
        if sim.mode == "rate_limited":
            self._send(
                429, {"message": "Rate limit exceeded", "code": "rate_limited"}, {"Retry-After": str(sim.retry_after)}
            )
            return
        if sim.mode == "server_error":
            self._send(500, {"message": "Internal Server Error", "error": "An unknown error occurred"})
            return
        if sim.mode == "malformed":
            self._send(200, b"<html>not json", content_type="text/html")
            return
        if path == V1_DAILY:
            self._send(200, sim.daily())
            return
        if path == V2_METRICS and sim.server == "v4_legacy":  # after auth and the rate limit, as upstream
            self._send(404, {"message": V2_404, "error": "LangfuseNotFoundError"})
            return
        qs = urllib.parse.parse_qs(parsed.query)
        try:
            query = json.loads(qs["query"][0])
            if not isinstance(query, dict):
                raise QueryError("query: expected an object")
            rows = sim.metrics(query, "v2" if path == V2_METRICS else "v1")
        except KeyError:
            self._send(400, {"message": "Invalid request data", "error": [{"path": ["query"], "message": "Required"}]})
            return
        except json.JSONDecodeError:
            self._send(400, {"message": "Invalid JSON in query parameter", "error": "InvalidRequestError"})
            return
        except QueryError as exc:
            self._send(400, {"message": str(exc), "error": "InvalidRequestError"})
            return
        body: dict[str, Any] = {"data": rows}
        if path == V1_METRICS and sim.plan != "self_hosted":
            body["_deprecation"] = DEPRECATION
        self._send(200, body)


class SimulatedLangfuseServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimulatedLangfuse) -> None:
        self.sim = sim
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

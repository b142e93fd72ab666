"""Langfuse exporter: per-project usage, cost, latency and errors from the Langfuse public API.

Langfuse Cloud allows only 100-2,000 metrics calls a day, so every project is polled rarely
(``poll_interval``, default 300 s: 4 calls per poll, 1,152 a day with both queries on), the result is
cached and served by every collection cycle, 429 (honouring ``Retry-After``) and 5xx/timeouts back
off exponentially up to ``max_backoff``, and every API call is counted by endpoint and status in
``llm_monitor_langfuse_api_requests_total``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_monitor_exporters.core import httpclient
from llm_monitor_exporters.core.collector import Collector, Snapshot
from llm_monitor_exporters.core.config import ConfigError, opt
from llm_monitor_exporters.core.credentials import Secret, load_secret

log = logging.getLogger(__name__)

QUANTILES = (("p50", "p50"), ("p95", "p95"), ("p99", "p99"))
ENDPOINTS = ("health", "metrics_daily", "metrics_latency", "metrics_errors")


@dataclass
class LangfuseProject:
    name: str = opt(None, help="project name (the 'project' label)")
    host: str = opt("https://cloud.langfuse.com", help="Langfuse base URL")
    public_key: str = opt(None, help="project public key (pk-lf-...)")
    secret_key_file: str = opt("", allow_empty=True, help="file holding the secret key")
    secret_key_env: str = opt("", allow_empty=True, help="environment variable holding the secret key")


@dataclass
class LangfuseConfig:
    projects: list[LangfuseProject] = opt(factory=list, help="projects to poll")
    poll_interval: float = opt(300.0, minimum=1, help="seconds between polls of one project")
    timeout: float = opt(10.0, minimum=0.1, help="seconds per API request")
    min_backoff: float = opt(30.0, minimum=0.1, help="first back-off after a 5xx/timeout (doubles each time)")
    max_backoff: float = opt(3600.0, minimum=1, help="longest back-off")
    latency_view: str = opt("traces", choices=("traces", "observations"), help="view of the latency query")
    window: float = opt(3600.0, minimum=60, help="seconds of data the latency and error queries cover")
    latency_query: bool = opt(True, help="query latency percentiles (one metrics call per poll)")
    error_query: bool = opt(True, help="count ERROR-level observations (one metrics call per poll)")


@dataclass
class ProjectState:
    name: str
    base: str
    auth: str
    healthy: bool = False
    polled: bool = False
    last_success: float = 0.0  # wall clock
    next_due: float = 0.0  # monotonic
    backoff: float = 0.0
    last_error: str = ""
    daily: dict[str, Any] | None = None
    latency: dict[str, float] = field(default_factory=dict)
    errors: float | None = None
    calls: dict[tuple[str, str], int] = field(default_factory=dict)


class _Stop(Exception):
    """Stop this poll (rate limited / server failing): back off."""


class LangfuseCollector(Collector):
    name = "langfuse"
    error_kinds = httpclient.ERROR_KINDS

    def __init__(
        self, config: LangfuseConfig, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        if not config.projects:
            raise ConfigError("langfuse.projects: configure at least one project")
        self.config = config
        self._clock, self._wall = clock, wall
        self.projects: list[ProjectState] = []
        seen: set[str] = set()
        for i, p in enumerate(config.projects):
            where = f"langfuse.projects[{i}]"
            if not p.name or not p.public_key:
                raise ConfigError(f"{where}: 'name' and 'public_key' are required")
            if p.name in seen:
                raise ConfigError(f"{where}.name: duplicate project {p.name!r}")
            seen.add(p.name)
            if not p.host.startswith(("http://", "https://")):
                raise ConfigError(f"{where}.host: expected an http(s) URL, got {p.host!r}")
            secret = load_secret(where, file=p.secret_key_file or None, env=p.secret_key_env or None)
            if not isinstance(secret, Secret):  # pragma: no cover - load_secret(required=True) raises
                raise ConfigError(f"{where}: no secret key")
            self.projects.append(
                ProjectState(p.name, p.host.rstrip("/"), httpclient.basic_auth(p.public_key, secret.reveal()))
            )
        self.upstream_names = tuple(f"langfuse_{p.name}" for p in self.projects)

    # -- polling -------------------------------------------------------------------------------------
    def _call(
        self, st: ProjectState, endpoint: str, path: str, errors: dict[str, int], params: dict[str, str] | None = None
    ) -> Any:
        url = st.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        res, data = httpclient.get_json(
            url, timeout=self.config.timeout, headers={"Authorization": st.auth}, expect=dict
        )
        status = str(res.status) if res.status else res.kind
        st.calls[(endpoint, status)] = st.calls.get((endpoint, status), 0) + 1
        if res.ok:
            return data
        errors[res.kind] = errors.get(res.kind, 0) + 1
        st.last_error = f"{endpoint}: {res.kind} {res.detail}".strip()
        if res.kind == "rate_limited":
            wait = res.retry_after(self._wall())
            st.backoff = max(wait or 0.0, self.config.min_backoff if st.backoff == 0 else st.backoff * 2)
            raise _Stop
        if res.kind in ("http_5xx", "timeout", "unreachable"):
            st.backoff = self.config.min_backoff if st.backoff == 0 else st.backoff * 2
            raise _Stop
        return None  # auth / 4xx / malformed: this endpoint failed, keep polling the others

    def poll(self, st: ProjectState, errors: dict[str, int]) -> None:
        c = self.config
        now_wall = self._wall()
        ok = True
        try:
            health = self._call(st, "health", "/api/public/health", errors)
            st.healthy = health is not None
            today = dt.datetime.fromtimestamp(now_wall, dt.timezone.utc).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            daily = self._call(
                st,
                "metrics_daily",
                "/api/public/metrics/daily",
                errors,
                {"fromTimestamp": today.isoformat().replace("+00:00", "Z"), "limit": "1"},
            )
            st.healthy = st.healthy and daily is not None
            parsed_daily = parse_daily(daily) if daily is not None else None
            if parsed_daily is not None:
                st.daily = parsed_daily
            elif daily is not None:
                errors["malformed"] = errors.get("malformed", 0) + 1
            ok = ok and parsed_daily is not None
            frm = dt.datetime.fromtimestamp(now_wall - c.window, dt.timezone.utc).isoformat().replace("+00:00", "Z")
            to = dt.datetime.fromtimestamp(now_wall, dt.timezone.utc).isoformat().replace("+00:00", "Z")
            if c.latency_query:
                q = {
                    "view": c.latency_view,
                    "dimensions": [],
                    "filters": [],
                    "fromTimestamp": frm,
                    "toTimestamp": to,
                    "metrics": [{"measure": "latency", "aggregation": a} for a, _ in QUANTILES],
                }
                data = self._call(st, "metrics_latency", "/api/public/metrics", errors, {"query": json.dumps(q)})
                lat = parse_latency(data) if data is not None else None
                if lat is not None:
                    st.latency = lat
                ok = ok and lat is not None
            if c.error_query:
                q = {
                    "view": "observations",
                    "dimensions": [{"field": "level"}],
                    "filters": [],
                    "metrics": [{"measure": "count", "aggregation": "count"}],
                    "fromTimestamp": frm,
                    "toTimestamp": to,
                }
                data = self._call(st, "metrics_errors", "/api/public/metrics", errors, {"query": json.dumps(q)})
                count = parse_error_count(data) if data is not None else None
                if count is not None:
                    st.errors = count
                ok = ok and count is not None
        except _Stop:
            st.backoff = min(st.backoff, c.max_backoff)
            st.next_due = self._clock() + st.backoff
            st.healthy = False
            log.warning("Langfuse project %s: %s; backing off %.0fs", st.name, st.last_error, st.backoff)
            return
        st.polled = True
        st.backoff = 0.0
        st.next_due = self._clock() + c.poll_interval
        if ok:
            st.last_success = self._wall()
            st.last_error = ""
        else:
            log.warning("Langfuse project %s: partial poll (%s)", st.name, st.last_error)

    def collect_snapshot(self) -> Snapshot:
        errors: dict[str, int] = {}
        for st in self.projects:
            if self._clock() >= st.next_due:
                self.poll(st, errors)
        return Snapshot(
            families=self._families(),
            upstreams={f"langfuse_{st.name}": st.healthy for st in self.projects},
            errors=errors,
        )

    # -- rendering -----------------------------------------------------------------------------------
    def _families(self) -> list[Metric]:
        p = "llm_monitor_langfuse_"
        lp = ["project"]
        up = GaugeMetricFamily(
            p + "up",
            "Whether the project's Langfuse answered the last poll "
            "(health, and metrics/daily accepted the project's keys).",
            labels=lp,
        )
        traces = GaugeMetricFamily(p + "daily_traces", "Traces on the current UTC day (metrics/daily).", labels=lp)
        obs = GaugeMetricFamily(p + "daily_observations", "Observations on the current UTC day.", labels=lp)
        cost = GaugeMetricFamily(p + "daily_cost_usd", "Total model cost on the current UTC day (USD).", labels=lp)
        tokens = GaugeMetricFamily(
            p + "daily_model_tokens",
            "Tokens on the current UTC day by model and type (input, output, total).",
            labels=[*lp, "model", "type"],
        )
        mcost = GaugeMetricFamily(
            p + "daily_model_cost_usd", "Model cost on the current UTC day (USD) by model.", labels=[*lp, "model"]
        )
        latency = GaugeMetricFamily(
            p + "latency_seconds",
            "Latency percentiles over the query window (metrics API).",
            labels=[*lp, "view", "percentile"],
        )
        errs = GaugeMetricFamily(p + "error_observations", "ERROR-level observations over the query window.", labels=lp)
        calls = CounterMetricFamily(
            p + "api_requests",
            "Langfuse API calls made by this exporter, by endpoint and HTTP status (or error kind).",
            labels=[*lp, "endpoint", "status"],
        )
        age = GaugeMetricFamily(
            p + "data_age_seconds", "Seconds since the last complete successful poll (-1: never).", labels=lp
        )
        backoff = GaugeMetricFamily(
            p + "backoff_seconds", "Current back-off before the next poll (0: none).", labels=lp
        )
        now = self._wall()
        for st in self.projects:
            lbl = [st.name]
            up.add_metric(lbl, 1 if st.healthy else 0)
            if st.daily is not None:
                traces.add_metric(lbl, st.daily["traces"])
                obs.add_metric(lbl, st.daily["observations"])
                cost.add_metric(lbl, st.daily["cost"])
                for model, u in sorted(st.daily["models"].items()):
                    for kind in ("input", "output", "total"):
                        tokens.add_metric([st.name, model, kind], u[kind])
                    mcost.add_metric([st.name, model], u["cost"])
            for q, value in sorted(st.latency.items()):
                latency.add_metric([st.name, self.config.latency_view, q], value)
            if st.errors is not None:
                errs.add_metric(lbl, st.errors)
            for (endpoint, status), n in sorted(st.calls.items()):
                calls.add_metric([st.name, endpoint, status], n)
            age.add_metric(lbl, now - st.last_success if st.last_success else -1)
            backoff.add_metric(lbl, max(0.0, st.next_due - self._clock()) if st.backoff else 0.0)
        return [up, traces, obs, cost, tokens, mcost, latency, errs, calls, age, backoff]


def _num(value: object) -> float:
    if isinstance(value, bool):
        raise TypeError("boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return float(value)
    raise TypeError(type(value).__name__)


def parse_daily(data: Any) -> dict[str, Any] | None:
    """metrics/daily body -> today's (newest) totals and per-model usage; None if not that shape."""
    try:
        days = data["data"]
        if not isinstance(days, list):
            return None
        if not days:
            return {"traces": 0.0, "observations": 0.0, "cost": 0.0, "models": {}}
        day = max(days, key=lambda d: str(d["date"]))
        models: dict[str, dict[str, float]] = {}
        for u in day.get("usage") or []:
            name = str(u.get("model") or "unknown")
            m = models.setdefault(name, {"input": 0.0, "output": 0.0, "total": 0.0, "cost": 0.0})
            m["input"] += _num(u.get("inputUsage", 0))
            m["output"] += _num(u.get("outputUsage", 0))
            m["total"] += _num(u.get("totalUsage", 0))
            m["cost"] += _num(u.get("totalCost", 0) or 0)
        return {
            "traces": _num(day["countTraces"]),
            "observations": _num(day["countObservations"]),
            "cost": _num(day.get("totalCost", 0) or 0),
            "models": models,
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def parse_latency(data: Any) -> dict[str, float] | None:
    """Metrics query rows (``p95_latency`` in ms) -> {quantile: seconds}; None if not that shape."""
    try:
        rows = data["data"]
        if not isinstance(rows, list):
            return None
        if not rows:
            return {}
        out: dict[str, float] = {}
        for agg, q in QUANTILES:
            value = rows[0].get(f"{agg}_latency")
            if value is not None:
                out[q] = _num(value) / 1000.0
        return out
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None


def parse_error_count(data: Any) -> float | None:
    """Rows grouped by ``level`` with ``count_count`` -> count of the ERROR row (0 when absent)."""
    try:
        rows = data["data"]
        if not isinstance(rows, list):
            return None
        return sum(_num(r.get("count_count", 0)) for r in rows if r.get("level") == "ERROR")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None

"""The Langfuse public API calls the exporter makes, and the parsers of their answers.

Two generations (checked against Langfuse web v4.16.0 and v3.225):

- **v2** ``GET /api/public/v2/metrics?query=<json>`` (Langfuse v4 with a v4 write mode; views
  ``observations`` and ``scores-*``, no ``traces``; rows keyed ``<aggregation>_<measure>`` and by
  dimension alias; ``config.row_limit`` default 100, at most 1,000, no paging).
- **v1** ``GET /api/public/metrics/daily`` and ``GET /api/public/metrics?query=<json>`` (Langfuse v3 and
  v4 in ``legacy``/``dual`` write mode; deprecated, gone from Langfuse Cloud since 2026-11-16; both answer
  404 in v4 ``events_only`` mode).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from llm_monitor_exporters.langfuse.quota import DAILY_LEGACY, METRICS_V1, METRICS_V2

HEALTH_PATH = "/api/public/health"
V1_DAILY_PATH = "/api/public/metrics/daily"
V1_METRICS_PATH = "/api/public/metrics"
V2_METRICS_PATH = "/api/public/v2/metrics"
V2_ROW_LIMIT = 1000  # the API's maximum; it has no offset, so more models than this are cut (reported)
PERCENTILES = ("p50", "p95", "p99")
TOKEN_KINDS = (("input", "inputTokens"), ("output", "outputTokens"), ("total", "totalTokens"))


@dataclass(frozen=True)
class Call:
    """One API call: the ``endpoint`` label, the quota resource it spends, path and query string."""

    endpoint: str
    resource: str | None
    path: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class DailyTotals:
    traces: float = 0.0
    observations: float = 0.0
    cost: float = 0.0
    # model -> {"input", "output", "total", "cost"}
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    truncated: bool = False


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def day_start(ts: float) -> float:
    d = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _query(path: str, endpoint: str, resource: str, q: dict[str, Any]) -> Call:
    return Call(endpoint, resource, path, {"query": json.dumps(q, separators=(",", ":"))})


def _metric(measure: str, aggregation: str) -> dict[str, str]:
    return {"measure": measure, "aggregation": aggregation}


# -- v2 ------------------------------------------------------------------------------------------
def v2_totals(now: float) -> Call:
    q = {
        "view": "observations",
        "dimensions": [],
        "metrics": [_metric("count", "count"), _metric("traceId", "uniq"), _metric("totalCost", "sum")],
        "filters": [],
        "fromTimestamp": iso(day_start(now)),
        "toTimestamp": iso(now),
    }
    return _query(V2_METRICS_PATH, "metrics_v2_totals", METRICS_V2, q)


def v2_models(now: float) -> Call:
    q = {
        "view": "observations",
        "dimensions": [{"field": "providedModelName"}],
        "metrics": [_metric(m, "sum") for _, m in TOKEN_KINDS] + [_metric("totalCost", "sum")],
        "filters": [],
        "fromTimestamp": iso(day_start(now)),
        "toTimestamp": iso(now),
        "orderBy": [{"field": "sum_totalCost", "direction": "desc"}],
        "config": {"row_limit": V2_ROW_LIMIT},
    }
    return _query(V2_METRICS_PATH, "metrics_v2_models", METRICS_V2, q)


def _window_query(version: str, endpoint: str, q: dict[str, Any]) -> Call:
    """A query over the last window, on the v2 API or the v1 one (endpoint label metrics_v2_<x> / metrics_<x>)."""
    if version == "v2":
        return _query(V2_METRICS_PATH, f"metrics_v2_{endpoint}", METRICS_V2, q)
    return _query(V1_METRICS_PATH, f"metrics_{endpoint}", METRICS_V1, q)


def _window(now: float, window: float) -> dict[str, str]:
    return {"fromTimestamp": iso(now - window), "toTimestamp": iso(now)}


def latency_query(version: str, view: str, now: float, window: float) -> Call:
    metrics = [_metric("latency", p) for p in PERCENTILES]
    q = {"view": view, "dimensions": [], "metrics": metrics, "filters": [], **_window(now, window)}
    return _window_query(version, "latency", q)


def errors_query(version: str, now: float, window: float) -> Call:
    q = {
        "view": "observations",
        "dimensions": [{"field": "level"}],
        "metrics": [_metric("count", "count")],
        "filters": [],
        **_window(now, window),
    }
    return _window_query(version, "errors", q)


# -- v1 ------------------------------------------------------------------------------------------
def v1_daily(now: float) -> Call:
    return Call("metrics_daily", DAILY_LEGACY, V1_DAILY_PATH, {"fromTimestamp": iso(day_start(now)), "limit": "1"})


def calls_per_poll(version: str, latency: bool, errors: bool) -> dict[str, int]:
    """Quota resource -> calls one poll spends (health is not rate-limited)."""
    if version == "v2":
        return {METRICS_V2: 2 + int(latency) + int(errors)}
    return {DAILY_LEGACY: 1, METRICS_V1: int(latency) + int(errors)}


# -- parsers ---------------------------------------------------------------------------------------
def num(value: object) -> float:
    """A number as Langfuse sends it: JSON number, numeric string, or null (0)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise TypeError("boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return float(value)
    raise TypeError(type(value).__name__)


def _rows(data: Any) -> list[dict[str, Any]] | None:
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None
    return rows


def parse_v1_daily(data: Any) -> DailyTotals | None:
    """metrics/daily body -> today's (newest) totals and per-model usage; None if not that shape."""
    days = _rows(data)
    if days is None:
        return None
    if not days:
        return DailyTotals()
    try:
        day = max(days, key=lambda d: str(d["date"]))
        out = DailyTotals(num(day["countTraces"]), num(day["countObservations"]), num(day.get("totalCost")))
        for u in day.get("usage") or []:
            m = out.models.setdefault(
                str(u.get("model") or "unknown"), dict.fromkeys(("input", "output", "total", "cost"), 0.0)
            )
            m["input"] += num(u.get("inputUsage"))
            m["output"] += num(u.get("outputUsage"))
            m["total"] += num(u.get("totalUsage"))
            m["cost"] += num(u.get("totalCost"))
        return out
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def parse_v2_daily(totals: Any, models: Any) -> DailyTotals | None:
    """The v2 totals row and per-model rows -> today's totals; None if either is not that shape."""
    trows, mrows = _rows(totals), _rows(models)
    if trows is None or mrows is None or len(trows) > 1:
        return None
    try:
        row = trows[0] if trows else {}
        out = DailyTotals(num(row.get("uniq_traceId")), num(row.get("count_count")), num(row.get("sum_totalCost")))
        for r in mrows:
            if "providedModelName" not in r:
                return None
            usage = {kind: num(r.get(f"sum_{m}")) for kind, m in TOKEN_KINDS}
            usage["cost"] = num(r.get("sum_totalCost"))
            name = r["providedModelName"]
            if not name and not any(usage.values()):
                continue  # spans, events: observations without a model
            m = out.models.setdefault(str(name or "unknown"), dict.fromkeys(usage, 0.0))
            for k, v in usage.items():
                m[k] += v
        out.truncated = len(mrows) >= V2_ROW_LIMIT
        return out
    except (TypeError, ValueError, AttributeError):
        return None


def parse_latency(data: Any) -> dict[str, float] | None:
    """Rows with ``p95_latency`` (milliseconds) -> {percentile: seconds}; None if not that shape."""
    rows = _rows(data)
    if rows is None:
        return None
    if not rows:
        return {}
    try:
        return {
            p: num(rows[0][f"{p}_latency"]) / 1000.0 for p in PERCENTILES if rows[0].get(f"{p}_latency") is not None
        }
    except (TypeError, ValueError):
        return None


def parse_error_count(data: Any) -> float | None:
    """Rows grouped by ``level`` with ``count_count`` -> count of the ERROR row (0 when absent)."""
    rows = _rows(data)
    if rows is None:
        return None
    try:
        return sum(num(r.get("count_count")) for r in rows if r.get("level") == "ERROR")
    except (TypeError, ValueError):
        return None


def parse_health(data: Any) -> str | None:
    """Health body -> the server's version ('' when it does not say); None if not that shape."""
    if not isinstance(data, dict) or "status" not in data:
        return None
    version = data.get("version")
    return version if isinstance(version, str) else ""

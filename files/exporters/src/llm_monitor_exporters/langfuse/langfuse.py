"""Langfuse exporter: per-project usage, cost, latency and errors from the Langfuse public API.

The metrics API is chosen per project (``api: auto``): v2 (``/api/public/v2/metrics``, Langfuse v4) where
the server has it, else v1 (``metrics/daily`` + ``metrics``, older self-hosted servers); which one is in
use is in ``llm_monitor_langfuse_server_info``. Langfuse Cloud allows only a few metrics calls per hour or
day by plan and organisation (quota.py), so the poll interval is stretched until every project of an
organisation fits in ``budget_share`` of each quota, a call budget per quota window is kept (and
exported) and never exceeded, results are cached between polls, 429 (honouring ``Retry-After``) and
5xx/timeouts back off exponentially up to ``max_backoff``, and every call is counted by endpoint and
status in ``llm_monitor_langfuse_api_requests_total``.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_monitor_exporters.core import httpclient
from llm_monitor_exporters.core.collector import Collector, Snapshot
from llm_monitor_exporters.core.config import ConfigError, opt
from llm_monitor_exporters.core.credentials import Secret, load_secret
from llm_monitor_exporters.langfuse import api
from llm_monitor_exporters.langfuse.quota import PLANS, RESOURCES, CallBudget, budget_for, interval_for, resolve_plan

log = logging.getLogger(__name__)

API_CHOICES = ("auto", "v2", "v1")


@dataclass
class LangfuseProject:
    name: str = opt(None, help="project name (the 'project' label)")
    host: str = opt("https://cloud.langfuse.com", help="Langfuse base URL")
    public_key: str = opt(None, help="project public key (pk-lf-...)")
    secret_key_file: str = opt("", allow_empty=True, help="file holding the secret key")
    secret_key_env: str = opt("", allow_empty=True, help="environment variable holding the secret key")
    plan: str = opt(
        "auto",
        choices=PLANS,
        help="Langfuse Cloud plan of the project's organisation (its API quotas); auto: hobby on *.langfuse.com, "
        "self_hosted (no quota) elsewhere",
    )
    organization: str = opt(
        "",
        allow_empty=True,
        help="Langfuse organisation (projects of one organisation share its quotas; default: the host)",
    )


@dataclass
class LangfuseConfig:
    projects: list[LangfuseProject] = opt(factory=list, help="projects to poll")
    api: str = opt("auto", choices=API_CHOICES, help="metrics API: auto (v2 where the server has it, else v1), v2, v1")
    poll_interval: float = opt(
        300.0, minimum=1, help="seconds between polls of one project (stretched to fit the plan's API quotas)"
    )
    budget_share: float = opt(
        0.8, minimum=0.05, help="share of each API quota this exporter may spend (others use the rest)"
    )
    redetect_interval: float = opt(
        86400.0, minimum=60, help="seconds before a project on the v1 API is asked again whether it has v2"
    )
    timeout: float = opt(10.0, minimum=0.1, help="seconds per API request")
    min_backoff: float = opt(30.0, minimum=0.1, help="first back-off after a 5xx/timeout (doubles each time)")
    max_backoff: float = opt(3600.0, minimum=1, help="longest back-off")
    latency_view: str = opt(
        "observations", choices=("observations", "traces"), help="view of the latency query (traces: v1 only)"
    )
    window: float = opt(3600.0, minimum=60, help="seconds of data the latency and error queries cover")
    latency_query: bool = opt(True, help="query latency percentiles (one metrics call per poll)")
    error_query: bool = opt(True, help="count ERROR-level observations (one metrics call per poll)")


@dataclass
class ProjectState:
    name: str
    base: str
    auth: str
    plan: str
    organization: str
    metrics_api: str | None = None  # "v2", "v1", "none" (neither answers), None: not known yet
    detected_at: float = 0.0  # monotonic
    version: str = ""
    healthy: bool = False
    last_success: float = 0.0  # wall clock
    next_due: float = 0.0  # monotonic
    backoff: float = 0.0
    last_error: str = ""
    daily: api.DailyTotals | None = None
    latency: dict[str, float] = field(default_factory=dict)
    latency_view: str = ""
    errors: float | None = None
    interval: float = 0.0
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    deferred: int = 0


class _Stop(Exception):
    """Stop this poll (rate limited / server failing): back off."""


class _NotAvailable(Exception):
    """The API generation asked for answers 404 here."""


class LangfuseCollector(Collector):
    name = "langfuse"
    error_kinds = (*httpclient.ERROR_KINDS, "api_unavailable", "budget_exhausted")

    def __init__(
        self, config: LangfuseConfig, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        if not config.projects:
            raise ConfigError("langfuse.projects: configure at least one project")
        if config.budget_share > 1:
            raise ConfigError(f"langfuse.budget_share: at most 1 (the whole quota), got {config.budget_share}")
        if config.api == "v2" and config.latency_view == "traces":
            raise ConfigError("langfuse.latency_view: the v2 metrics API has no 'traces' view (use observations)")
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
            base = p.host.rstrip("/")
            self.projects.append(
                ProjectState(
                    p.name,
                    base,
                    httpclient.basic_auth(p.public_key, secret.reveal()),
                    resolve_plan(p.plan, base),
                    p.organization or urllib.parse.urlsplit(base).netloc,
                )
            )
        # one budget per organisation and quota resource, shared by its projects
        self.budgets: dict[tuple[str, str], CallBudget] = {}
        for st in self.projects:
            for resource in RESOURCES:
                budget = budget_for(st.plan, resource, config.budget_share)
                if budget is not None:
                    self.budgets.setdefault((st.organization, resource), budget)
        self._org_size = Counter(st.organization for st in self.projects)
        for st in self.projects:
            st.interval = self.poll_interval(st)
        self.upstream_names = tuple(f"langfuse_{p.name}" for p in self.projects)

    def poll_interval(self, st: ProjectState) -> float:
        """The configured interval, stretched so that the organisation's polls fit in its quota share."""
        c = self.config
        need = api.calls_per_poll(
            st.metrics_api if st.metrics_api in ("v1", "v2") else "v1", c.latency_query, c.error_query
        )
        if st.metrics_api is None:  # detection may land on either: plan for the costlier
            v2 = api.calls_per_poll("v2", c.latency_query, c.error_query)
            need = {**need, **v2}
        return max(c.poll_interval, interval_for(st.plan, need, c.budget_share, self._org_size[st.organization]))

    # -- calls ---------------------------------------------------------------------------------------
    def _budget(self, st: ProjectState, resource: str | None) -> CallBudget | None:
        return None if resource is None else self.budgets.get((st.organization, resource))

    def _call(self, st: ProjectState, call: api.Call, errors: dict[str, int]) -> Any:
        budget = self._budget(st, call.resource)
        if budget is not None:
            if budget.remaining(self._clock()) <= 0:  # the pre-check makes this rare: another project spent it
                errors["budget_exhausted"] = errors.get("budget_exhausted", 0) + 1
                st.last_error = f"{call.endpoint}: call budget of {call.resource} spent"
                st.deferred += 1
                raise _Stop
            budget.take(self._clock())
        url = st.base + call.path + ("?" + urllib.parse.urlencode(call.params) if call.params else "")
        res, data = httpclient.get_json(
            url, timeout=self.config.timeout, headers={"Authorization": st.auth}, expect=dict
        )
        st.calls[(call.endpoint, str(res.status) if res.status else res.kind)] += 1
        if res.ok:
            return data
        if res.status == 404 and call.path != api.HEALTH_PATH:
            raise _NotAvailable(call.endpoint)
        errors[res.kind] = errors.get(res.kind, 0) + 1
        st.last_error = f"{call.endpoint}: {res.kind} {res.detail}".strip()
        if res.kind == "rate_limited":
            wait = res.retry_after(self._wall())
            st.backoff = max(wait or 0.0, self.config.min_backoff if st.backoff == 0 else st.backoff * 2)
            raise _Stop
        if res.kind in ("http_5xx", "timeout", "unreachable"):
            st.backoff = self.config.min_backoff if st.backoff == 0 else st.backoff * 2
            raise _Stop
        return None  # auth / 4xx / malformed: this endpoint failed, keep polling the others

    def _ready_at(self, st: ProjectState, version: str) -> float:
        """When this poll's calls fit in every budget they spend."""
        now = self._clock()
        c = self.config
        need = api.calls_per_poll(version, c.latency_query, c.error_query)
        return max((b.ready_at(now, need[r]) for r in need if (b := self._budget(st, r)) is not None), default=now)

    # -- polling -------------------------------------------------------------------------------------
    def _poll_v2(self, st: ProjectState, errors: dict[str, int], now: float) -> bool:
        totals = self._call(st, api.v2_totals(now), errors)
        if totals is not None:
            st.metrics_api = "v2"
        models = self._call(st, api.v2_models(now), errors)
        ok = True
        if totals is not None and models is not None:
            daily = api.parse_v2_daily(totals, models)
            if daily is None:
                errors["malformed"] = errors.get("malformed", 0) + 1
                st.last_error = "metrics_v2: unexpected rows"
            else:
                st.daily = daily
                if daily.truncated:
                    log.warning(
                        "Langfuse project %s: more than %d models today; the rest is cut", st.name, api.V2_ROW_LIMIT
                    )
            ok = daily is not None
        else:
            ok = False
        return self._window_queries(st, "v2", "observations", errors, now) and ok

    def _poll_v1(self, st: ProjectState, errors: dict[str, int], now: float) -> bool:
        data = self._call(st, api.v1_daily(now), errors)
        if data is not None:
            st.metrics_api = "v1"
        daily = api.parse_v1_daily(data) if data is not None else None
        if daily is not None:
            st.daily = daily
        elif data is not None:
            errors["malformed"] = errors.get("malformed", 0) + 1
        return self._window_queries(st, "v1", self.config.latency_view, errors, now) and daily is not None

    def _window_queries(self, st: ProjectState, version: str, view: str, errors: dict[str, int], now: float) -> bool:
        c = self.config
        ok = True
        if c.latency_query:
            data = self._call(st, api.latency_query(version, view, now, c.window), errors)
            lat = api.parse_latency(data) if data is not None else None
            if lat is not None:
                st.latency, st.latency_view = lat, view
            ok = lat is not None
        if c.error_query:
            data = self._call(st, api.errors_query(version, now, c.window), errors)
            count = api.parse_error_count(data) if data is not None else None
            if count is not None:
                st.errors = count
            ok = ok and count is not None
        return ok

    def _versions_to_try(self, st: ProjectState) -> list[str]:
        c = self.config
        if c.api != "auto":
            return [c.api]
        if st.metrics_api == "v1" and self._clock() - st.detected_at < c.redetect_interval:
            return ["v1"]
        if st.metrics_api == "v2":
            return ["v2"]
        return ["v2", "v1"]

    def poll(self, st: ProjectState, errors: dict[str, int]) -> None:
        c = self.config
        versions = self._versions_to_try(st)
        ready = self._ready_at(st, versions[0])
        if ready > self._clock():
            st.deferred += 1
            st.next_due = ready
            log.info("Langfuse project %s: call budget spent, next poll in %.0fs", st.name, ready - self._clock())
            return
        now_wall = self._wall()
        ok = False
        try:
            health = self._call(st, api.Call("health", None, api.HEALTH_PATH), errors)
            version = api.parse_health(health) if health is not None else None
            st.healthy = version is not None
            st.version = version or st.version
            for i, v in enumerate(versions):
                try:
                    ok = (self._poll_v2 if v == "v2" else self._poll_v1)(st, errors, now_wall)
                    if len(versions) > 1:
                        st.detected_at = self._clock()
                    break
                except _NotAvailable as exc:
                    log.info("Langfuse project %s: %s answers 404 (API %s not on this server)", st.name, exc, v)
                    if i + 1 < len(versions) and self._ready_at(st, versions[i + 1]) > self._clock():
                        raise _Stop from None  # the fallback's budget is spent: try again later
            else:
                st.metrics_api, st.detected_at = "none", self._clock()
                st.healthy = False
                errors["api_unavailable"] = errors.get("api_unavailable", 0) + 1
                st.last_error = "no metrics API answers (v4 events_only without v2? v1 404 and v2 404)"
            st.healthy = st.healthy and ok
        except _Stop:
            st.backoff = min(st.backoff, c.max_backoff) if st.backoff else 0.0
            st.next_due = max(
                self._clock() + st.backoff,
                self._ready_at(st, st.metrics_api if st.metrics_api in ("v1", "v2") else "v2"),
            )
            st.healthy = False
            log.warning(
                "Langfuse project %s: %s; next try in %.0fs", st.name, st.last_error, st.next_due - self._clock()
            )
            return
        st.backoff = 0.0
        st.interval = self.poll_interval(st)
        st.next_due = self._clock() + st.interval
        if ok:
            st.last_success = self._wall()
            st.last_error = ""
        else:
            st.healthy = False
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
            "Whether the project's Langfuse answered the last poll (health, and a metrics API accepted the keys).",
            labels=lp,
        )
        info = GaugeMetricFamily(
            p + "server_info",
            "The project's Langfuse: version (from health), metrics API in use (v2, v1, none, unknown) and the "
            "plan whose quotas the exporter keeps to; always 1.",
            labels=[*lp, "version", "metrics_api", "plan"],
        )
        traces = GaugeMetricFamily(p + "daily_traces", "Traces on the current UTC day.", labels=lp)
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
        truncated = GaugeMetricFamily(
            p + "daily_models_truncated",
            f"1 when more than {api.V2_ROW_LIMIT} models were used today and the cheapest are missing (v2 row limit).",
            labels=lp,
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
        deferred = CounterMetricFamily(
            p + "polls_deferred", "Polls put off because the call budget of a quota was spent.", labels=lp
        )
        interval = GaugeMetricFamily(
            p + "poll_interval_seconds",
            "Seconds between polls of the project, after fitting the plan's quotas.",
            labels=lp,
        )
        age = GaugeMetricFamily(
            p + "data_age_seconds", "Seconds since the last complete successful poll (-1: never).", labels=lp
        )
        backoff = GaugeMetricFamily(
            p + "backoff_seconds", "Current back-off before the next poll (0: none).", labels=lp
        )
        lb = ["organization", "resource"]
        b_limit = GaugeMetricFamily(
            p + "api_budget_calls",
            "Calls the exporter may make per quota window (its share of the plan quota).",
            labels=lb,
        )
        b_left = GaugeMetricFamily(
            p + "api_budget_remaining_calls", "Calls left in the current quota window.", labels=lb
        )
        b_window = GaugeMetricFamily(p + "api_budget_window_seconds", "Length of the quota window.", labels=lb)
        now, mono = self._wall(), self._clock()
        for st in self.projects:
            lbl = [st.name]
            up.add_metric(lbl, 1 if st.healthy else 0)
            info.add_metric([st.name, st.version, st.metrics_api or "unknown", st.plan], 1)
            if st.daily is not None:
                d = st.daily
                traces.add_metric(lbl, d.traces)
                obs.add_metric(lbl, d.observations)
                cost.add_metric(lbl, d.cost)
                truncated.add_metric(lbl, 1 if d.truncated else 0)
                for model, u in sorted(d.models.items()):
                    for kind, _ in api.TOKEN_KINDS:
                        tokens.add_metric([st.name, model, kind], u[kind])
                    mcost.add_metric([st.name, model], u["cost"])
            for q, value in sorted(st.latency.items()):
                latency.add_metric([st.name, st.latency_view, q], value)
            if st.errors is not None:
                errs.add_metric(lbl, st.errors)
            for (endpoint, status), n in sorted(st.calls.items()):
                calls.add_metric([st.name, endpoint, status], n)
            deferred.add_metric(lbl, st.deferred)
            interval.add_metric(lbl, st.interval)
            age.add_metric(lbl, now - st.last_success if st.last_success else -1)
            backoff.add_metric(lbl, max(0.0, st.next_due - mono) if st.backoff else 0.0)
        for (org, resource), b in sorted(self.budgets.items()):
            b_limit.add_metric([org, resource], b.calls)
            b_left.add_metric([org, resource], b.remaining(mono))
            b_window.add_metric([org, resource], b.window)
        return [
            up, info, traces, obs, cost, tokens, mcost, truncated, latency, errs, calls, deferred, interval, age,
            backoff, b_limit, b_left, b_window,
        ]  # fmt: skip


# the parsers, where the tests and older callers import them from
parse_daily = api.parse_v1_daily
parse_latency = api.parse_latency
parse_error_count = api.parse_error_count

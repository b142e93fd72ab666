"""LiteLLM exporter: proxy liveness/readiness, model catalog, cached deployment health, spend.

What LiteLLM's own ``/metrics`` (prometheus callback) already says is not repeated here. This
exporter adds the catalog (``/model/info``: public model name, provider, backend host only: never
``api_key`` or any other litellm_params value), deployment health from ``/health`` called at most every
``health_interval`` (it makes a real LLM call per deployment unless background health checks are on),
and spend from the database-backed ``/global/spend/*`` endpoints when a database is connected.

The master key comes from ``master_key_file`` or ``master_key_env`` (never the command line) and is
never logged.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from llm_monitor_exporters.core import httpclient
from llm_monitor_exporters.core.collector import Collector, Snapshot
from llm_monitor_exporters.core.config import ConfigError, opt
from llm_monitor_exporters.core.credentials import load_secret

log = logging.getLogger(__name__)

DEPLOYMENT_LABELS = ["model_name", "provider", "backend", "deployment"]
SPEND_KINDS = (
    ("keys", "/global/spend/keys", "key"),
    ("teams", "/global/spend/teams", "team"),
    ("models", "/global/spend/models", "model"),
)


@dataclass
class LitellmConfig:
    base_url: str = opt("http://127.0.0.1:4000", help="LiteLLM proxy base URL")
    master_key_file: str = opt("", allow_empty=True, help="file holding the master key")
    master_key_env: str = opt(
        "LITELLM_MASTER_KEY", allow_empty=True, help="environment variable holding the master key (when no file is set)"
    )
    timeout: float = opt(5.0, minimum=0.1, help="seconds per request")
    health_interval: float = opt(300.0, minimum=1, help="seconds between /health calls (real LLM calls!)")
    health_timeout: float = opt(60.0, minimum=0.1, help="seconds the /health call may take")
    catalog_interval: float = opt(60.0, minimum=0, help="seconds between /model/info calls")
    spend: bool = opt(True, help="query the database-backed spend endpoints")
    spend_interval: float = opt(300.0, minimum=1, help="seconds between spend queries")
    spend_limit: int = opt(50, minimum=1, help="top N keys/teams/models exported")


@dataclass
class Deployment:
    model_name: str
    provider: str
    backend: str
    deployment: str  # litellm_params.model (no secrets)
    api_base: str = ""


@dataclass
class State:
    live: bool = False
    ready: bool = False
    ready_db: str = ""
    catalog_ok: bool = False
    auth_ok: bool = True
    deployments: list[Deployment] = field(default_factory=list)
    catalog_at: float = -1e18
    health: dict[tuple[str, str], bool] = field(default_factory=dict)  # (deployment, backend) -> healthy
    health_ok: bool = False
    health_at: float = -1e18  # monotonic time of the last /health attempt
    health_result_wall: float = 0.0
    spend_ok: bool = False
    spend_at: float = -1e18
    spend: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    spend_error: str = ""


def host_of(api_base: object) -> str:
    """Hostname of ``api_base`` only (no scheme, port, path, userinfo, query)."""
    if not isinstance(api_base, str) or not api_base:
        return ""
    try:
        return urllib.parse.urlsplit(api_base if "://" in api_base else "//" + api_base).hostname or ""
    except ValueError:
        return ""


def provider_of(params: dict[str, Any]) -> str:
    custom = params.get("custom_llm_provider")
    if isinstance(custom, str) and custom:
        return custom
    model = params.get("model")
    if isinstance(model, str) and "/" in model:
        return model.split("/", 1)[0]
    return "openai" if isinstance(model, str) and model else "unknown"


def parse_model_info(data: Any) -> list[Deployment] | None:
    """``/model/info`` body -> deployments, reading only non-secret fields; None if not that shape."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return None
    out: list[Deployment] = []
    for item in data["data"]:
        if not isinstance(item, dict):
            return None
        raw = item.get("litellm_params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        model = params.get("model")
        out.append(
            Deployment(
                model_name=str(item.get("model_name") or ""),
                provider=provider_of(params),
                backend=host_of(params.get("api_base")),
                deployment=model if isinstance(model, str) else "",
                api_base=str(params.get("api_base") or ""),
            )
        )
    return out


def parse_health(data: Any) -> dict[tuple[str, str], bool] | None:
    """``/health`` body -> {(litellm model, backend host): healthy}."""
    if not isinstance(data, dict):
        return None
    out: dict[tuple[str, str], bool] = {}
    for key, healthy in (("healthy_endpoints", True), ("unhealthy_endpoints", False)):
        entries = data.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            return None
        for e in entries:
            if isinstance(e, dict):
                k = (str(e.get("model") or ""), host_of(e.get("api_base")))
                out[k] = healthy and out.get(k, True)
    return out


class LitellmCollector(Collector):
    name = "litellm"
    error_kinds = (*httpclient.ERROR_KINDS, "no_database")
    upstream_names = ("litellm", "litellm_ready", "litellm_model_info", "litellm_health", "litellm_spend")

    def __init__(self, config: LitellmConfig, clock: Callable[[], float] = time.monotonic) -> None:
        if not config.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"litellm.base_url: expected an http(s) URL, got {config.base_url!r}")
        secret = load_secret(
            "litellm", file=config.master_key_file or None, env=config.master_key_env or None, required=False
        )
        self.config = config
        self.base = config.base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {secret.reveal()}"} if secret else {}
        if secret is None:
            log.warning(
                "LiteLLM: no master key configured (%s unset): /model/info, /health and spend will fail",
                config.master_key_env or "master_key_file",
            )
        self._clock = clock
        self.state = State()
        self.health_calls = 0
        self._spend_logged = False

    def _get(
        self,
        path: str,
        errors: dict[str, int],
        auth: bool = True,
        timeout: float | None = None,
    ) -> tuple[httpclient.Result, Any]:
        res, data = httpclient.get_json(
            self.base + path,
            timeout=timeout or self.config.timeout,
            headers=self._headers if auth else None,
            expect=dict,
        )
        if not res.ok:
            errors[res.kind] = errors.get(res.kind, 0) + 1
        return res, data

    def _auth_failed(self, res: httpclient.Result) -> bool:
        # Without a database LiteLLM answers a wrong key with 400 "No connected db" (or 401/403 with one).
        if res.kind == "auth":
            return True
        return res.status == 400 and b"db" in res.body.lower() and b"spend" not in res.body.lower()

    def collect_snapshot(self) -> Snapshot:
        c, st = self.config, self.state
        errors: dict[str, int] = {}
        now = self._clock()
        res = httpclient.get(self.base + "/health/liveliness", timeout=c.timeout)  # JSON string "I'm alive!"
        st.live = res.ok
        if not res.ok:
            errors[res.kind] = errors.get(res.kind, 0) + 1
        if not st.live:
            st.ready = st.catalog_ok = st.health_ok = st.spend_ok = False
            return self._snapshot(errors)
        res, data = self._get("/health/readiness", errors, auth=False)
        st.ready = res.ok and isinstance(data, dict) and data.get("status") == "healthy"
        st.ready_db = str(data.get("db", "")) if isinstance(data, dict) else ""
        if now - st.catalog_at >= c.catalog_interval:
            st.catalog_at = now
            res, data = self._get("/model/info", errors)
            deployments = parse_model_info(data) if res.ok else None
            if res.ok and deployments is None:
                errors["malformed"] = errors.get("malformed", 0) + 1
            st.catalog_ok = deployments is not None
            st.auth_ok = not self._auth_failed(res)
            if not st.auth_ok and res.kind != "auth":
                errors["auth"] = errors.get("auth", 0) + 1
            if deployments is not None:
                st.deployments = deployments
        if now - st.health_at >= c.health_interval:
            st.health_at = now
            self.health_calls += 1
            res, data = self._get("/health", errors, timeout=c.health_timeout)
            health = parse_health(data) if res.ok else None
            if res.ok and health is None:
                errors["malformed"] = errors.get("malformed", 0) + 1
            st.health_ok = health is not None
            if health is not None:
                st.health = health
                st.health_result_wall = time.time()
        if c.spend and now - st.spend_at >= c.spend_interval:
            st.spend_at = now
            self._poll_spend(errors)
        return self._snapshot(errors)

    def _poll_spend(self, errors: dict[str, int]) -> None:
        st = self.state
        spend: dict[str, list[tuple[str, float]]] = {}
        for kind, path, _label in SPEND_KINDS:
            res, data = httpclient.get_json(
                f"{self.base}{path}?limit={self.config.spend_limit}",
                timeout=self.config.timeout,
                headers=self._headers,
                expect=(list, dict),
            )
            if not res.ok:
                no_db = b"db" in res.body.lower() or b"database" in res.body.lower()
                kind_err = "no_database" if no_db else res.kind
                errors[kind_err] = errors.get(kind_err, 0) + 1
                st.spend_ok = False
                st.spend_error = kind_err
                if not self._spend_logged:
                    log.warning(
                        "LiteLLM spend endpoints unavailable (%s, HTTP %s): exporting "
                        'up{upstream="litellm_spend"} 0; retrying every %.0fs',
                        kind_err,
                        res.status,
                        self.config.spend_interval,
                    )
                    self._spend_logged = True
                return
            spend[kind] = parse_spend(data, kind)
        st.spend, st.spend_ok, st.spend_error = spend, True, ""
        self._spend_logged = False

    def _snapshot(self, errors: dict[str, int]) -> Snapshot:
        st = self.state
        upstreams = {
            "litellm": st.live,
            "litellm_ready": st.ready,
            "litellm_model_info": st.catalog_ok,
            "litellm_health": st.health_ok,
            "litellm_spend": st.spend_ok,
        }
        return Snapshot(
            families=self._families(), upstreams=upstreams, errors={k: v for k, v in errors.items() if v > 0}
        )

    def _families(self) -> list[Metric]:
        st = self.state
        p = "llm_monitor_litellm_"
        up = GaugeMetricFamily(p + "up", "Whether the proxy answered /health/liveliness.", labels=[])
        up.add_metric([], 1 if st.live else 0)
        ready = GaugeMetricFamily(p + "ready", "Whether /health/readiness says healthy.", labels=["db"])
        ready.add_metric([st.ready_db], 1 if st.ready else 0)
        auth = GaugeMetricFamily(
            p + "auth_ok", "0 when the proxy rejected the master key in the last /model/info call.", labels=[]
        )
        auth.add_metric([], 1 if st.auth_ok else 0)
        info = GaugeMetricFamily(
            p + "deployment_info",
            "Deployment in the proxy's catalog (/model/info), always 1. backend is the hostname of api_base only.",
            labels=DEPLOYMENT_LABELS,
        )
        healthy = GaugeMetricFamily(
            p + "deployment_healthy",
            "Deployment health from the last cached /health result (1 healthy, 0 unhealthy).",
            labels=DEPLOYMENT_LABELS,
        )
        for d in st.deployments:
            lbl = [d.model_name, d.provider, d.backend, d.deployment]
            info.add_metric(lbl, 1)
            h = st.health.get((d.deployment, d.backend))
            if h is not None:
                healthy.add_metric(lbl, 1 if h else 0)
        age = GaugeMetricFamily(
            p + "health_result_age_seconds", "Age of the cached /health result (-1: none).", labels=[]
        )
        age.add_metric([], time.time() - st.health_result_wall if st.health_result_wall else -1)
        spend_ok = GaugeMetricFamily(
            p + "spend_available",
            "1 when the spend endpoints answered (they need LiteLLM's database).",
            labels=["reason"],
        )
        spend_ok.add_metric([st.spend_error or "ok"], 1 if st.spend_ok else 0)
        spend = GaugeMetricFamily(
            p + "spend_usd", "Spend (USD) of the top keys, teams and models (/global/spend/*).", labels=["kind", "name"]
        )
        for kind, rows in sorted(st.spend.items()):
            for name, value in rows:
                spend.add_metric([kind, name], value)
        return [up, ready, auth, info, healthy, age, spend_ok, spend]


def parse_spend(data: Any, kind: str) -> list[tuple[str, float]]:
    """Rows of ``/global/spend/{keys,teams,models}`` -> [(name, spend)] (hashed key alias, team, model)."""
    rows = data if isinstance(data, list) else (data.get("data") if isinstance(data, dict) else None)
    if rows is None and isinstance(data, dict) and kind == "teams":
        # LiteLLM 1.106 answers /global/spend/teams for its admin UI: the (top 10) teams' totals are in
        # total_spend_per_team as {team_id: <alias>, total_spend}
        rows = data.get("total_spend_per_team")
    out: dict[str, float] = {}
    for r in rows if isinstance(rows, list) else []:
        if not isinstance(r, dict):
            continue
        if kind == "keys":
            name = r.get("key_alias") or r.get("key_name") or "unnamed"
        elif kind == "teams":
            name = r.get("team_alias") or r.get("team_id") or r.get("team_name") or "unknown"
        else:
            name = r.get("model") or "unknown"
        value = r.get("total_spend", r.get("spend"))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(name)] = out.get(str(name), 0.0) + float(value)
    return sorted(out.items())

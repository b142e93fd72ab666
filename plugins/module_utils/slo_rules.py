"""Per-model SLOs (``fleet_slos``) rendered as multi-window, multi-burn-rate rules.

One entry per model and backend::

    fleet_slos:
      - model: meta-llama/Llama-3.1-8B-Instruct
        backend: vllm                # vllm | litellm | ollama
        window: 28d                  # the SLO period (default 28d)
        availability: 0.995          # share of requests without a server error
        ttft: {seconds: 0.5, target: 0.99}      # share of requests whose first token came within 0.5 s
        latency: {seconds: 10, target: 0.99}    # share of requests finished within 10 s

Each objective is one SLO (``slo="<model>-<sli>"``). The rules follow the Google SRE workbook's alerting chapter
(shape anchored on Sloth and Pyrra) with two differences that make them more exact:

- every window's error ratio is computed from the raw counters (``rate(errors[w]) / rate(total[w])``), never as
  an average of shorter windows' ratios;
- the period's ratio is traffic-weighted: the 5-minute error and request rates are recorded, and the period
  divides their sums, so a quiet night does not weigh as much as a busy day (Sloth averages the 5 m ratios).

Alerts: ``SloErrorBudgetBurnFast`` (critical, pages) when the error ratio exceeds the burn rate that spends 2 %
of the budget in 1 h over both 1 h and 5 m, or 5 % in 6 h over both 6 h and 30 m; ``SloErrorBudgetBurnSlow``
(warning, tickets) for 10 % in 1 d over 1 d and 2 h, or 10 % in 3 d over 3 d and 6 h. The burn factors scale with
the period (14.4, 6, 3 and 1 for 30 days, as in the workbook).

Latency objectives use the backends' classic histograms, so the threshold must be one of the histogram's bucket
boundaries (the message lists them): a ratio read between buckets would be an interpolation, not a count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.llm_monitor.fleet.plugins.module_utils.alert_catalog import DURATION, seconds
from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_inventory import InventoryError

# vLLM vllm/v1/metrics/buckets.py (TIME_TO_FIRST_TOKEN_BUCKETS, REQUEST_LATENCY_BUCKETS)
VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                     20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
VLLM_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                        240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
# LiteLLM 1.106 litellm_request_total_latency_metric (recorded in files/exporters/tests/fixtures/litellm)
LITELLM_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
                           300.0, 420.0, 600.0)  # fmt: skip
# the Ollama proxy (files/exporters/src/llm_monitor_exporters/ollama/ollama_metrics.py)
OLLAMA_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
OLLAMA_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# Generation endpoints of vLLM's HTTP instrumentator (http_requests_total{handler}); the SD label `model` is the
# served model, which vLLM's own series call model_name.
_VLLM_HANDLERS = "/v1/chat/completions|/v1/completions|/v1/responses|/v1/messages"


@dataclass(frozen=True)
class Sli:
    """One backend's series for one kind of objective; ``{m}`` is the model matcher, ``{w}`` the window."""

    errors: str
    total: str
    buckets: tuple[float, ...] = ()


def _bucket_sli(histogram: str, selector: str, buckets: tuple[float, ...]) -> Sli:
    """Errors: requests above the bucket bound ``{le}``, out of all the histogram counted."""
    return Sli(
        errors=(
            f"(sum(rate({histogram}_count{{{selector}}}[{{w}}]))"
            f' - sum(rate({histogram}_bucket{{{selector},le="{{le}}"}}[{{w}}])))'
        ),
        total=f"sum(rate({histogram}_count{{{selector}}}[{{w}}]))",
        buckets=buckets,
    )


def _counter_sli(counter: str, selector: str, errors: str, counted: str) -> Sli:
    """Errors: the counter's requests matching ``errors``, out of those matching ``counted``."""
    return Sli(
        errors=f"sum(rate({counter}{{{selector},{errors}}}[{{w}}]))",
        total=f"sum(rate({counter}{{{selector},{counted}}}[{{w}}]))",
    )


def backend_sli(backend: str, sli: str) -> Sli | None:
    """The series of ``sli`` (availability, ttft, latency) for ``backend``; None where it has none."""
    if backend == "vllm":
        if sli == "availability":
            sel = f'job="vllm",handler=~"{_VLLM_HANDLERS}",{{m:model}}'
            return _counter_sli("http_requests_total", sel, 'status="5xx"', 'status=~"2xx|5xx"')
        if sli == "ttft":
            return _bucket_sli("vllm:time_to_first_token_seconds", 'job="vllm",{m:model_name}', VLLM_TTFT_BUCKETS)
        return _bucket_sli("vllm:e2e_request_latency_seconds", 'job="vllm",{m:model_name}', VLLM_LATENCY_BUCKETS)
    if backend == "litellm":
        sel = 'job="litellm",{m:requested_model}'
        if sli == "availability":
            counter = "litellm_proxy_total_requests_metric_total"
            return _counter_sli(counter, sel, 'status_code=~"5.."', 'status_code!~"4.."')
        if sli == "latency":
            return _bucket_sli("litellm_request_total_latency_metric", sel, LITELLM_LATENCY_BUCKETS)
        return None  # LiteLLM's TTFT histogram is not labelled by the requested model
    if backend == "ollama":
        sel = 'job="ollama_proxy",{m:model}'
        if sli == "availability":
            return _counter_sli("llm_monitor_ollama_requests_total", sel, 'status=~"5.."', 'status!~"4.."')
        if sli == "ttft":
            return _bucket_sli("llm_monitor_ollama_time_to_first_token_seconds", sel, OLLAMA_TTFT_BUCKETS)
        return _bucket_sli(
            "llm_monitor_ollama_request_duration_seconds", sel + ',status!~"4..|5.."', OLLAMA_LATENCY_BUCKETS
        )
    return None


BACKENDS = ("vllm", "litellm", "ollama")
SLIS = ("availability", "ttft", "latency")
#: (severity, alert, ((long window, short window, share of the budget spent in the long window), ...))
BURN_ALERTS = (
    ("critical", "SloErrorBudgetBurnFast", (("1h", "5m", 0.02), ("6h", "30m", 0.05))),
    ("warning", "SloErrorBudgetBurnSlow", (("1d", "2h", 0.10), ("3d", "6h", 0.10))),
)
# evaluated every 30 s; the day-long windows every 5 minutes (a 3-day rate over histogram buckets is not cheap)
SHORT_WINDOWS = ("5m", "30m", "1h", "2h", "6h")
LONG_WINDOWS = ("1d", "3d")
_SLO_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Objective:
    slo: str
    model: str
    backend: str
    sli: str
    target: float
    period: str
    le: str = ""

    @property
    def labels(self) -> dict[str, str]:
        return {"slo": self.slo, "model": self.model, "backend": self.backend, "sli": self.sli}


def _le(value: float) -> str:
    return repr(float(value))  # as prometheus_client writes bucket bounds: 0.5, 1.0, 10.0


def _target(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InventoryError(f"{where}={value!r}: expected a ratio between 0 and 1 (e.g. 0.995)")
    try:
        number = float(value)
    except ValueError:
        raise InventoryError(f"{where}={value!r}: expected a ratio between 0 and 1 (e.g. 0.995)") from None
    if not (0 < number < 1) or not math.isfinite(number):
        raise InventoryError(f"{where}={value!r}: the objective must be between 0 and 1, exclusive (e.g. 0.995)")
    return number


def objectives(host: str, value: Any) -> list[Objective]:
    """``fleet_slos`` -> the objectives; refuses bad input naming the host, the entry and the key."""
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise InventoryError(f"host '{host}': fleet_slos must be a list of {{model, backend, ...}}")
    out: list[Objective] = []
    seen: set[str] = set()
    for i, entry in enumerate(value):
        where = f"host '{host}': fleet_slos[{i}]"
        if not isinstance(entry, Mapping):
            raise InventoryError(f"{where} must be a mapping with model and backend")
        unknown = sorted(set(entry) - {"model", "backend", "window", "name", *SLIS})
        if unknown:
            raise InventoryError(f"{where}: unknown keys {', '.join(unknown)} (known: model, backend, window, name, "
                                 f"{', '.join(SLIS)})")  # fmt: skip
        model, backend = entry.get("model"), entry.get("backend")
        if not isinstance(model, str) or not model.strip():
            raise InventoryError(f"{where}.model must be the model's name as its backend reports it")
        if backend not in BACKENDS:
            raise InventoryError(f"{where}.backend={backend!r}: expected one of {', '.join(BACKENDS)}")
        period = entry.get("window", "28d")
        if not isinstance(period, str) or not DURATION.match(period) or seconds(period) < 86400:
            raise InventoryError(f"{where}.window={period!r} is not a duration of a day or more (e.g. 28d, 30d)")
        name = _SLO_NAME.sub("-", str(entry.get("name") or model)).strip("-").lower()
        if not any(k in entry for k in SLIS):
            raise InventoryError(f"{where} ({model}): give at least one of {', '.join(SLIS)}")
        for sli in SLIS:
            if sli not in entry:
                continue
            spec = backend_sli(str(backend), sli)
            if spec is None:
                raise InventoryError(f"{where}.{sli}: the {backend} backend has no {sli} series to measure it by")
            le = ""
            if sli == "availability":
                target = _target(f"{where}.availability", entry[sli])
            else:
                obj = entry[sli]
                if not isinstance(obj, Mapping) or set(obj) != {"seconds", "target"}:
                    raise InventoryError(f"{where}.{sli} must be {{seconds: <bucket boundary>, target: <ratio>}}")
                target = _target(f"{where}.{sli}.target", obj["target"])
                try:
                    bound = float(obj["seconds"])
                except (TypeError, ValueError):
                    bound = math.nan
                if bound not in spec.buckets:
                    raise InventoryError(
                        f"{where}.{sli}.seconds={obj['seconds']!r}: must be a bucket boundary of the {backend} "
                        f"histogram ({', '.join(f'{b:g}' for b in spec.buckets)})"
                    )
                le = _le(bound)
            slo = f"{name}-{backend}-{sli}"
            if slo in seen:
                raise InventoryError(f"{where}: a second {sli} objective for {model} on {backend}")
            seen.add(slo)
            out.append(Objective(slo, model, str(backend), sli, target, period, le))
    return out


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _fill(template: str, o: Objective, window: str) -> str:
    def matcher(m: re.Match[str]) -> str:
        return f'{m.group(1)}="{_quote(o.model)}"'

    text = re.sub(r"\{m:([a-z_]+)\}", matcher, template)
    return text.replace("{w}", window).replace("{le}", o.le)


def _fmt(value: float) -> str:
    return f"{value:.10g}"


def render(slos: Sequence[Objective], runbook_base: str) -> dict[str, Any] | None:
    """The rule file of the SLOs (None when there are none)."""
    if not slos:
        return None
    short: list[dict[str, Any]] = []
    long_: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for o in slos:
        spec = backend_sli(o.backend, o.sli)
        assert spec is not None  # objectives() refused the others
        budget = 1 - o.target
        sel = ",".join(f'{k}="{_quote(v)}"' for k, v in o.labels.items())
        for windows, rules in ((SHORT_WINDOWS, short), (LONG_WINDOWS, long_)):
            for w in windows:
                rules.append(
                    {
                        "record": f"slo:sli_error:ratio_rate{w}",
                        # no traffic: no ratio (rather than 0 or NaN), so neither alerts nor budgets move
                        "expr": f"({_fill(spec.errors, o, w)}) / ({_fill(spec.total, o, w)}) > -1",
                        "labels": o.labels,
                    }
                )
        short += [
            {"record": "slo:sli_errors:rate5m", "expr": _fill(spec.errors, o, "5m"), "labels": o.labels},
            {"record": "slo:sli_requests:rate5m", "expr": _fill(spec.total, o, "5m"), "labels": o.labels},
            {
                "record": "slo:current_burn_rate:ratio",
                "expr": f"slo:sli_error:ratio_rate5m{{{sel}}} / {_fmt(budget)}",
                "labels": o.labels,
            },
        ]
        long_ += [
            {
                "record": "slo:sli_error:ratio_period",
                "expr": f"sum_over_time(slo:sli_errors:rate5m{{{sel}}}[{o.period}])"
                f" / sum_over_time(slo:sli_requests:rate5m{{{sel}}}[{o.period}]) > -1",
                "labels": o.labels,
            },
            {"record": "slo:objective:ratio", "expr": f"vector({_fmt(o.target)})", "labels": o.labels},
            {"record": "slo:error_budget:ratio", "expr": f"vector({_fmt(budget)})", "labels": o.labels},
            {
                "record": "slo:period_error_budget_remaining:ratio",
                "expr": f"1 - slo:sli_error:ratio_period{{{sel}}} / {_fmt(budget)}",
                "labels": o.labels,
            },
        ]
        period_hours = seconds(o.period) / 3600
        what = {"availability": "server errors", "ttft": f"first tokens slower than {o.le} s",
                "latency": f"requests slower than {o.le} s"}[o.sli]  # fmt: skip
        for severity, name, pairs in BURN_ALERTS:
            parts = []
            factors = []
            for long_w, short_w, share in pairs:
                factor = share * period_hours / (seconds(long_w) / 3600)
                factors.append(f"{_fmt(factor)}x")
                limit = _fmt(factor * budget)
                parts.append(
                    f"(slo:sli_error:ratio_rate{long_w}{{{sel}}} > {limit}"
                    f" and slo:sli_error:ratio_rate{short_w}{{{sel}}} > {limit})"
                )
            alerts.append(
                {
                    "alert": name,
                    "expr": " or ".join(parts),
                    "for": "2m" if severity == "critical" else "15m",
                    "labels": {"severity": severity, **o.labels},
                    "annotations": {
                        "summary": f"{o.model} on {o.backend} burns its {o.sli} error budget "
                        + ("fast" if severity == "critical" else "steadily"),
                        "description": (
                            f"The {o.sli} SLO of {o.model} ({o.backend}, {_fmt(o.target * 100)} % over {o.period}) "
                            f"has {{{{ $value | humanizePercentage }}}} {what}, a burn rate of "
                            f"{' or '.join(factors)} the budget: at this pace "
                            + (
                                "2 % of the budget goes in an hour."
                                if severity == "critical"
                                else "10 % of the budget goes in a day or three."
                            )
                        ),
                        "runbook_url": f"{runbook_base.rstrip('/')}/slo.md#{name.lower()}",
                    },
                }
            )
    return {
        "groups": [
            {"name": "llm_monitor_slo_short_windows", "interval": "30s", "rules": short},
            {"name": "llm_monitor_slo_long_windows", "interval": "5m", "rules": long_},
            {"name": "llm_monitor_slo_alerts", "rules": alerts},
        ]
    }

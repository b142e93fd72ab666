"""The fleet folder: the home dashboard (fleet overview) and the SLOs (over the SLO recording rules of
plugins/module_utils/slo_rules.py)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, DashboardLink
from grafana_foundation_sdk.models.dashboard import DashboardLinkType

from .common import (
    HOST_FILTER,
    Query,
    host_variables,
    label_variable,
    new_dashboard,
    stat_panel,
    table_panel,
    uid,
    with_panels,
)
from .common import timeseries_panel as ts

H = HOST_FILTER
#: the SLO recording rules' series of the chosen SLOs
S = 'model=~"$model", sli=~"$sli"'


def drill_down(title: str, name: str) -> DashboardLink:
    """A panel link to another dashboard that passes the variables and the time range along."""
    return (
        DashboardLink(title)
        .type(DashboardLinkType.LINK)
        .url(f"/d/{uid(name)}?${{__all_variables}}&${{__url_time_range}}")
        .include_vars(True)
        .keep_time(True)
    )


def fleet_overview() -> Dashboard:
    d = new_dashboard(
        "fleet-overview",
        "Fleet overview",
        "The home dashboard: hosts, GPUs, models served and alerts firing, with links down host -> GPU -> model",
        host_variables(),
        links=[
            ("Server health", "server-health"),
            ("GPU usage", "gpu-usage"),
            ("vLLM servers", "vllm-docker-status"),
            ("Ollama", "ollama"),
            ("LiteLLM", "litellm-status"),
            ("SLOs", "slo"),
        ],
    )
    panels = [
        stat_panel(
            "Hosts up",
            "Hosts of the chosen datacenters and teams whose node_exporter answers",
            "none",
            [Query(f'sum(up{{job="node", {H}}})')],
            links=[drill_down("Server health", "server-health")],
        ),
        stat_panel(
            "Hosts down",
            "Hosts whose node_exporter does not answer",
            "none",
            [Query(f'count(up{{job="node", {H}}} == 0) or vector(0)')],
            links=[drill_down("Server health", "server-health")],
        ),
        stat_panel(
            "GPUs",
            "GPUs the GPU exporters of the chosen hosts can query",
            "none",
            [Query(f'sum(llm_monitor_gpu_up{{job="gpu", {H}}})')],
            links=[drill_down("GPU usage", "gpu-usage")],
        ),
        stat_panel(
            "GPU utilisation",
            "Mean utilisation over the GPUs of the chosen hosts",
            "percentunit",
            [Query(f'avg(llm_monitor_gpu_utilization_ratio{{job="gpu", {H}}})')],
            links=[drill_down("GPU usage", "gpu-usage")],
        ),
        stat_panel(
            "vLLM models served",
            "Distinct models the vLLM engines of the chosen hosts serve",
            "none",
            [Query(f'count(count by (model_name) (vllm:num_requests_running{{job="vllm", {H}}})) or vector(0)')],
            links=[drill_down("vLLM servers", "vllm-docker-status")],
        ),
        stat_panel(
            "Ollama models loaded",
            "Models loaded in memory by the Ollama servers of the chosen hosts",
            "none",
            [Query(f'sum(llm_monitor_ollama_loaded_models{{job="ollama_proxy", {H}}})')],
            links=[drill_down("Ollama", "ollama")],
        ),
        stat_panel(
            "Alerts firing",
            "Alerts firing now, all severities",
            "none",
            [Query('count(ALERTS{alertstate="firing"}) or vector(0)')],
        ),
        stat_panel(
            "Critical alerts firing",
            "Alerts of severity critical firing now",
            "none",
            [Query('count(ALERTS{alertstate="firing", severity="critical"}) or vector(0)')],
        ),
        table_panel(
            "Alerts firing",
            "Every alert firing now, with its labels",
            "none",
            [Query('ALERTS{alertstate="firing"}')],
        ),
        ts(
            "GPU utilisation per host",
            "Mean GPU utilisation of each host (recording rule); the link opens GPU usage with the variables",
            "percentunit",
            [Query('host:llm_monitor_gpu_utilization_ratio:avg{host=~"$host"}', "{{host}}")],
            min_value=0,
            max_value=1,
        ).links([drill_down("GPU usage", "gpu-usage")]),
        ts(
            "GPU memory used per host",
            "Share of GPU memory in use on each host (recording rule)",
            "percentunit",
            [Query('host:llm_monitor_gpu_memory_used:ratio{host=~"$host"}', "{{host}}")],
            min_value=0,
            max_value=1,
        ).links([drill_down("GPU usage", "gpu-usage")]),
        ts(
            "Generated tokens/s per model",
            "Output tokens per second of every model, vLLM and Ollama (recording rules)",
            "none",
            [
                Query("model:vllm_generation_tokens:rate5m", "{{model_name}} (vLLM)"),
                Query("model:llm_monitor_ollama_generated_tokens:rate5m", "{{model}} (Ollama)"),
            ],
        ).links([drill_down("vLLM servers", "vllm-docker-status"), drill_down("Ollama", "ollama")]),
        ts(
            "Targets down",
            "Scrape targets of the chosen hosts that do not answer, per job",
            "none",
            [Query(f"count by (job) (up{{{H}}} == 0)", "{{job}}")],
        ),
    ]
    return with_panels(d, panels)


def slo() -> Dashboard:
    d = new_dashboard(
        "slo",
        "SLOs",
        "Error budget remaining and burn rate of every model's SLOs (the SLO recording rules)",
        [
            label_variable("model", "slo:objective:ratio", title="Model"),
            label_variable("sli", 'slo:objective:ratio{model=~"$model"}', title="SLI"),
        ],
        links=[("Fleet overview", "fleet-overview"), ("vLLM servers", "vllm-docker-status"), ("Ollama", "ollama")],
    )
    legend = "{{slo}}"
    panels = [
        stat_panel(
            "Lowest error budget remaining",
            "The smallest share of its period's error budget any chosen SLO has left (below 0: spent)",
            "percentunit",
            [Query(f"min(slo:period_error_budget_remaining:ratio{{{S}}})")],
        ),
        stat_panel(
            "Highest burn rate",
            "The fastest any chosen SLO burns its budget now (5 m; 1 = exactly at the objective)",
            "none",
            [Query(f"max(slo:current_burn_rate:ratio{{{S}}})")],
        ),
        stat_panel(
            "SLOs burning",
            "Chosen SLOs that burn faster than their objective allows",
            "none",
            [Query(f"count(slo:current_burn_rate:ratio{{{S}}} > 1) or vector(0)")],
        ),
        stat_panel(
            "SLO alerts firing",
            "Error-budget burn alerts firing now",
            "none",
            [Query('count(ALERTS{alertstate="firing", alertname=~"SloErrorBudgetBurn.*"}) or vector(0)')],
        ),
        table_panel(
            "SLOs",
            "Each SLO: its objective, its error budget and the share of the budget left in its period",
            "percentunit",
            [
                Query(f"slo:objective:ratio{{{S}}}"),
                Query(f"slo:error_budget:ratio{{{S}}}"),
                Query(f"slo:period_error_budget_remaining:ratio{{{S}}}"),
            ],
        ),
        ts(
            "Error budget remaining",
            "Share of the period's error budget left, per SLO",
            "percentunit",
            [Query(f"slo:period_error_budget_remaining:ratio{{{S}}}", legend)],
            max_value=1,
        ),
        ts(
            "Burn rate",
            "Error ratio over 5 minutes over the error budget, per SLO: at 1 the budget lasts exactly one period",
            "none",
            [Query(f"slo:current_burn_rate:ratio{{{S}}}", legend)],
            min_value=0,
        ),
        ts(
            "Error ratio by window",
            "The SLI's error ratio over 5 m, 1 h and 6 h, per SLO",
            "percentunit",
            [
                Query(f"slo:sli_error:ratio_rate{w}{{{S}}}", legend + " " + w)
                for w in ("5m", "1h", "6h")  # windows of slo_rules.SHORT_WINDOWS / LONG_WINDOWS
            ],
        ),
        ts(
            "Requests and errors",
            "Requests and errors per second the SLIs count, per SLO",
            "reqps",
            [
                Query(f"slo:sli_requests:rate5m{{{S}}}", legend + " requests"),
                Query(f"slo:sli_errors:rate5m{{{S}}}", legend + " errors"),
            ],
        ),
    ]
    return with_panels(d, panels)


DASHBOARDS = (fleet_overview, slo)

"""The analytics folder: Langfuse analytics (the Langfuse exporter) and performance trends (this week against the
last, over the recording rules)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from .common import Query, label_variable, new_dashboard, stat_panel, table_panel, with_panels
from .common import timeseries_panel as ts

#: the Langfuse exporter's series of the chosen projects
P = 'job="langfuse", project=~"$project"'
#: ... and models
PM = f'{P}, model=~"$model"'


def langfuse_analytics() -> Dashboard:
    d = new_dashboard(
        "langfuse-analytics",
        "Langfuse analytics",
        "Tokens, cost, traces and latency per model and project, as Langfuse counts them (the Langfuse exporter;"
        " daily figures are of the current UTC day)",
        [
            label_variable("project", 'llm_monitor_langfuse_up{job="langfuse"}', title="Project"),
            label_variable("model", f"llm_monitor_langfuse_daily_model_tokens{{{P}}}", title="Model"),
        ],
        links=[("Performance trends", "performance-trends")],
    )
    panels = [
        stat_panel(
            "Cost today",
            "Model cost of the chosen projects on the current UTC day",
            "currencyUSD",
            [Query(f"sum(llm_monitor_langfuse_daily_cost_usd{{{P}}})")],
        ),
        stat_panel(
            "Tokens today",
            "Tokens (input and output) of the chosen projects and models on the current UTC day",
            "short",
            [Query(f'sum(llm_monitor_langfuse_daily_model_tokens{{type="total", {PM}}})')],
        ),
        stat_panel(
            "Traces today",
            "Traces of the chosen projects on the current UTC day",
            "short",
            [Query(f"sum(llm_monitor_langfuse_daily_traces{{{P}}})")],
        ),
        stat_panel(
            "Data age",
            "Age of the oldest data the exporter holds for the chosen projects",
            "s",
            [Query(f"max(llm_monitor_langfuse_data_age_seconds{{{P}}})")],
        ),
        ts(
            "Tokens today per model",
            "Input and output tokens on the current UTC day, per project and model",
            "short",
            [
                Query(
                    f'llm_monitor_langfuse_daily_model_tokens{{type=~"input|output", {PM}}}',
                    "{{project}} {{model}} {{type}}",
                )
            ],
        ),
        ts(
            "Cost today per model",
            "Model cost on the current UTC day, per project and model",
            "currencyUSD",
            [Query(f"llm_monitor_langfuse_daily_model_cost_usd{{{PM}}}", "{{project}} {{model}}")],
        ),
        ts(
            "Observation latency",
            "p50, p95 and p99 of the observations' latency over the exporter's query window, per project",
            "s",
            [Query(f"llm_monitor_langfuse_latency_seconds{{{P}}}", "{{project}} {{view}} {{percentile}}")],
        ),
        ts(
            "Traces and observations today",
            "Traces and observations on the current UTC day, per project",
            "short",
            [
                Query(f"llm_monitor_langfuse_daily_traces{{{P}}}", "{{project}} traces"),
                Query(f"llm_monitor_langfuse_daily_observations{{{P}}}", "{{project}} observations"),
            ],
        ),
        ts(
            "Error observations",
            "ERROR-level observations over the exporter's query window, per project",
            "short",
            [Query(f"llm_monitor_langfuse_error_observations{{{P}}}", "{{project}}")],
        ),
        ts(
            "Langfuse API requests",
            "Requests the exporter makes to Langfuse's API per second, per project and status (429: rate-limited)",
            "reqps",
            [
                Query(
                    "sum by (project, status)"
                    f" (rate(llm_monitor_langfuse_api_requests_total{{{P}}}[$__rate_interval]))",
                    "{{project}} {{status}}",
                )
            ],
        ),
        table_panel(
            "Projects",
            "Each project: whether the exporter reaches it (1) and its Langfuse server",
            "none",
            [Query(f"llm_monitor_langfuse_up{{{P}}}"), Query(f"llm_monitor_langfuse_server_info{{{P}}}")],
        ),
    ]
    return with_panels(d, panels)


def _week_over_week(record: str, selector: str, legend: str) -> list[Query]:
    series = f"{record}{{{selector}}}" if selector else record
    return [Query(series, legend + " this week"), Query(f"{series} offset 1w", legend + " last week")]


def performance_trends() -> Dashboard:
    d = new_dashboard(
        "performance-trends",
        "Performance trends",
        "TTFT, throughput, latency and cost per model, this week against last (offset 1w; recording rules)",
        [label_variable("model_name", "model:vllm_time_to_first_token_seconds:p95_rate5m", title="vLLM model")],
        links=[("vLLM servers", "vllm-docker-status"), ("Langfuse analytics", "langfuse-analytics")],
    )
    m = 'model_name=~"$model_name"'
    panels = [
        ts(
            "vLLM time to first token p95",
            "p95 of vLLM's time to first token per model, now and a week ago",
            "s",
            _week_over_week("model:vllm_time_to_first_token_seconds:p95_rate5m", m, "{{model_name}}"),
            width=24,
        ),
        ts(
            "vLLM end-to-end latency p95",
            "p95 of vLLM's request latency per model, now and a week ago",
            "s",
            _week_over_week("model:vllm_e2e_request_latency_seconds:p95_rate5m", m, "{{model_name}}"),
        ),
        ts(
            "vLLM generated tokens/s",
            "Output tokens per second per model, now and a week ago",
            "none",
            _week_over_week("model:vllm_generation_tokens:rate5m", m, "{{model_name}}"),
        ),
        ts(
            "Ollama time to first token p95",
            "p95 of Ollama's time to first token per model, now and a week ago",
            "s",
            _week_over_week("model:llm_monitor_ollama_time_to_first_token_seconds:p95_rate5m", "", "{{model}}"),
        ),
        ts(
            "Ollama generated tokens/s",
            "Output tokens per second per Ollama model, now and a week ago",
            "none",
            _week_over_week("model:llm_monitor_ollama_generated_tokens:rate5m", "", "{{model}}"),
        ),
        ts(
            "LiteLLM latency p95",
            "p95 of LiteLLM's total request latency per requested model, now and a week ago",
            "s",
            _week_over_week(
                "requested_model:litellm_request_total_latency_seconds:p95_rate5m", "", "{{requested_model}}"
            ),
        ),
        ts(
            "LiteLLM spend per hour",
            "Spend (USD) per hour, all models, now and a week ago",
            "currencyUSD",
            [
                Query('sum(increase(litellm_spend_metric_total{job="litellm"}[1h]))', "this week"),
                Query('sum(increase(litellm_spend_metric_total{job="litellm"}[1h] offset 1w))', "last week"),
            ],
        ),
        ts(
            "Langfuse cost per day",
            "Model cost of the current UTC day per model (Langfuse), now and a week ago",
            "currencyUSD",
            [
                Query(
                    'sum by (model) (llm_monitor_langfuse_daily_model_cost_usd{job="langfuse"})', "{{model}} this week"
                ),
                Query(
                    'sum by (model) (llm_monitor_langfuse_daily_model_cost_usd{job="langfuse"} offset 1w)',
                    "{{model}} last week",
                ),
            ],
            width=24,
        ),
    ]
    return with_panels(d, panels)


DASHBOARDS = (langfuse_analytics, performance_trends)

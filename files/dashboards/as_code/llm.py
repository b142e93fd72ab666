"""The llm folder: vLLM servers (vLLM's own /metrics, job vllm, and the vLLM exporter), Ollama (the Ollama proxy
exporter), LiteLLM (LiteLLM's own /metrics, job litellm, and the LiteLLM exporter)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from .common import (
    HOST_FILTER,
    Query,
    host_variables,
    label_variable,
    new_dashboard,
    stat_panel,
    table_panel,
    value_text,
    with_panels,
)
from .common import timeseries_panel as ts

H = HOST_FILTER
#: vLLM's own series of the chosen models
V = 'job="vllm", model_name=~"$model_name"'
#: the Ollama proxy's series of the chosen hosts and models
OM = f'job="ollama_proxy", {H}, model=~"$model"'
#: the Ollama proxy's series of the chosen hosts (those without a model label)
OH = f'job="ollama_proxy", {H}'
#: LiteLLM's own series of the chosen models
L = 'job="litellm", requested_model=~"$requested_model"'


def _quantiles(record: str, selector: str) -> list[Query]:
    return [
        Query(f"model:{record}:{p}_rate5m{{{selector}}}", "{{model_name}} " + p)
        for p in ("p50", "p95", "p99")  # the recording rules of files/rules/catalog/vllm.yml
    ]


def vllm_docker_status() -> Dashboard:
    d = new_dashboard(
        "vllm-docker-status",
        "vLLM servers",
        "Requests, KV cache, latency and throughput of the vLLM servers (vLLM's /metrics and the vLLM exporter)",
        [label_variable("model_name", 'vllm:num_requests_running{job="vllm"}', title="Model")],
        links=[("GPU usage", "gpu-usage"), ("SLOs", "slo")],
    )
    m = 'model_name=~"$model_name"'
    panels = [
        stat_panel(
            "Servers up",
            "vLLM containers the vLLM exporter finds serving (llm_monitor_vllm_up)",
            "none",
            [Query('sum(llm_monitor_vllm_up{job="vllm_exporter"})')],
        ),
        stat_panel(
            "Running requests",
            "Requests running on the chosen models' engines now",
            "none",
            [Query(f"sum(vllm:num_requests_running{{{V}}})")],
        ),
        stat_panel(
            "Waiting requests",
            "Requests queued on the chosen models' engines now",
            "none",
            [Query(f"sum(vllm:num_requests_waiting{{{V}}})")],
        ),
        stat_panel(
            "Generated tokens/s",
            "Output tokens per second of the chosen models (recording rule, 5 m)",
            "none",
            [Query(f"sum(model:vllm_generation_tokens:rate5m{{{m}}})")],
        ),
        ts(
            "Running and waiting requests",
            "Requests running and queued, per model and host",
            "none",
            [
                Query(
                    f"sum by (model_name, host) (vllm:num_requests_running{{{V}}})", "{{model_name}} {{host}} running"
                ),
                Query(
                    f"sum by (model_name, host) (vllm:num_requests_waiting{{{V}}})", "{{model_name}} {{host}} waiting"
                ),
            ],
        ),
        ts(
            "KV cache usage",
            "Share of the KV cache blocks in use, per model and host: at 1 requests are preempted",
            "percentunit",
            [Query(f"max by (model_name, host) (vllm:kv_cache_usage_perc{{{V}}})", "{{model_name}} {{host}}")],
            min_value=0,
            max_value=1,
        ),
        ts(
            "Time to first token",
            "p50, p95 and p99 of the time to the first token, per model (recording rules, 5 m)",
            "s",
            _quantiles("vllm_time_to_first_token_seconds", m),
        ),
        ts(
            "Inter-token latency",
            "p50, p95 and p99 of the time between output tokens, per model",
            "s",
            [
                Query(
                    f"histogram_quantile({q}, sum by (model_name, le)"
                    f" (rate(vllm:inter_token_latency_seconds_bucket{{{V}}}[$__rate_interval])))",
                    "{{model_name}} p" + q[2:].ljust(2, "0"),
                )
                for q in ("0.5", "0.95", "0.99")
            ],
        ),
        ts(
            "End-to-end latency",
            "p50, p95 and p99 of the request latency, per model (recording rules, 5 m)",
            "s",
            _quantiles("vllm_e2e_request_latency_seconds", m),
        ),
        ts(
            "Tokens/s",
            "Prompt and generated tokens per second, per model (recording rules, 5 m)",
            "none",
            [
                Query(f"model:vllm_prompt_tokens:rate5m{{{m}}}", "{{model_name}} prompt"),
                Query(f"model:vllm_generation_tokens:rate5m{{{m}}}", "{{model_name}} generated"),
            ],
        ),
        ts(
            "Preemptions",
            "Requests preempted per second (KV cache exhausted), per model",
            "reqps",
            [
                Query(
                    f"sum by (model_name) (rate(vllm:num_preemptions_total{{{V}}}[$__rate_interval]))",
                    "{{model_name}}",
                )
            ],
        ),
        ts(
            "Prefix cache hit rate",
            "Share of prompt tokens queried in the prefix cache that hit, per model",
            "percentunit",
            [
                Query(
                    f"sum by (model_name) (rate(vllm:prefix_cache_hits_total{{{V}}}[$__rate_interval]))"
                    f" / sum by (model_name) (rate(vllm:prefix_cache_queries_total{{{V}}}[$__rate_interval]))",
                    "{{model_name}}",
                )
            ],
            min_value=0,
            max_value=1,
        ),
        ts(
            "Finished requests",
            "Requests finished per second, per model and reason (stop, length, abort, error)",
            "reqps",
            [
                Query(
                    f"sum by (model_name, finished_reason) (rate(vllm:request_success_total{{{V}}}[$__rate_interval]))",
                    "{{model_name}} {{finished_reason}}",
                )
            ],
        ),
        table_panel(
            "Servers",
            "Each vLLM container the exporter finds: whether its HTTP endpoint answers, and the model it serves",
            "none",
            [
                Query('llm_monitor_vllm_http_reachable{job="vllm_exporter"}'),
                Query('llm_monitor_vllm_model_info{job="vllm_exporter"}'),
            ],
        ),
    ]
    return with_panels(d, panels)


def ollama() -> Dashboard:
    d = new_dashboard(
        "ollama",
        "Ollama",
        "Requests, latency, throughput and loaded models of the Ollama servers (the Ollama proxy exporter)",
        [
            *host_variables(),
            label_variable("model", f"llm_monitor_ollama_requests_total{{{OH}}}", title="Model"),
        ],
        links=[("GPU usage", "gpu-usage"), ("SLOs", "slo")],
    )
    mm = 'model=~"$model"'
    panels = [
        stat_panel(
            "Proxies up",
            "Ollama proxies of the chosen hosts whose Ollama answers",
            "none",
            [Query(f"sum(llm_monitor_ollama_up{{{OH}}})")],
        ),
        stat_panel(
            "Models loaded",
            "Models loaded in memory on the chosen hosts",
            "none",
            [Query(f"sum(llm_monitor_ollama_loaded_models{{{OH}}})")],
        ),
        stat_panel(
            "Active requests",
            "Requests in flight through the proxies of the chosen hosts",
            "none",
            [Query(f"sum(llm_monitor_ollama_in_flight_requests{{{OH}}})")],
        ),
        stat_panel(
            "Success rate",
            "Share of the chosen models' requests answered with a 2xx status",
            "percentunit",
            [
                Query(
                    f'sum(rate(llm_monitor_ollama_requests_total{{status=~"2..", {OM}}}[$__rate_interval]))'
                    f" / sum(rate(llm_monitor_ollama_requests_total{{{OM}}}[$__rate_interval]))"
                )
            ],
        ),
        ts(
            "Request rate",
            "Requests per second, per model and status",
            "reqps",
            [
                Query(
                    f"sum by (model, status) (rate(llm_monitor_ollama_requests_total{{{OM}}}[$__rate_interval]))",
                    "{{model}} {{status}}",
                )
            ],
        ),
        ts(
            "Server error ratio",
            "Share of requests answered with a 5xx status, per model (recording rule, 5 m)",
            "percentunit",
            [Query(f"model:llm_monitor_ollama_server_errors:ratio_rate5m{{{mm}}}", "{{model}}")],
        ),
        ts(
            "Generated tokens/s",
            "Output tokens per second, per model (recording rule, 5 m)",
            "none",
            [Query(f"model:llm_monitor_ollama_generated_tokens:rate5m{{{mm}}}", "{{model}}")],
        ),
        ts(
            "Time to first token",
            "p50 and p95 of the time to the first token, per model (p95: recording rule)",
            "s",
            [
                Query(
                    "histogram_quantile(0.5, sum by (model, le)"
                    f" (rate(llm_monitor_ollama_time_to_first_token_seconds_bucket{{{OM}}}[$__rate_interval])))",
                    "{{model}} p50",
                ),
                Query(f"model:llm_monitor_ollama_time_to_first_token_seconds:p95_rate5m{{{mm}}}", "{{model}} p95"),
            ],
        ),
        ts(
            "Request duration",
            "p50 and p95 of the request duration, per model (p95: recording rule)",
            "s",
            [
                Query(
                    "histogram_quantile(0.5, sum by (model, le)"
                    f" (rate(llm_monitor_ollama_request_duration_seconds_bucket{{{OM}}}[$__rate_interval])))",
                    "{{model}} p50",
                ),
                Query(f"model:llm_monitor_ollama_request_duration_seconds:p95_rate5m{{{mm}}}", "{{model}} p95"),
            ],
        ),
        ts(
            "Active requests",
            "Requests in flight, per host and endpoint",
            "none",
            [Query(f"llm_monitor_ollama_in_flight_requests{{{OH}}}", "{{host}} {{endpoint}}")],
        ),
        ts(
            "Errors",
            "Proxy errors per second, per kind (upstream timeouts, disconnects, bad requests...)",
            "cps",
            [
                Query(
                    f"sum by (kind) (rate(llm_monitor_ollama_errors_total{{{OH}}}[$__rate_interval]))",
                    "{{kind}}",
                )
            ],
        ),
        ts(
            "Loaded models' VRAM",
            "GPU memory each loaded model holds, per host",
            "bytes",
            [Query(f"llm_monitor_ollama_loaded_model_vram_bytes{{{OM}}}", "{{host}} {{model}}")],
        ),
        table_panel(
            "Loaded models",
            "Each loaded model: its size in memory, its VRAM and when Ollama unloads it",
            "bytes",
            [
                Query(f"llm_monitor_ollama_loaded_model_size_bytes{{{OM}}}"),
                Query(f"llm_monitor_ollama_loaded_model_vram_bytes{{{OM}}}"),
            ],
        ),
    ]
    return with_panels(d, panels)


def litellm_status() -> Dashboard:
    d = new_dashboard(
        "litellm-status",
        "LiteLLM",
        "Requests, failures, latency, deployment state and spend of the LiteLLM proxy (LiteLLM's /metrics and the"
        " LiteLLM exporter)",
        [label_variable("requested_model", 'litellm_proxy_total_requests_metric_total{job="litellm"}', title="Model")],
        links=[("SLOs", "slo")],
    )
    r = 'requested_model=~"$requested_model"'
    panels = [
        stat_panel(
            "Proxy up",
            "Whether the LiteLLM exporter reaches the proxy's health endpoints",
            "none",
            [Query('min(llm_monitor_litellm_up{job="litellm_exporter"})')],
        ),
        stat_panel(
            "Requests/s",
            "Requests per second to the chosen models",
            "reqps",
            [Query(f"sum(rate(litellm_proxy_total_requests_metric_total{{{L}}}[$__rate_interval]))")],
        ),
        stat_panel(
            "Unhealthy deployments",
            "Deployments the last cached /health result finds unhealthy",
            "none",
            [Query('count(llm_monitor_litellm_deployment_healthy{job="litellm_exporter"} == 0) or vector(0)')],
        ),
        stat_panel(
            "Spend today",
            "Spend (USD) over the last 24 hours, all models",
            "currencyUSD",
            [Query('sum(increase(litellm_spend_metric_total{job="litellm"}[1d]))')],
        ),
        ts(
            "Requests",
            "Requests per second, per model and status code",
            "reqps",
            [
                Query(
                    "sum by (requested_model, status_code)"
                    f" (rate(litellm_proxy_total_requests_metric_total{{{L}}}[$__rate_interval]))",
                    "{{requested_model}} {{status_code}}",
                )
            ],
        ),
        ts(
            "Failure ratio",
            "Share of failed requests, per model (recording rule, 5 m)",
            "percentunit",
            [Query(f"requested_model:litellm_failed_requests:ratio_rate5m{{{r}}}", "{{requested_model}}")],
        ),
        ts(
            "Failures by exception",
            "Failed requests per second, per model and exception class",
            "reqps",
            [
                Query(
                    "sum by (requested_model, exception_class)"
                    f" (rate(litellm_proxy_failed_requests_metric_total{{{L}}}[$__rate_interval]))",
                    "{{requested_model}} {{exception_class}}",
                )
            ],
        ),
        ts(
            "Latency p95",
            "p95 of the total request latency, per model (recording rule, 5 m)",
            "s",
            [Query(f"requested_model:litellm_request_total_latency_seconds:p95_rate5m{{{r}}}", "{{requested_model}}")],
        ),
        ts(
            "Deployment state",
            "Each deployment's state as LiteLLM reports it: 0 healthy, 1 partial outage, 2 complete outage",
            "none",
            [Query('litellm_deployment_state{job="litellm"}', "{{litellm_model_name}} {{api_base}}")],
            min_value=0,
            max_value=2,
        ),
        ts(
            "Spend",
            "Spend (USD) per hour, per model",
            "currencyUSD",
            [Query('sum by (model) (increase(litellm_spend_metric_total{job="litellm"}[1h]))', "{{model}}")],
        ),
        ts(
            "Remaining team budget",
            "Budget (USD) each team has left",
            "currencyUSD",
            [Query('litellm_remaining_team_budget_metric{job="litellm"}', "{{team_alias}}")],
        ),
        table_panel(
            "Deployments",
            "Each deployment the exporter knows: its health (1 healthy) from the last cached /health result",
            "none",
            [Query('llm_monitor_litellm_deployment_healthy{job="litellm_exporter"}')],
        ),
    ]
    return with_panels(d, panels)


def model_catalog() -> Dashboard:
    d = new_dashboard(
        "model-catalog",
        "Model catalog",
        "Every model the fleet serves, vLLM, Ollama and LiteLLM: where, on which GPUs, whether it serves, and its"
        " requests (the llm_monitor:model_served recording rules)",
        [
            *host_variables(),
            label_variable(
                "model",
                'llm_monitor:model_served:info{datacenter=~"$datacenter", team=~"$team", host=~"$host"}',
                title="Model",
            ),
        ],
        links=[("vLLM servers", "vllm-docker-status"), ("Ollama", "ollama"), ("LiteLLM", "litellm-status")],
    )
    #: the catalog's series of the chosen hosts and models
    c = f'{H}, model=~"$model"'
    #: the vLLM exporter's series of the chosen hosts
    vx = f'job="vllm_exporter", {H}'
    # GPUs per vLLM model and host: each container's GPU count on each model it lists (several with LoRA adapters);
    # the table puts it on the catalog's series as the label gpus (count_values); the others get no gpus (or on)
    gpus = (
        f"sum by (model, backend, host) (label_replace("
        f'group by (host, container, model) (llm_monitor_vllm_model_info{{{vx}, model=~"$model"}})'
        f" * on (host, container) group_left () count by (host, container) (llm_monitor_vllm_gpu_assigned{{{vx}}}),"
        f' "backend", "vllm", "model", ".*"))'
    )
    panels = [
        stat_panel(
            "Models served",
            "Distinct models the chosen hosts serve, all backends",
            "none",
            [Query(f"count(count by (model) (llm_monitor:model_served:info{{{c}}})) or vector(0)")],
        ),
        stat_panel(
            "Models per backend",
            "Models served on the chosen hosts, per backend (a model on two hosts counts twice)",
            "none",
            [Query(f"count by (backend) (llm_monitor:model_served:info{{{c}}})", "{{backend}}")],
            width=12,
        ),
        stat_panel(
            "Models not serving",
            "Models listed on the chosen hosts whose server does not serve now (vLLM down, Ollama not answering,"
            " no healthy LiteLLM deployment)",
            "none",
            [Query(f"count(llm_monitor:model_served:up{{{c}}} == 0) or vector(0)")],
        ),
        table_panel(
            "Models served",
            "Each model, backend and host: its state (serving or down), the GPUs its vLLM servers hold (gpus) and,"
            " for LiteLLM, the provider",
            "none",
            [
                Query(
                    f"llm_monitor:model_served:up{{{c}}} * on (model, backend, host) group_left (gpus)"
                    f' (count_values by (model, backend, host) ("gpus", {gpus})'
                    f" or on (model, backend, host)"
                    f" group by (model, backend, host) (llm_monitor:model_served:up{{{c}}}))"
                )
            ],
            mappings=value_text({0: ("down", "red"), 1: ("serving", "green")}),
        ),
        table_panel(
            "vLLM GPUs",
            "Each GPU assigned to a vLLM server (container) of the chosen hosts that lists one of the chosen models",
            "none",
            [
                Query(
                    f"group by (host, container, gpu) (llm_monitor_vllm_gpu_assigned{{{vx}}})"
                    f' and on (host, container) llm_monitor_vllm_model_info{{{vx}, model=~"$model"}}'
                )
            ],
            width=12,
        ),
        ts(
            "Requests per model",
            "Requests per second per model where the backend counts them: vLLM's finished requests, the Ollama"
            " proxy's requests, LiteLLM's requests per requested model",
            "reqps",
            [
                Query(
                    f"sum by (model_name) (rate(vllm:request_success_total"
                    f'{{job="vllm", {H}, model_name=~"$model"}}[$__rate_interval]))',
                    "{{model_name}} (vLLM)",
                ),
                Query(
                    f"sum by (model) (rate(llm_monitor_ollama_requests_total"
                    f'{{job="ollama_proxy", {H}, model=~"$model", model!="none"}}[$__rate_interval]))',
                    "{{model}} (Ollama)",
                ),
                Query(
                    "sum by (requested_model) (rate(litellm_proxy_total_requests_metric_total"
                    f'{{job="litellm", {H}, requested_model=~"$model", requested_model!=""}}[$__rate_interval]))',
                    "{{requested_model}} (LiteLLM)",
                ),
            ],
        ),
    ]
    return with_panels(d, panels)


DASHBOARDS = (vllm_docker_status, ollama, litellm_status, model_catalog)

"""The exporter catalog: which of the collection's exporters runs on which host, on which port, as which user.

This is the one place where that is decided. The exporters role installs what it says, the prometheus role
scrapes what it says (one job per exporter), and the alert rules to come read the same job names. Adding an
exporter is one entry here, its subpackage in files/exporters (and its entry in the package's registry), and its
variables in roles/exporters/meta/argument_specs.yml and README.md.

Every exporter `<name>` has the host variables `exporters_<name>_enabled`, `exporters_<name>_port` and
`exporters_<name>_user`; the values below are their defaults. Nothing here imports Ansible, so unit tests and the
package's own tests can read it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The fact the exporters preflight (or the prometheus preflight, for hosts it has not seen) sets on every host:
# whether /var/run/docker.sock is a socket there. Exporters with `on_with_docker` default to on where it is.
DOCKER_FACT = "_fleet_docker_socket_found"


@dataclass(frozen=True)
class Exporter:
    #: subcommand of llm-monitor-exporter, config section, unit llm-monitor-exporter-<name>.service
    name: str
    #: Prometheus job that scrapes it
    job: str
    default_port: int
    default_user: str
    #: on by default on the members of these inventory groups ...
    groups: tuple[str, ...] = ()
    #: ... and where a Docker socket was found ...
    on_with_docker: bool = False
    #: ... and on hosts that set this variable to a non-empty value
    on_when_set: str | None = None
    #: the variable that decides whether it talks to the Docker API (root-equivalent access), and the value
    #: that means yes; None: never
    docker_var: str | None = None
    docker_when: Any = None
    summary: str = ""

    @property
    def enabled_var(self) -> str:
        return f"exporters_{self.name}_enabled"

    @property
    def port_var(self) -> str:
        return f"exporters_{self.name}_port"

    @property
    def user_var(self) -> str:
        return f"exporters_{self.name}_user"

    @property
    def unit(self) -> str:
        return f"llm-monitor-exporter-{self.name}.service"


EXPORTERS: tuple[Exporter, ...] = (
    Exporter("gpu", "gpu", 9835, "llm-monitor-gpu", groups=("gpu_hosts",), summary="NVIDIA GPUs through NVML"),
    Exporter(
        "containers",
        "containers",
        9417,
        "llm-monitor-containers",
        on_with_docker=True,
        docker_var="exporters_containers_docker_access",
        docker_when="socket",
        summary="Docker containers from cgroups, names from the Docker API",
    ),
    Exporter(
        "vllm",
        "vllm_exporter",
        9436,
        "llm-monitor-vllm",
        groups=("vllm_servers",),
        docker_var="exporters_vllm_docker",
        docker_when=True,
        summary="vLLM servers: discovery, probes, HTTP SD for vLLM's own /metrics",
    ),
    Exporter(
        "litellm",
        "litellm_exporter",
        9437,
        "llm-monitor-litellm",
        groups=("litellm_proxies",),
        summary="LiteLLM proxy: liveness, catalog, deployment health, spend",
    ),
    Exporter(
        "langfuse",
        "langfuse",
        9438,
        "llm-monitor-langfuse",
        groups=("langfuse_servers",),
        on_when_set="exporters_langfuse_projects",
        summary="Langfuse usage, cost and latency per project",
    ),
    Exporter(
        "ollama_proxy",
        "ollama_proxy",
        9439,
        "llm-monitor-ollama-proxy",
        groups=("ollama_servers",),
        summary="Ollama monitoring proxy",
    ),
)

BY_NAME: dict[str, Exporter] = {e.name: e for e in EXPORTERS}

# Label names a fleet_labels key must not take, with who sets them. A target label of the same name as one the
# exporter or upstream emits makes Prometheus rename the emitted one to exported_<name> (so `gpu` becomes
# `exported_gpu`, `le` becomes `exported_le` and every histogram quantile comes back empty). The fleet test checks
# that every label name the fleet's Prometheus holds is listed here or is a fleet label. LiteLLM's caller labels
# `team` and `user` are not reserved: they are the names a fleet most wants for its own labels (alerts are routed
# by team). Where a LiteLLM host's fleet_labels take one, the litellm job renames LiteLLM's to litellm_team or
# litellm_user (roles/prometheus defaults, its metric_relabel_configs).
RESERVED_LABELS: dict[str, str] = {
    # the collection
    "job": "Prometheus (the scrape job)",
    "instance": "the collection (the inventory hostname)",
    "host": "the collection (the inventory hostname, on every target)",
    # Prometheus itself
    "le": "Prometheus histograms",
    "quantile": "Prometheus summaries",
    "alertname": "Prometheus alerts",
    "severity": "the alert rules",
    "alertstate": "Prometheus alerts",
    # the collection's exporters
    "gpu": "the GPU exporter",
    "uuid": "the GPU exporter",
    "name": "the GPU exporter, cAdvisor-style container metrics",
    "pci_bus_id": "the GPU exporter",
    "mig": "the GPU exporter",
    "mig_profile": "the GPU exporter",
    "gpu_instance": "the GPU exporter",
    "compute_instance": "the GPU exporter",
    "xid": "the GPU exporter",
    "reason": "the GPU exporter, exporters' self-metrics, vLLM",
    "clock": "the GPU exporter",
    "link": "the GPU exporter",
    "limit": "the GPU exporter (temperature limits)",
    "query": "the GPU exporter (unsupported NVML queries)",
    "direction": "the GPU exporter, node_exporter",
    "pid": "the GPU exporter",
    "process": "the GPU exporter",
    "container": "the container exporter, the vLLM exporter's SD",
    "container_id": "the GPU exporter",
    "process_name": "the GPU exporter",
    "mig_uuid": "the GPU exporter",
    "id": "the container exporter",
    "image": "the container exporter",
    "slo": "the collection's SLO recording rules (fleet_slos)",
    "sli": "the collection's SLO recording rules (fleet_slos)",
    "compose_project": "the container exporter (Docker Compose's project label)",
    "compose_service": "the container exporter (Docker Compose's service label)",
    "state": "the container exporter, node_exporter, vLLM",
    "health": "the container exporter",
    "interface": "the container exporter",
    "exporter": "the exporters' self-metrics",
    "upstream": "the exporters' self-metrics",
    "kind": "the exporters' self-metrics",
    "version": "the exporters, node_exporter, Ollama",
    "backend": "the GPU exporter",
    "driver_version": "the GPU exporter",
    "cuda_version": "the GPU exporter",
    "endpoint": "the Ollama proxy, the LLM exporters",
    "status": "the Ollama proxy, the LLM exporters, vLLM's HTTP instrumentator",
    "model": "the Ollama proxy, the LLM exporters, the vLLM SD",
    "family": "the Ollama proxy",
    "parameter_size": "the Ollama proxy",
    "quantization": "the Ollama proxy",
    "format": "the Ollama proxy",
    "type": "the Langfuse exporter",
    "view": "the Langfuse exporter",
    "percentile": "the Langfuse exporter",
    "project": "the Langfuse exporter",
    "metrics_api": "the Langfuse exporter",
    "plan": "the Langfuse exporter",
    "organization": "the Langfuse exporter",
    "resource": "the Langfuse exporter (API quotas)",
    "db": "the LiteLLM exporter",
    "target": "the vLLM exporter",
    "source": "the vLLM exporter, vLLM (prompt tokens by source)",
    # the exporters' Python runtime (python_info)
    "implementation": "the exporters' Python runtime",
    "major": "the exporters' Python runtime",
    "minor": "the exporters' Python runtime",
    "patchlevel": "the exporters' Python runtime",
    "api_provider": "LiteLLM",
    # vLLM's own /metrics
    "model_name": "vLLM, LiteLLM",
    "engine": "vLLM",
    "finished_reason": "vLLM",
    "handler": "vLLM's HTTP instrumentator, Prometheus",
    "sleep_state": "vLLM (engine_sleep_state)",
    "policy": "vLLM (scheduler_policy_info)",
    "priority": "vLLM (priority scheduling)",
    "position": "vLLM (speculative decoding, accepted tokens per position)",
    "max_lora": "vLLM (lora_requests_info)",
    "running_lora_adapters": "vLLM (lora_requests_info)",
    "waiting_lora_adapters": "vLLM (lora_requests_info)",
    "alertmanager": "Prometheus (notifications per Alertmanager)",
    "tags": "Prometheus (build tags in prometheus_build_info)",
    "method": "vLLM's HTTP instrumentator",
    "block_size": "vLLM (cache_config_info)",
    "cache_dtype": "vLLM (cache_config_info)",
    "enable_prefix_caching": "vLLM (cache_config_info)",
    "gpu_memory_utilization": "vLLM (cache_config_info)",
    "num_gpu_blocks": "vLLM (cache_config_info)",
    # LiteLLM's own /metrics
    "requested_model": "LiteLLM",
    "litellm_model_name": "LiteLLM",
    "model_id": "LiteLLM",
    "api_base": "LiteLLM",
    "hashed_api_key": "LiteLLM",
    "api_key_alias": "LiteLLM",
    "team_alias": "LiteLLM",
    "end_user": "LiteLLM",
    "route": "LiteLLM",
    "status_code": "LiteLLM",
    "exception_status": "LiteLLM",
    "exception_class": "LiteLLM",
    "client_ip": "LiteLLM",
    "user_agent": "LiteLLM",
    "user_email": "LiteLLM",
    "user_alias": "LiteLLM",
    "org_id": "LiteLLM",
    "org_alias": "LiteLLM",
    "project_id": "LiteLLM",
    "project_alias": "LiteLLM",
    "tag": "LiteLLM",
    "provider": "LiteLLM",
    "deployment": "LiteLLM",
    "service_tier": "LiteLLM",
    "model_group": "LiteLLM",
    "fallback_model": "LiteLLM",
    "callback_name": "LiteLLM",
    "stream": "LiteLLM",
    "mcp_tool_name": "LiteLLM",
    "mcp_server_name": "LiteLLM",
    "input_sequence_length": "LiteLLM",
    "rate_limit_category": "LiteLLM",
    "rate_limit_type": "LiteLLM",
    # node_exporter
    "cpu": "node_exporter",
    "mode": "node_exporter",
    "device": "node_exporter",
    "fstype": "node_exporter",
    "mountpoint": "node_exporter",
    "collector": "node_exporter",
    "nodename": "node_exporter",
    "machine": "node_exporter",
    "release": "node_exporter",
    "sysname": "node_exporter",
    "domainname": "node_exporter",
    "goversion": "node_exporter, Prometheus",
    "revision": "node_exporter, Prometheus",
    "branch": "node_exporter, Prometheus",
    "goos": "node_exporter, Prometheus",
    "goarch": "node_exporter, Prometheus",
    "address": "node_exporter (network info)",
    "broadcast": "node_exporter (network info)",
    "duplex": "node_exporter (network info)",
    "operstate": "node_exporter (network info)",
    "clocksource": "node_exporter (time)",
    "time_zone": "node_exporter (time)",
    "pretty_name": "node_exporter (os info)",
    "version_codename": "node_exporter (os info)",
    "version_id": "node_exporter (os info)",
    "build_id": "node_exporter (os info)",
    "id_like": "node_exporter (os info)",
    "image_id": "node_exporter (os info)",
    "image_version": "node_exporter (os info)",
    "variant": "node_exporter (os info)",
    "variant_id": "node_exporter (os info)",
    "ifalias": "node_exporter (network info)",
    "path": "node_exporter (disk info)",
    "serial": "node_exporter (disk info)",
    "wwn": "node_exporter (disk info)",
    # Alertmanager's own metrics (the alertmanager job)
    "integration": "Alertmanager (notifications)",
    "receiver_name": "Alertmanager (notifications)",
    "key": "Alertmanager (notification log, silences)",
    "msg_type": "Alertmanager (cluster gossip)",
    "peer": "Alertmanager (cluster gossip)",
    # Prometheus' own metrics (the prometheus job)
    "code": "Prometheus, Alertmanager",
    "scrape_job": "Prometheus",
    "slice": "Prometheus",
    "queue": "Prometheus",
    "listener_name": "Prometheus",
    "dialer_name": "Prometheus",
    "cause": "Prometheus, the GPU exporter (retired pages)",
    "config": "Prometheus",
    "filename": "Prometheus",
    "interval": "Prometheus",
    "mechanism": "Prometheus",
    "generation": "Prometheus",
    "ip": "Prometheus",
    "role": "Prometheus",
    "event": "Prometheus",
    "rule_group": "Prometheus",
    "url": "Prometheus",
}
# A name with one of these prefixes is Prometheus' own (__name__, __address__), the result of a collision, or
# LiteLLM's caller label kept under another name by the litellm job (litellm_team).
# vLLM's cache_config_info carries every CacheConfig field as a label (vllm/config/cache.py, as recorded in
# files/testkit/src/llm_monitor_testkit/samples/vllm/series.json); block_size and the older ones are above.
VLLM_CACHE_CONFIG_LABELS = (
    "_block_size_resolved", "attn_group_size", "effective_attention_block_size",
    "enable_mamba_fine_grained_prefix_cache", "is_attention_free", "kv_cache_dtype_skip_layers", "kv_cache_layout",
    "kv_cache_max_concurrency", "kv_cache_memory_bytes", "kv_cache_size_tokens", "kv_offloading_backend",
    "kv_offloading_size", "kv_sharing_fast_prefill", "mamba_block_size", "mamba_cache_dtype", "mamba_cache_mode",
    "mamba_page_size_padded", "mamba_ssm_cache_dtype", "num_cpu_blocks", "num_gpu_blocks_override",
    "prefix_cache_retention_interval", "prefix_caching_hash_algo", "prefix_match_unit", "replayssm_buffer_len",
    "skip_page_size_padded", "sliding_window", "use_kda_recoverssm", "use_replayssm", "user_specified_block_size",
    "user_specified_mamba_block_size",
)  # fmt: skip
RESERVED_LABELS.update({name: "vLLM (cache_config_info)" for name in VLLM_CACHE_CONFIG_LABELS})

RESERVED_LABEL_PREFIXES: tuple[str, ...] = ("__", "exported_", "litellm_")
# LiteLLM's caller labels a fleet label may take anyway (see above): the litellm job renames LiteLLM's on a clash.
RENAMED_ON_CLASH: dict[str, str] = {"team": "LiteLLM", "user": "LiteLLM"}


def reserved_label(name: str) -> str | None:
    """Who sets the label `name`, or None when a fleet label may take it."""
    if name in RESERVED_LABELS:
        return RESERVED_LABELS[name]
    prefix = next((p for p in RESERVED_LABEL_PREFIXES if name.startswith(p)), None)
    return f"Prometheus (names starting with {prefix!r})" if prefix else None


def truthy(value: Any) -> bool:
    """Ansible's reading of a boolean that may arrive as a string ('false', 'no', '0', ...)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "off", "0", "n", "f", "")
    return bool(value)


def exporters_for_host(
    host_vars: Mapping[str, Any], groups: Mapping[str, Iterable[str]], host: str
) -> list[dict[str, Any]]:
    """Decide, for one host, every exporter's enabled state, port, user and Docker access.

    `host_vars` holds the variables set for the host (inventory, play or role variables, facts); a variable it does
    not hold takes the catalog's default. Ports are returned as given: the caller validates them and names the host.
    """
    docker_found = truthy(host_vars.get(DOCKER_FACT, False))
    decided: list[dict[str, Any]] = []
    for exporter in EXPORTERS:
        default_on = (
            any(host in (groups.get(group) or ()) for group in exporter.groups)
            or (exporter.on_with_docker and docker_found)
            or bool(exporter.on_when_set and host_vars.get(exporter.on_when_set))
        )
        enabled = host_vars.get(exporter.enabled_var)
        docker = False
        if exporter.docker_var is not None:
            setting = host_vars.get(exporter.docker_var)
            if exporter.docker_when is True:
                docker = truthy(docker_found if setting is None else setting)
            else:
                docker = (exporter.docker_when if setting is None else setting) == exporter.docker_when
        decided.append(
            {
                "name": exporter.name,
                "job": exporter.job,
                "unit": exporter.unit,
                "enabled": default_on if enabled is None else truthy(enabled),
                "port": host_vars.get(exporter.port_var, exporter.default_port),
                "port_var": exporter.port_var,
                "user": str(host_vars.get(exporter.user_var) or exporter.default_user),
                "docker": docker,
            }
        )
    return decided

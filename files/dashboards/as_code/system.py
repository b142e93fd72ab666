"""The system folder: server health (node_exporter), GPU usage (the GPU exporter), Docker containers (the
containers exporter)."""

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
    with_panels,
)
from .common import timeseries_panel as ts

H = HOST_FILTER
#: the GPU exporter's series of the chosen hosts and GPUs
G = f'job="gpu", {H}, gpu=~"$gpu"'
#: the containers exporter's series of the chosen hosts and containers
C = f'job="containers", {H}, name=~"$container"'


def server_health() -> Dashboard:
    d = new_dashboard(
        "server-health",
        "Server health",
        "CPU, load, memory, disks, network and systemd of every host (node_exporter)",
        host_variables(),
        links=[("GPU usage", "gpu-usage"), ("Docker containers", "docker-containers")],
    )
    panels = [
        stat_panel(
            "Hosts up",
            "node_exporter targets of the chosen hosts that answer their scrape",
            "none",
            [Query(f'sum(up{{job="node", {H}}})')],
        ),
        stat_panel(
            "Failed systemd units",
            "systemd units in state failed on the chosen hosts",
            "none",
            [Query(f'sum(node_systemd_unit_state{{state="failed", {H}}})')],
        ),
        stat_panel(
            "Uptime (shortest)",
            "Time since the most recently booted of the chosen hosts booted",
            "s",
            [Query(f"min(time() - node_boot_time_seconds{{{H}}})")],
        ),
        stat_panel(
            "Memory available (lowest)",
            "Lowest share of memory available on any of the chosen hosts",
            "percentunit",
            [Query(f"min(node_memory_MemAvailable_bytes{{{H}}} / node_memory_MemTotal_bytes{{{H}}})")],
        ),
        ts(
            "CPU busy",
            "Share of CPU time not idle, per host (all cores)",
            "percentunit",
            [
                Query(
                    f'1 - avg by (host) (rate(node_cpu_seconds_total{{mode="idle", {H}}}[$__rate_interval]))',
                    "{{host}}",
                )
            ],
            min_value=0,
            max_value=1,
        ),
        ts(
            "Load per core",
            "15-minute load average divided by the number of cores, per host: above 1 means runnable work waits",
            "none",
            [
                Query(
                    f'node_load15{{{H}}} / on (host) count by (host) (node_cpu_seconds_total{{mode="idle", {H}}})',
                    "{{host}}",
                )
            ],
        ),
        ts(
            "Memory used",
            "Share of memory in use (total minus available), per host",
            "percentunit",
            [Query(f"1 - node_memory_MemAvailable_bytes{{{H}}} / node_memory_MemTotal_bytes{{{H}}}", "{{host}}")],
            min_value=0,
            max_value=1,
        ),
        ts(
            "Pressure stall",
            "Share of time some task waited for CPU, memory or IO (PSI), per host",
            "percentunit",
            [
                Query(f"rate(node_pressure_cpu_waiting_seconds_total{{{H}}}[$__rate_interval])", "{{host}} cpu"),
                Query(f"rate(node_pressure_memory_waiting_seconds_total{{{H}}}[$__rate_interval])", "{{host}} memory"),
                Query(f"rate(node_pressure_io_waiting_seconds_total{{{H}}}[$__rate_interval])", "{{host}} io"),
            ],
        ),
        ts(
            "Disk used",
            "Share of each real filesystem in use, per host and mount point",
            "percentunit",
            [
                Query(
                    f'1 - node_filesystem_avail_bytes{{fstype!~"tmpfs|overlay|squashfs", {H}}}'
                    f' / node_filesystem_size_bytes{{fstype!~"tmpfs|overlay|squashfs", {H}}}',
                    "{{host}} {{mountpoint}}",
                )
            ],
            min_value=0,
            max_value=1,
        ),
        ts(
            "Disk available in 24 h (linear forecast)",
            "Bytes available in 24 hours at the rate of the last 6 hours, per host and mount point: below 0 fills",
            "bytes",
            [
                Query(
                    f'predict_linear(node_filesystem_avail_bytes{{fstype!~"tmpfs|overlay|squashfs", {H}}}[6h], 86400)',
                    "{{host}} {{mountpoint}}",
                )
            ],
        ),
        ts(
            "Network traffic",
            "Bytes received (positive) and sent (negative) per second, per host and interface (loopback excluded)",
            "Bps",
            [
                Query(
                    f'rate(node_network_receive_bytes_total{{device!="lo", {H}}}[$__rate_interval])',
                    "{{host}} {{device}} in",
                ),
                Query(
                    f'-rate(node_network_transmit_bytes_total{{device!="lo", {H}}}[$__rate_interval])',
                    "{{host}} {{device}} out",
                ),
            ],
        ),
        ts(
            "Network errors",
            "Receive and transmit errors per second, per host and interface",
            "pps",
            [
                Query(
                    f"rate(node_network_receive_errs_total{{{H}}}[$__rate_interval])"
                    f" + rate(node_network_transmit_errs_total{{{H}}}[$__rate_interval])",
                    "{{host}} {{device}}",
                )
            ],
        ),
        table_panel(
            "Failed systemd units",
            "Every systemd unit in state failed, per host",
            "none",
            [Query(f'node_systemd_unit_state{{state="failed", {H}}} == 1')],
        ),
    ]
    return with_panels(d, panels)


def gpu_usage() -> Dashboard:
    d = new_dashboard(
        "gpu-usage",
        "GPU usage",
        "Utilisation, memory, temperature, power, clocks, throttling and errors of every GPU (the GPU exporter)",
        [
            *host_variables(),
            label_variable("gpu", f'llm_monitor_gpu_up{{job="gpu", {H}}}', title="GPU"),
        ],
        links=[("Server health", "server-health"), ("vLLM servers", "vllm-docker-status")],
    )
    legend = "{{host}} GPU {{gpu}}"
    panels = [
        stat_panel(
            "GPUs up",
            "GPUs of the chosen hosts the exporter can query",
            "none",
            [Query(f"sum(llm_monitor_gpu_up{{{G}}})")],
        ),
        stat_panel(
            "Average utilisation",
            "Mean utilisation over the chosen GPUs",
            "percentunit",
            [Query(f"avg(llm_monitor_gpu_utilization_ratio{{{G}}})")],
        ),
        stat_panel(
            "Memory used",
            "Memory used over memory total of the chosen GPUs",
            "percentunit",
            [Query(f"sum(llm_monitor_gpu_memory_used_bytes{{{G}}}) / sum(llm_monitor_gpu_memory_total_bytes{{{G}}})")],
        ),
        stat_panel(
            "Power",
            "Power drawn by the chosen GPUs together",
            "watt",
            [Query(f"sum(llm_monitor_gpu_power_watts{{{G}}})")],
        ),
        ts(
            "Utilisation",
            "Share of time a kernel ran on the GPU (NVML utilisation), per GPU",
            "percentunit",
            [Query(f"llm_monitor_gpu_utilization_ratio{{{G}}}", legend)],
            min_value=0,
            max_value=1,
        ),
        ts(
            "SM and tensor activity",
            "Share of cycles the SMs were active and the tensor pipes were busy (profiling metrics, where the GPU"
            " supports them)",
            "percentunit",
            [
                Query(f"llm_monitor_gpu_sm_active_ratio{{{G}}}", legend + " SM"),
                Query(f"llm_monitor_gpu_tensor_active_ratio{{{G}}}", legend + " tensor"),
                Query(f"llm_monitor_gpu_dram_active_ratio{{{G}}}", legend + " DRAM"),
            ],
            min_value=0,
            max_value=1,
        ),
        ts(
            "Memory used and total",
            "Frame-buffer memory used, and each GPU's total",
            "bytes",
            [
                Query(f"llm_monitor_gpu_memory_used_bytes{{{G}}}", legend + " used"),
                Query(f"llm_monitor_gpu_memory_total_bytes{{{G}}}", legend + " total"),
            ],
        ),
        ts(
            "Temperature against slowdown",
            "Core temperature minus each GPU's own slowdown temperature: at 0 the GPU slows down its clocks",
            "celsius",
            [
                Query(
                    f"llm_monitor_gpu_temperature_celsius{{{G}}} - ignoring (limit)"
                    f' llm_monitor_gpu_temperature_limit_celsius{{limit="slowdown", {G}}}',
                    legend,
                )
            ],
        ),
        ts(
            "Temperature",
            "Core and memory temperature, per GPU",
            "celsius",
            [
                Query(f"llm_monitor_gpu_temperature_celsius{{{G}}}", legend + " core"),
                Query(f"llm_monitor_gpu_memory_temperature_celsius{{{G}}}", legend + " memory"),
            ],
        ),
        ts(
            "Power against limit",
            "Power drawn over the power limit that is enforced, per GPU",
            "percentunit",
            [Query(f"llm_monitor_gpu_power_watts{{{G}}} / llm_monitor_gpu_power_limit_watts{{{G}}}", legend)],
            min_value=0,
        ),
        ts(
            "Clocks",
            "SM and memory clocks, per GPU",
            "hertz",
            [Query(f'llm_monitor_gpu_clock_hertz{{clock=~"sm|memory", {G}}}', legend + " {{clock}}")],
        ),
        ts(
            "Throttling",
            "Share of time the clocks were held down, per GPU and reason (idle excluded)",
            "percentunit",
            [
                Query(
                    f'rate(llm_monitor_gpu_clock_throttle_seconds_total{{reason!="gpu_idle", {G}}}[$__rate_interval])',
                    legend + " {{reason}}",
                )
            ],
        ),
        ts(
            "ECC and XID errors",
            "Uncorrectable/correctable ECC errors and XID errors per second, per GPU",
            "cps",
            [
                Query(f"rate(llm_monitor_gpu_ecc_errors_total{{{G}}}[$__rate_interval])", legend + " ECC {{type}}"),
                Query(
                    f"sum by (host, gpu, xid) (rate(llm_monitor_gpu_xid_errors_total{{{G}}}[$__rate_interval]))",
                    legend + " XID {{xid}}",
                ),
            ],
        ),
        ts(
            "Memory per process",
            "GPU memory each process uses, with its container id and MIG instance",
            "bytes",
            [
                Query(
                    f"llm_monitor_gpu_process_memory_used_bytes{{{G}}}",
                    "{{host}} GPU {{gpu}} {{process_name}} {{container_id}} {{gpu_instance}}",
                )
            ],
        ),
        table_panel(
            "MIG mode",
            "Whether MIG is enabled on each GPU (1), and the mode pending a reset",
            "none",
            [
                Query(f"llm_monitor_gpu_mig_mode{{{G}}}"),
                Query(f"llm_monitor_gpu_mig_mode_pending{{{G}}}"),
            ],
        ),
    ]
    return with_panels(d, panels)


def docker_containers() -> Dashboard:
    d = new_dashboard(
        "docker-containers",
        "Docker containers",
        "State, restarts, CPU, memory and OOM kills of the containers on every host (the containers exporter)",
        [
            *host_variables(),
            label_variable("container", f'llm_monitor_container_state{{job="containers", {H}}}', "name", "Container"),
        ],
        links=[("Server health", "server-health")],
    )
    legend = "{{host}} {{name}}"
    panels = [
        stat_panel(
            "Running",
            "Containers of the chosen hosts in state running",
            "none",
            [Query(f'sum(llm_monitor_container_state{{state="running", {C}}})')],
        ),
        stat_panel(
            "Not running",
            "Containers of the chosen hosts in any other state (created, exited, paused, restarting, dead)",
            "none",
            [Query(f'sum(llm_monitor_container_state{{state!="running", {C}}})')],
        ),
        stat_panel(
            "Unhealthy",
            "Containers whose health check reports unhealthy",
            "none",
            [Query(f'sum(llm_monitor_container_health_status{{status="unhealthy", {C}}})')],
        ),
        stat_panel(
            "OOM kills (range)",
            "OOM kills of the chosen containers over the dashboard's time range",
            "none",
            [Query(f"sum(increase(llm_monitor_container_oom_kills_total{{{C}}}[$__range]))")],
        ),
        table_panel(
            "Container state",
            "Each container's current state, image and compose service",
            "none",
            [Query(f"llm_monitor_container_state{{{C}}} == 1")],
        ),
        ts(
            "Restarts",
            "Container restarts over 15 minutes, per container",
            "none",
            [Query(f"increase(llm_monitor_container_restarts_total{{{C}}}[15m])", legend)],
        ),
        ts(
            "CPU",
            "CPU time used per second (1 = one core), per container",
            "none",
            [Query(f"rate(container_cpu_usage_seconds_total{{{C}}}[$__rate_interval])", legend)],
        ),
        ts(
            "Memory working set",
            "Working-set memory, per container",
            "bytes",
            [Query(f"container_memory_working_set_bytes{{{C}}}", legend)],
        ),
        ts(
            "Memory against limit",
            "Working set over the memory limit, for containers that have a limit",
            "percentunit",
            [
                Query(
                    f"container_memory_working_set_bytes{{{C}}} / (container_spec_memory_limit_bytes{{{C}}} > 0)",
                    legend,
                )
            ],
        ),
        ts(
            "OOM kills",
            "OOM kills over 15 minutes, per container",
            "none",
            [Query(f"increase(llm_monitor_container_oom_kills_total{{{C}}}[15m])", legend)],
        ),
        ts(
            "CPU throttling",
            "Share of CFS periods in which the container was throttled",
            "percentunit",
            [
                Query(
                    f"rate(container_cpu_cfs_throttled_periods_total{{{C}}}[$__rate_interval])"
                    f" / rate(container_cpu_cfs_periods_total{{{C}}}[$__rate_interval])",
                    legend,
                )
            ],
        ),
    ]
    return with_panels(d, panels)


DASHBOARDS = (server_health, gpu_usage, docker_containers)

"""The announcements folder: the system status page, the fleet at a glance (hosts and exporters down, alerts firing
in Prometheus and in Alertmanager) with the maintenance notes of the inventory."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from .common import (
    HOST_FILTER,
    MAINTENANCE_NOTES_MARKER,
    Query,
    alert_groups_panel,
    alert_list_panel,
    host_variables,
    new_dashboard,
    stat_panel,
    table_panel,
    text_panel,
    with_panels,
)

H = HOST_FILTER
#: the scrape jobs of the collection's exporters (plugins/module_utils/fleet_catalog.py EXPORTERS)
EXPORTER_JOBS = "gpu|containers|vllm_exporter|litellm_exporter|langfuse|ollama_proxy"


def system_status() -> Dashboard:
    d = new_dashboard(
        "system-status",
        "System status",
        "The fleet at a glance: hosts and exporters down, alerts firing (Prometheus and Alertmanager), maintenance"
        " notes",
        host_variables(),
        links=[("Fleet overview", "fleet-overview"), ("Server health", "server-health")],
    )
    panels = [
        stat_panel(
            "Hosts down",
            "Hosts of the chosen datacenters and teams whose node_exporter does not answer",
            "none",
            [Query(f'count(up{{job="node", {H}}} == 0) or vector(0)')],
        ),
        stat_panel(
            "Exporters down",
            "Exporters of the collection (GPU, containers, vLLM, LiteLLM, Langfuse, Ollama proxy) on the chosen"
            " hosts that do not answer their scrape",
            "none",
            [Query(f'count(up{{job=~"{EXPORTER_JOBS}", {H}}} == 0) or vector(0)')],
        ),
        stat_panel(
            "Alerts firing",
            "Alerts firing now in Prometheus, all severities, the whole fleet",
            "none",
            [Query('count(ALERTS{alertstate="firing"}) or vector(0)')],
        ),
        stat_panel(
            "Critical alerts firing",
            "Alerts of severity critical firing now in Prometheus, the whole fleet",
            "none",
            [Query('count(ALERTS{alertstate="firing", severity="critical"}) or vector(0)')],
        ),
        text_panel(
            "Maintenance notes",
            "Planned maintenance and notices, from the inventory's grafana_maintenance_notes (set at deploy time)",
            MAINTENANCE_NOTES_MARKER,
            width=24,
            height=6,
        ),
        alert_groups_panel(
            "Alertmanager alerts",
            "The alerts Alertmanager holds now, in its groups, each with its state (active, or suppressed: silenced"
            " or inhibited), through the Alertmanager data source",
            height=10,
        ),
        alert_list_panel(
            "Alert rules firing",
            "Alert rules firing or pending, with their instances, from the rule sources Grafana reads (Prometheus's"
            " rules through its data source)",
            height=10,
        ),
        table_panel(
            "Hosts down",
            "Each host of the chosen datacenters and teams whose node_exporter does not answer",
            "none",
            [Query(f'up{{job="node", {H}}} == 0')],
            width=12,
        ),
        table_panel(
            "Targets down",
            "Every other scrape target of the chosen hosts that does not answer: exporters, vLLM, LiteLLM, Prometheus,"
            " Alertmanager",
            "none",
            [Query(f'up{{job!="node", {H}}} == 0')],
            width=12,
        ),
        table_panel(
            "Alerts firing",
            "Every alert firing now in Prometheus, with its labels (ALERTS)",
            "none",
            [Query('ALERTS{alertstate="firing"}')],
        ),
    ]
    return with_panels(d, panels)


DASHBOARDS = (system_status,)

"""The shared parts of every dashboard: the datasource variable, the label variables, panels that require a unit,
stable uids."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, text, timeseries
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_models
from grafana_foundation_sdk.models import text as text_models

#: the name of the datasource template variable every panel and query uses
DATASOURCE_VAR = "datasource"
UID_PREFIX = "llm-monitor-"
UID_MAX = 40
#: a host's fleet labels the dashboards filter by, besides host
FLEET_LABELS = ("datacenter", "team")
#: host=~"$host" plus the fleet labels, for selectors on any target's series
HOST_FILTER = 'datacenter=~"$datacenter", team=~"$team", host=~"$host"'
#: the Alertmanager data source the grafana role provisions. Grafana's alert groups panel names its Alertmanager by
#: the data source's name (its option takes no uid and no template variable), so the role must give it this name.
ALERTMANAGER_DATASOURCE_UID = "llm-monitor-alertmanager"
ALERTMANAGER_DATASOURCE_NAME = "Alertmanager"
#: the whole markdown of the Maintenance notes text panel: the grafana role replaces it at deploy time with the
#: inventory's grafana_maintenance_notes (the llm_monitor.fleet.dashboard_with_notes filter)
MAINTENANCE_NOTES_MARKER = "LLM_MONITOR_MAINTENANCE_NOTES"
PANEL_WIDTH = 12
PANEL_HEIGHT = 8
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def datasource_ref() -> model.DataSourceRef:
    """The Prometheus datasource the dashboard's ``datasource`` variable selects."""
    return model.DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_VAR + "}")


def uid(name: str) -> str:
    """The dashboard's stable uid: llm-monitor-<name>, at most 40 characters."""
    if not _NAME.match(name):
        raise ValueError(f"dashboard name {name!r}: lower-case letters, digits and dashes only")
    value = UID_PREFIX + name
    if len(value) > UID_MAX:
        raise ValueError(f"uid {value!r} is longer than {UID_MAX} characters")
    return value


def datasource_variable() -> dash.DatasourceVariable:
    return (
        dash.DatasourceVariable(DATASOURCE_VAR)
        .label("Data source")
        .type("prometheus")
        .description("The Prometheus of the fleet")
    )


def label_variable(name: str, selector: str, label: str | None = None, title: str | None = None) -> dash.QueryVariable:
    """A query variable of the values of a label on the series ``selector`` selects (which may use the variables
    before it: chained), multi-value and with All (.*)."""
    return (
        dash.QueryVariable(name)
        .label(title or name)
        .description(f"Values of the label {label or name} on {selector}")
        .datasource(datasource_ref())
        .query(f"label_values({selector}, {label or name})")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def host_variables() -> list[dash.QueryVariable]:
    """datacenter and team, then host filtered by both."""
    return [
        label_variable("datacenter", "up"),
        label_variable("team", 'up{datacenter=~"$datacenter"}'),
        label_variable("host", 'up{datacenter=~"$datacenter", team=~"$team"}'),
    ]


@dataclass(frozen=True)
class Query:
    """A PromQL expression and the legend of its series."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def _target(q: Query, ref_id: str) -> prometheus.Dataquery:
    t = prometheus.Dataquery().expr(q.expr).ref_id(ref_id).datasource(datasource_ref())
    if q.legend:
        t = t.legend_format(q.legend)
    t = t.instant() if q.instant else t.range()
    if q.table:
        t = t.format(prometheus_models.PromQueryFormat.TABLE)
    return t


def _ref_ids(queries: Sequence[Query]) -> list[tuple[Query, str]]:
    if not queries:
        raise ValueError("a panel needs at least one query")
    return [(q, chr(ord("A") + i)) for i, q in enumerate(queries)]


_Panel = TypeVar("_Panel", timeseries.Panel, stat.Panel, table.Panel)


def _panel(
    panel: _Panel, title: str, description: str, unit: str, queries: Sequence[Query], width: int, height: int
) -> _Panel:
    """What every panel has: a title, a description and a unit (all required), the datasource variable, a size,
    and its queries."""
    if not unit:
        raise ValueError(f"panel {title!r}: a unit is required")
    if not description:
        raise ValueError(f"panel {title!r}: a description is required")
    panel = panel.title(title).description(description).unit(unit).datasource(datasource_ref())
    panel = panel.span(width).height(height)
    for q, ref in _ref_ids(queries):
        panel = panel.with_target(_target(q, ref))
    return panel


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = PANEL_WIDTH,
    height: int = PANEL_HEIGHT,
    min_value: float | None = None,
    max_value: float | None = None,
) -> timeseries.Panel:
    panel = _panel(timeseries.Panel(), title, description, unit, queries, width, height).legend(
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(common_models.LegendDisplayMode.TABLE)
        .placement(common_models.LegendPlacement.BOTTOM)
        .calcs(["mean", "max", "lastNotNull"])
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def stat_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 6,
    height: int = 4,
    links: Sequence[dash.DashboardLink] = (),
) -> stat.Panel:
    panel = _panel(stat.Panel(), title, description, unit, queries, width, height).reduce_options(
        common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    )
    if links:
        panel = panel.links(list(links))
    return panel


def table_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 24,
    height: int = PANEL_HEIGHT,
    mappings: Sequence[model.ValueMapping] = (),
) -> table.Panel:
    """A table of instant queries (format table); ``mappings``: value mappings of its values (value_text)."""
    instant = [Query(q.expr, q.legend, instant=True, table=True) for q in queries]
    panel = _panel(table.Panel(), title, description, unit, instant, width, height)
    if mappings:
        panel = panel.mappings(list(mappings))
    return panel


def value_text(texts: dict[int, tuple[str, str]]) -> list[model.ValueMapping]:
    """Value mappings {value: (text, colour)}, e.g. a state 1/0 shown as serving/down."""
    return [
        model.ValueMap(options={str(v): model.ValueMappingResult(text=t, color=c, index=i)})
        for i, (v, (t, c)) in enumerate(sorted(texts.items()))
    ]


def _bare(panel: Any, title: str, description: str, width: int, height: int) -> Any:
    """A panel without queries (text, alert list, alert groups): a title and a description (both required)."""
    if not description:
        raise ValueError(f"panel {title!r}: a description is required")
    return panel.title(title).description(description).span(width).height(height)


def text_panel(
    title: str, description: str, content: str, *, width: int = PANEL_WIDTH, height: int = PANEL_HEIGHT
) -> text.Panel:
    """A markdown text panel."""
    panel: text.Panel = _bare(text.Panel(), title, description, width, height)
    return panel.mode(text_models.TextMode.MARKDOWN).content(content)


def alert_list_panel(
    title: str, description: str, *, width: int = PANEL_WIDTH, height: int = PANEL_HEIGHT
) -> dash.Panel:
    """Grafana's alert list (type alertlist, Grafana 11/12): the alert rules firing or pending of every rule source
    Grafana reads, Grafana-managed and data source-managed (the Prometheus data source's rules, unless its "Manage
    alerts via Alerting UI" is off). Its datasource option can only narrow the list to one rule source, by name
    (Prometheus, Loki or Grafana; never an Alertmanager): it is left empty."""
    options = {
        "viewMode": "list",
        "groupMode": "default",
        "groupBy": [],
        "maxItems": 50,
        "sortOrder": 3,  # importance (firing first)
        "dashboardAlerts": False,
        "alertName": "",
        "alertInstanceLabelFilter": "",
        "showInstances": True,
        "showInactiveAlerts": False,
        "stateFilter": {
            "firing": True,
            "pending": True,
            "recovering": True,
            "noData": False,
            "normal": False,
            "error": True,
        },
    }
    panel: dash.Panel = _bare(dash.Panel().type("alertlist"), title, description, width, height)
    return panel.options(options)


def alert_groups_panel(
    title: str, description: str, *, width: int = PANEL_WIDTH, height: int = PANEL_HEIGHT
) -> dash.Panel:
    """Grafana's alert groups (type alertGroups): the alerts an Alertmanager holds, grouped as it groups them, as
    Grafana's Alertmanager data source reads them (silenced and inhibited ones included, marked). The panel names
    the Alertmanager data source by its name, ALERTMANAGER_DATASOURCE_NAME."""
    options = {"alertmanager": ALERTMANAGER_DATASOURCE_NAME, "expandAll": False, "labels": ""}
    panel: dash.Panel = _bare(dash.Panel().type("alertGroups"), title, description, width, height)
    return panel.options(options)


def dashboard_link(title: str, name: str) -> dash.DashboardLink:
    """A link to another dashboard of the collection by uid, keeping the time range and the variables."""
    return (
        dash.DashboardLink(title)
        .type(model.DashboardLinkType.LINK)
        .url(f"/d/{uid(name)}")
        .include_vars(True)
        .keep_time(True)
    )


def with_panels(d: dash.Dashboard, panels: Sequence[Any]) -> dash.Dashboard:
    """The dashboard with the panels, in order (the generator lays them out by span and height)."""
    for p in panels:
        d = d.with_panel(p)
    return d


def new_dashboard(
    name: str,
    title: str,
    description: str,
    variables: Sequence[dash.QueryVariable],
    links: Sequence[tuple[str, str]] = (),
) -> dash.Dashboard:
    """A dashboard with the stable uid, the datasource variable first, then ``variables``; ``links``: (title, name)
    of dashboards to link to."""
    d = (
        dash.Dashboard(title)
        .uid(uid(name))
        .description(description)
        .tags(["llm-monitor"])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource_variable())
    )
    for v in variables:
        d = d.with_variable(v)
    for link_title, target in links:
        d = d.link(dashboard_link(link_title, target))
    return d

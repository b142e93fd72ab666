"""Grafana dashboards of the llm_monitor.fleet collection, as code (grafana-foundation-sdk).

Each folder module has a ``DASHBOARDS`` tuple of builder functions; :data:`FOLDERS` maps a Grafana folder to them.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders.dashboard import Dashboard

from . import analytics, fleet, llm, system

#: Grafana folder -> the functions that build its dashboards, in the order they are listed
FOLDERS: dict[str, tuple[Callable[[], Dashboard], ...]] = {
    "fleet": fleet.DASHBOARDS,
    "system": system.DASHBOARDS,
    "llm": llm.DASHBOARDS,
    "analytics": analytics.DASHBOARDS,
}

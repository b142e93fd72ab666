"""Grafana dashboards of the llm_monitor.fleet collection, as code (grafana-foundation-sdk).

Each folder module has a ``DASHBOARDS`` tuple of builder functions; :data:`FOLDERS` maps a Grafana folder to them.
:data:`MAINTENANCE_NOTES_MARKER` is the content of the system status's Maintenance notes panel, which the grafana role
replaces at deploy time.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders.dashboard import Dashboard

from . import analytics, announcements, fleet, llm, system
from .common import MAINTENANCE_NOTES_MARKER

__all__ = ["FOLDERS", "MAINTENANCE_NOTES_MARKER"]

#: Grafana folder -> the functions that build its dashboards, in the order they are listed
FOLDERS: dict[str, tuple[Callable[[], Dashboard], ...]] = {
    "fleet": fleet.DASHBOARDS,
    "system": system.DASHBOARDS,
    "llm": llm.DASHBOARDS,
    "analytics": analytics.DASHBOARDS,
    "announcements": announcements.DASHBOARDS,
}

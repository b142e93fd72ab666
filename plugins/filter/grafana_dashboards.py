"""Filters of the grafana role over the collection's dashboards (files/dashboards/<folder>/<name>.json)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

#: the whole markdown of the text panels the notes go into (files/dashboards/as_code MAINTENANCE_NOTES_MARKER)
MAINTENANCE_NOTES_MARKER = "LLM_MONITOR_MAINTENANCE_NOTES"
#: what the panels say when the inventory has no notes
NO_NOTES = "No maintenance planned."

DOCUMENTATION = r"""
name: dashboard_with_notes
short_description: A dashboard's JSON with the maintenance notes in its text panels
description:
  - Parses a dashboard's JSON and replaces the marker C(LLM_MONITOR_MAINTENANCE_NOTES) in the content of its text
    panels (rows' panels included) with the notes, Markdown as the inventory gives it; empty notes give
    C(No maintenance planned.). Returns the JSON again, keys in the order they came, an indent of 2 and a
    trailing newline. A dashboard without the marker comes back unchanged in content.
  - Fails when the input is not the JSON of a dashboard (an object) or the notes are not a string.
positional: notes
options:
  _input:
    description: The dashboard's JSON text (a mapping, as Ansible may have parsed it already, is taken too).
    type: str
    required: true
  notes:
    description: The maintenance notes (Markdown), e.g. the inventory's C(grafana_maintenance_notes).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Install the system status dashboard with this inventory's maintenance notes
  ansible.builtin.copy:
    content: >-
      {{ lookup('ansible.builtin.file', 'dashboards/announcements/system-status.json')
         | llm_monitor.fleet.dashboard_with_notes(grafana_maintenance_notes | default('')) }}
    dest: /var/lib/grafana/dashboards/announcements/system-status.json
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The dashboard's JSON text, the marker replaced.
  type: str
"""


def _panels(panels: Any) -> list[dict[str, Any]]:
    """Every panel of a panel list, the panels of its rows (collapsed or not) included."""
    out: list[dict[str, Any]] = []
    for p in panels if isinstance(panels, list) else []:
        if isinstance(p, dict):
            out.append(p)
            out.extend(_panels(p.get("panels")))
    return out


def dashboard_with_notes(json_text: str | Mapping[str, Any], notes: str | None) -> str:
    if notes is None:
        notes = ""
    if not isinstance(notes, str):
        raise AnsibleFilterError(f"llm_monitor.fleet.dashboard_with_notes: notes must be a string, not {notes!r}")
    if isinstance(json_text, Mapping):
        board: Any = json.loads(json.dumps(json_text))  # a deep copy: the input stays as it was
    else:
        try:
            board = json.loads(str(json_text))
        except ValueError as exc:
            raise AnsibleFilterError(f"llm_monitor.fleet.dashboard_with_notes: not JSON: {exc}") from None
    if not isinstance(board, dict):
        raise AnsibleFilterError("llm_monitor.fleet.dashboard_with_notes: not a dashboard (a JSON object)")
    text = notes if notes.strip() else NO_NOTES
    for panel in _panels(board.get("panels")):
        options = panel.get("options")
        if panel.get("type") != "text" or not isinstance(options, dict):
            continue
        content = options.get("content")
        if isinstance(content, str) and MAINTENANCE_NOTES_MARKER in content:
            options["content"] = content.replace(MAINTENANCE_NOTES_MARKER, text)
    return json.dumps(board, sort_keys=False, indent=2, ensure_ascii=False) + "\n"


class FilterModule:
    """llm_monitor.fleet Grafana dashboard filters."""

    def filters(self) -> dict[str, Any]:
        return {"dashboard_with_notes": dashboard_with_notes}

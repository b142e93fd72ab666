"""The grafana role's dashboard_with_notes filter: the maintenance notes in the text panels of a dashboard's JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.llm_monitor.fleet.plugins.filter.grafana_dashboards import (
    MAINTENANCE_NOTES_MARKER,
    NO_NOTES,
    FilterModule,
    dashboard_with_notes,
)

REPO = Path(__file__).resolve().parents[2]
SYSTEM_STATUS = REPO / "files/dashboards/announcements/system-status.json"


def _board() -> dict[str, Any]:
    return {
        "uid": "u",
        "title": "t",
        "panels": [
            {"type": "text", "title": "Notes", "options": {"mode": "markdown", "content": MAINTENANCE_NOTES_MARKER}},
            {"type": "stat", "title": "Up", "options": {"content": MAINTENANCE_NOTES_MARKER}},
            {
                "type": "row",
                "title": "Collapsed",
                "panels": [
                    {
                        "type": "text",
                        "title": "Inner",
                        "options": {"content": f"## Soon\n\n{MAINTENANCE_NOTES_MARKER}"},
                    },
                    {"type": "text", "title": "Other", "options": {"content": "static text"}},
                ],
            },
        ],
    }


def _texts(board: dict[str, Any]) -> list[str]:
    out = []
    for p in board["panels"]:
        for q in [p, *p.get("panels", [])]:
            out.append(q.get("options", {}).get("content"))
    return out


def test_the_marker_is_replaced_in_text_panels_and_rows_only() -> None:
    notes = "**Saturday 02:00 UTC**: GPU driver upgrade on `gpu-07`, vLLM down for ~20 min. Née «ok»."
    out = dashboard_with_notes(json.dumps(_board()), notes)
    assert out.endswith("}\n") and not out.endswith("\n\n")
    board = json.loads(out)
    assert _texts(board) == [notes, MAINTENANCE_NOTES_MARKER, None, f"## Soon\n\n{notes}", "static text"]
    assert "Née «ok»" in out  # written as UTF-8, not escaped


def test_empty_notes_say_no_maintenance_is_planned() -> None:
    for empty in ("", "  \n", None):
        board = json.loads(dashboard_with_notes(json.dumps(_board()), empty))
        assert board["panels"][0]["options"]["content"] == NO_NOTES == "No maintenance planned."


def test_the_output_keeps_the_key_order_and_an_indent_of_2() -> None:
    text = json.dumps({"z": 1, "panels": [], "a": {"y": 2, "b": 3}}, indent=2) + "\n"
    assert dashboard_with_notes(text, "n") == text
    shipped = SYSTEM_STATUS.read_text()
    out = dashboard_with_notes(shipped, "n")
    assert list(json.loads(out)) == list(json.loads(shipped))
    assert out.replace('"content": "n"', f'"content": "{MAINTENANCE_NOTES_MARKER}"') == shipped


def test_the_shipped_system_status_gets_the_notes() -> None:
    board = json.loads(dashboard_with_notes(SYSTEM_STATUS.read_text(), "Rack B4 power work, Tuesday"))
    (notes,) = [p for p in board["panels"] if p["type"] == "text"]
    assert notes["title"] == "Maintenance notes" and notes["options"]["content"] == "Rack B4 power work, Tuesday"
    assert MAINTENANCE_NOTES_MARKER not in json.dumps(board)


def test_a_mapping_is_taken_and_left_as_it_was() -> None:
    board = _board()
    out = json.loads(dashboard_with_notes(board, "n"))
    assert out["panels"][0]["options"]["content"] == "n"
    assert board == _board()


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '"a string"'])
def test_what_is_not_a_dashboard_is_refused(bad: str) -> None:
    with pytest.raises(AnsibleFilterError, match="dashboard_with_notes"):
        dashboard_with_notes(bad, "n")


def test_notes_that_are_not_a_string_are_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="notes must be a string"):
        dashboard_with_notes("{}", ["a"])


def test_the_filter_is_registered_and_the_marker_is_the_dashboards() -> None:
    assert FilterModule().filters() == {"dashboard_with_notes": dashboard_with_notes}
    assert MAINTENANCE_NOTES_MARKER in SYSTEM_STATUS.read_text()

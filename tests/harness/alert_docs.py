#!/usr/bin/env python3
"""The alert table of docs/alerting.md, written from the catalog (files/rules/catalog/*.yml).

python tests/harness/alert_docs.py          # rewrite the table
python tests/harness/alert_docs.py --check  # exit 1 when it differs (tests/unit runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.llm_monitor.fleet.plugins.filter.alert_rules import read_catalog  # noqa: E402

DOC = REPO / "docs/alerting.md"
START, END = "<!-- alert table: tests/harness/alert_docs.py -->\n", "<!-- end of the alert table -->\n"


def table() -> str:
    rows = [
        "| Alert | Severity | Default threshold | `for` | Variables (`_threshold`, `_for`, `_enabled`) |\n",
        "|---|---|---|---|---|\n",
    ]
    for group in read_catalog(REPO / "files/rules/catalog"):
        rows.append(f"| **{group.name}** ({group.file}) | | | | |\n")
        for a in group.alerts:
            threshold = "" if a.threshold is None else f"{a.threshold:g} {a.unit}".strip()
            variable = f"`{a.variable}_*`" + (" (fleet-wide: group_vars/all)" if a.scope == "fleet" else "")
            link = f"[{a.name}](runbooks/{group.name}.md#{a.name.lower()})"
            rows.append(f"| {link} | {a.severity} | {threshold} | {a.for_} | {variable} |\n")
    return "".join(rows)


def rewritten() -> str:
    text = DOC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + table() + END + tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    new = rewritten()
    if parser.parse_args().check:
        if new != DOC.read_text():
            print("docs/alerting.md: the alert table is out of step; run python tests/harness/alert_docs.py")
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The "Variables" table of each role's README, written from its meta/argument_specs.yml (main entry point).

    python tests/harness/role_docs.py          # rewrite the tables in roles/*/README.md
    python tests/harness/role_docs.py --check  # exit 1 when a README's table differs (tests/unit runs this)

One source for what a variable means: the argument spec, which Ansible also checks the variables against.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HEADER = "| Variable | Default | Description |\n|---|---|---|\n"


def _default(spec: dict[str, Any]) -> str:
    if "default" not in spec:
        # exporters_<name>_enabled: decided by the exporter catalog; others: a template in defaults/main.yml
        return "from the exporter catalog" if spec.get("type") == "bool" else "see defaults/main.yml"
    value = spec["default"]
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return '""'
    if isinstance(value, (dict, list)):
        flow = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
        return flow if len(flow) <= 40 else "see defaults/main.yml"
    return str(value)


def table(role: Path) -> str:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    rows = []
    for name, spec in specs["main"]["options"].items():
        description = " ".join(str(spec.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{name}` | `{_default(spec)}` | {description} |\n")
    return HEADER + "".join(rows)


def rewrite(readme: Path, new_table: str) -> str:
    text = readme.read_text()
    start = text.index(HEADER)
    end = text.find("\n\n", start)
    end = len(text) if end < 0 else end + 1
    return text[:start] + new_table + text[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for readme in sorted(REPO.glob("roles/*/README.md")):
        if HEADER not in readme.read_text():
            continue
        updated = rewrite(readme, table(readme.parent))
        if updated != readme.read_text():
            stale.append(str(readme.relative_to(REPO)))
            if not args.check:
                readme.write_text(updated)
    if args.check and stale:
        print(f"variable tables out of step with meta/argument_specs.yml: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write the collection's Grafana dashboards, built as code in as_code/, as JSON.

Every dashboard goes to <out>/<folder>/<name>.json (the folder is its Grafana folder, the name its uid without the
llm-monitor- prefix), with sorted keys, an indent of 2 and a trailing newline. With --check nothing is written: the
exit status is 1, and the files are named, when a committed file differs from what would be written, is missing, or
is a stray (a .json file in a folder of dashboards that no dashboard writes).

    .venv/bin/python files/dashboards/generate.py           # regenerate
    .venv/bin/python files/dashboards/generate.py --check   # in CI and tests/unit/test_dashboards.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from as_code import FOLDERS
from as_code.common import UID_PREFIX
from grafana_foundation_sdk.cog.encoder import JSONEncoder

HERE = Path(__file__).resolve().parent


def render() -> dict[str, str]:
    """{folder/name.json: the dashboard's JSON text}."""
    out: dict[str, str] = {}
    for folder, builders in FOLDERS.items():
        for build in builders:
            board = build().build()
            uid = board.uid or ""
            if not uid.startswith(UID_PREFIX):
                raise ValueError(f"{folder}: dashboard {board.title!r} has no uid {UID_PREFIX}<name>")
            path = f"{folder}/{uid.removeprefix(UID_PREFIX)}.json"
            if path in out:
                raise ValueError(f"{path}: two dashboards with the uid {uid}")
            out[path] = json.dumps(board, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"
    return out


def out_of_date(root: Path, rendered: dict[str, str]) -> list[str]:
    """The files under root that differ from, are missing from or are not in ``rendered``."""
    stale = [p for p, text in rendered.items() if not (root / p).is_file() or (root / p).read_text() != text]
    for folder in FOLDERS:
        for f in sorted((root / folder).glob("*.json")):
            if f"{folder}/{f.name}" not in rendered:
                stale.append(f"{folder}/{f.name}")
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming out-of-date/stray files")
    parser.add_argument("--out", type=Path, default=HERE, help=f"the folder to write to (default: {HERE})")
    args = parser.parse_args(argv)
    root: Path = args.out
    rendered = render()
    stale = out_of_date(root, rendered)
    if args.check:
        for p in stale:
            print(f"out of date or stray: {root / p}", file=sys.stderr)
        if stale:
            print(f"regenerate with: {Path(sys.executable).name} {Path(__file__).name}", file=sys.stderr)
        return 1 if stale else 0
    for p, text in rendered.items():
        target = root / p
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
            print(f"wrote {target}")
    for p in stale:
        if p not in rendered:
            (root / p).unlink()
            print(f"removed stray {root / p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Line counts of the roles, and how many of one role's lines reappear in another after renaming the prefix.

    python bench/role_lines.py            # table of every role, then the repeated lines per pair
    python bench/role_lines.py --json     # the same figures as JSON

Line-duplicate finders for code do not read YAML, so this counts repeated role code itself: a line of role A
counts as repeated in role B when, with A's name replaced by B's (node_exporter_port -> prometheus_port) and
surrounding whitespace removed, it also occurs in B; "in blocks" counts only lines inside a run of 4 or more
consecutive lines that B has too (a copied block, rather than a common line such as `owner: root`). Blank lines,
comments and the `---` document marker are not counted. Counted: tasks/, handlers/, vars/ and templates/ (what a
role does), defaults/ separately.
"""

from __future__ import annotations

import argparse
import json
from itertools import permutations
from pathlib import Path

ROLES = Path(__file__).resolve().parents[1] / "roles"
CODE_DIRS = ("tasks", "handlers", "vars", "templates")
# A copied block: this many consecutive lines or more, the same in both roles.
RUN = 4


def lines(role: Path, dirs: tuple[str, ...] = CODE_DIRS) -> list[str]:
    out: list[str] = []
    for sub in dirs:
        for path in sorted((role / sub).rglob("*")) if (role / sub).is_dir() else []:
            if not path.is_file():
                continue
            for raw in path.read_text().splitlines():
                text = raw.strip()
                if text and text != "---" and not text.startswith("#"):
                    out.append(text)
    return out


def normalise(text: str, name: str) -> str:
    return text.replace(name, "ROLE")


def lines_in_runs(mine: list[str], theirs: list[str], run: int = RUN) -> int:
    """Lines of `mine` inside a run of `run` or more consecutive lines that also occur consecutively in `theirs`."""
    windows = {tuple(theirs[i : i + run]) for i in range(len(theirs) - run + 1)}
    covered = [False] * len(mine)
    for i in range(len(mine) - run + 1):
        if tuple(mine[i : i + run]) in windows:
            for j in range(i, i + run):
                covered[j] = True
    return sum(covered)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    roles = sorted(p for p in ROLES.iterdir() if (p / "tasks").is_dir())
    counts = {r.name: {"code": len(lines(r)), "defaults": len(lines(r, ("defaults",)))} for r in roles}
    normalised = {r.name: [normalise(t, r.name) for t in lines(r)] for r in roles}
    repeated: dict[str, int] = {}
    in_runs: dict[str, int] = {}
    for a, b in permutations(normalised, 2):
        theirs = set(normalised[b])
        repeated[f"{a} in {b}"] = sum(1 for t in normalised[a] if t in theirs)
        in_runs[f"{a} in {b}"] = lines_in_runs(normalised[a], normalised[b])
    if args.json:
        print(json.dumps({"lines": counts, "repeated": repeated, "in_blocks": in_runs}, indent=2))
        return 0
    print(f"{'role':<18} {'tasks+handlers+vars+templates':>30} {'defaults':>9}")
    for name, c in counts.items():
        print(f"{name:<18} {c['code']:>30} {c['defaults']:>9}")
    print(
        f"{'total':<18} {sum(c['code'] for c in counts.values()):>30} {sum(c['defaults'] for c in counts.values()):>9}"
    )
    print(f"\nlines of A that reappear in B (A's name renamed to B's): anywhere / in blocks of {RUN}+ lines")
    for pair, n in sorted(repeated.items(), key=lambda kv: -in_runs[kv[0]]):
        if n:
            a = pair.split(" in ")[0]
            print(f"  {pair:<40} {n:>5} / {in_runs[pair]:>4}  of {counts[a]['code']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

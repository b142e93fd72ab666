"""Shared test setup: the collection is importable as ansible_collections.llm_monitor.fleet."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "collections", REPO / "tests" / "harness"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

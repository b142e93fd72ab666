"""Shared helpers of the testkit's tests: free ports, polling, a tiny exposition parser, bounded asyncio runs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"

#: a fast simulated Ollama: 8 tokens, 5 ms apart, first after 10 ms
FAST = {"tokens": 8, "token_interval": 0.005, "first_token_delay": 0.01}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 10, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


def parse_samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def value(samples: dict[str, list[tuple[dict[str, str], float]]], metric: str, /, **labels: str) -> float | None:
    for lbls, val in samples.get(metric, []):
        if all(lbls.get(k) == v for k, v in labels.items()):
            return val
    return None


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())

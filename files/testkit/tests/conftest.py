"""Shared helpers of the testkit's tests: free ports, polling, a tiny exposition parser, bounded asyncio runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from llm_monitor_testkit.checks import free_port, parse_samples, value, wait_for  # noqa: F401 - the tests import them from here

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"

#: a fast simulated Ollama: 8 tokens, 5 ms apart, first after 10 ms
FAST = {"tokens": 8, "token_interval": 0.005, "first_token_delay": 0.01}


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())

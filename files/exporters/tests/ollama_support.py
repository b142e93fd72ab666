"""Helpers for the Ollama proxy / simulator / traffic tests: one event loop with a simulator and a proxy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from llm_monitor_testkit.ollama_sim import UPSTREAM_VERSION, OllamaSimulator

from conftest import parse_samples
from llm_monitor_exporters.core.webconfig import WebConfig
from llm_monitor_exporters.ollama.ollama_proxy import OllamaProxy, OllamaProxyConfig

T = TypeVar("T")

FAST = {"tokens": 8, "token_interval": 0.005, "first_token_delay": 0.01}


@dataclass
class Stack:
    sim: OllamaSimulator
    proxy: OllamaProxy
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.proxy_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.metrics_port}/metrics"

    async def metrics_text(self) -> str:
        async with self.session.get(self.metrics_url) as r:
            assert r.status == 200
            return await r.text()

    async def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        return parse_samples(await self.metrics_text())

    async def error_count(self, kind: str) -> float:
        s = await self.samples()
        for labels, v in s["llm_monitor_ollama_errors_total"]:
            if labels["kind"] == kind:
                return v
        raise AssertionError(kind)

    async def still_serving(self) -> None:
        async with self.session.get(self.url + "/api/version") as r:
            assert r.status == 200, r.status
            assert await r.json() == {"version": UPSTREAM_VERSION}


@contextlib.asynccontextmanager
async def stack(
    scenario: str = "normal",
    sim_kwargs: dict[str, Any] | None = None,
    web: WebConfig | None = None,
    upstream_port: int | None = None,
    **cfg: Any,
) -> AsyncIterator[Stack]:
    sim = OllamaSimulator(scenario, **{**FAST, **(sim_kwargs or {})})
    port = await sim.start("127.0.0.1", 0)
    config = OllamaProxyConfig(upstream_url=f"http://127.0.0.1:{upstream_port or port}", **cfg)
    proxy = OllamaProxy(config, web or WebConfig(), poll_interval=3600)
    await proxy.start("127.0.0.1:0", "127.0.0.1:0")
    session = aiohttp.ClientSession()
    try:
        # let the first background poll finish so its connections do not disturb the counts
        for _ in range(100):
            if proxy.self_metrics.collections:
                break
            await asyncio.sleep(0.01)
        yield Stack(sim, proxy, session)
    finally:
        await session.close()
        await proxy.close()
        await sim.close()


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())

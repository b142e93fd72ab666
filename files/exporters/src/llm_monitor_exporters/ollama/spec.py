"""``llm-monitor-exporter ollama_proxy``: flags, config section ``ollama_proxy:``, and its own asyncio server
(not a SnapshotLoop). Importing this module loads aiohttp."""

from __future__ import annotations

import argparse
from typing import Any

from llm_monitor_exporters.core.spec import ExporterSpec
from llm_monitor_exporters.ollama.ollama_proxy import OllamaProxyConfig, run, validate


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ollama proxy (--listen-address is the metrics address)")
    g.add_argument(
        "--proxy-listen-address",
        metavar="HOST:PORT",
        help="where Ollama clients connect (ollama_proxy.listen, default 127.0.0.1:11435)",
    )
    g.add_argument(
        "--upstream-url",
        metavar="URL",
        help="the real Ollama (ollama_proxy.upstream_url, default http://127.0.0.1:11434)",
    )
    g.add_argument("--max-models", type=int, metavar="N", help="model label values before 'other' (default 50)")
    g.add_argument(
        "--upstream-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds Ollama may stay silent before 504 (0 disables; default 300)",
    )
    g.add_argument("--log-bodies", action="store_true", help="log prompts and answers (off by default)")


def apply_arguments(cfg: OllamaProxyConfig, ns: argparse.Namespace) -> None:
    for attr, key in (
        ("proxy_listen_address", "listen"),
        ("upstream_url", "upstream_url"),
        ("max_models", "max_models"),
        ("upstream_timeout", "upstream_timeout"),
    ):
        value = getattr(ns, attr)
        if value is not None:
            setattr(cfg, key, value)
    if ns.log_bodies:
        cfg.log_bodies = True


def _run(server: Any, cfg: OllamaProxyConfig, web: Any) -> int:
    return run(cfg, web, server.listen_address, server.metrics_path, server.interval)


SPEC = ExporterSpec(
    description="Forwards every Ollama API request unchanged (streams relayed chunk by chunk, pooled keep-alive "
    "upstream connections) and records requests, time to first token (reasoning included) and to first "
    "content, durations, tokens, tokens/s and errors per model and endpoint (native, OpenAI-, Responses- and "
    "Anthropic-compatible APIs); polls /api/ps and /api/tags in the background. Metrics are "
    "served on --listen-address (default :9439); --interval is the poll interval.",
    config_class=OllamaProxyConfig,
    add_arguments=add_arguments,
    apply_arguments=apply_arguments,
    validate=validate,
    run=_run,
)

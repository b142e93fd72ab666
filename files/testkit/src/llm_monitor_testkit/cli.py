"""``llm-monitor-testkit simulate vllm|ollama|langfuse [options]``: run one SIMULATED upstream (a test double).

Each simulator says on startup that it is simulated. Listen addresses take the exporters' syntax (``HOST:PORT``,
``:PORT`` for all interfaces, ``[::1]:PORT``), parsed by the exporters' own code.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from llm_monitor_exporters.core.httpserver import ListenError, parse_listen_address
from llm_monitor_exporters.core.logsetup import setup_logging

from llm_monitor_testkit import __version__

if TYPE_CHECKING:
    from llm_monitor_testkit.langfuse_sim import SimulatedLangfuseServer
    from llm_monitor_testkit.vllm_sim import SimulatedVllmServer

log = logging.getLogger(__name__)

PROG = "llm-monitor-testkit"
KINDS = ("vllm", "ollama", "langfuse")


def build_parser() -> argparse.ArgumentParser:
    from llm_monitor_testkit.langfuse_sim import MODES, PLANS, SERVERS  # noqa: PLC0415
    from llm_monitor_testkit.vllm_sim import SCENARIOS, SCHEDULING_POLICIES  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="TEST DOUBLES of llm_monitor.fleet: simulated upstreams for tests, benchmarks and demos. "
        "Not real services; every value is made up.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    simulate = top.add_parser(
        "simulate", help="run a SIMULATED upstream", description="Run a SIMULATED upstream (not a real service)."
    )
    sub = simulate.add_subparsers(dest="kind", metavar="KIND", required=True)
    v = sub.add_parser(
        "vllm", help="simulated vLLM OpenAI-compatible server", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    v.add_argument("--listen", default="127.0.0.1:8000", metavar="HOST:PORT")
    v.add_argument("--scenario", default="normal", choices=SCENARIOS)
    v.add_argument("--model", default="simulated/llama-3-8b-instruct")
    v.add_argument("--max-model-len", type=int, default=8192)
    v.add_argument("--max-num-seqs", type=int, default=16)
    v.add_argument(
        "--spec-decode",
        type=int,
        default=0,
        metavar="N",
        help="speculative tokens per draft (0: no speculative decoding)",
    )
    v.add_argument(
        "--lora-adapter", action="append", default=[], metavar="NAME", help="a loaded LoRA adapter (repeatable)"
    )
    v.add_argument("--max-loras", type=int, default=None, help="LoRA slots (default: one per adapter)")
    v.add_argument("--scheduling-policy", default="fcfs", choices=SCHEDULING_POLICIES)
    # the Ollama simulator has its own parser (asyncio server); listed here for --help
    sub.add_parser("ollama", help="simulated Ollama server (see: simulate ollama --help)", add_help=False)
    lf = sub.add_parser(
        "langfuse", help="simulated Langfuse public API", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    lf.add_argument("--listen", default="127.0.0.1:3000", metavar="HOST:PORT")
    lf.add_argument("--scenario", default="normal", choices=MODES, help="fault mode")
    lf.add_argument("--public-key", default="pk-lf-simulated")
    lf.add_argument(
        "--secret-key-file", metavar="FILE", help="file holding the secret key to accept (default: sk-lf-simulated)"
    )
    lf.add_argument("--retry-after", type=int, default=2, help="Retry-After seconds in rate_limited mode")
    lf.add_argument(
        "--server",
        default="v4_events_only",
        choices=SERVERS,
        help="Langfuse modelled: v4 events_only (v2 metrics only), v4 legacy write mode (v1 only), v3 (v1 only)",
    )
    lf.add_argument("--plan", default="self_hosted", choices=PLANS, help="Langfuse Cloud plan whose quotas apply")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] == ["simulate", "ollama"]:
        from llm_monitor_testkit.ollama_sim import main as ollama_main  # noqa: PLC0415

        return ollama_main(args[2:])
    try:
        ns = build_parser().parse_args(args)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    return simulate_threaded(ns)


def simulate_threaded(ns: argparse.Namespace) -> int:
    """The simulated vLLM and Langfuse (threaded http.server) until SIGTERM/SIGINT."""
    setup_logging("info")
    try:
        address = parse_listen_address(ns.listen)
    except ListenError as exc:
        print(f"{PROG} simulate {ns.kind}: {exc}", file=sys.stderr)
        return 2
    server: SimulatedVllmServer | SimulatedLangfuseServer
    try:
        if ns.kind == "vllm":
            from llm_monitor_testkit.vllm_sim import SimulatedVllm, SimulatedVllmServer  # noqa: PLC0415

            sim = SimulatedVllm(
                ns.model,
                ns.scenario,
                ns.max_model_len,
                ns.max_num_seqs,
                spec_decode=ns.spec_decode,
                lora_adapters=ns.lora_adapter,
                max_loras=ns.max_loras,
                scheduling_policy=ns.scheduling_policy,
            )
            server = SimulatedVllmServer(address, sim)
        else:
            from llm_monitor_testkit.langfuse_sim import SimulatedLangfuse, SimulatedLangfuseServer  # noqa: PLC0415

            secret = "sk-lf-simulated"  # noqa: S105 - the simulator's documented default
            if ns.secret_key_file:
                with open(ns.secret_key_file, encoding="utf-8") as fh:
                    secret = fh.read().strip()
            server = SimulatedLangfuseServer(
                address,
                SimulatedLangfuse(ns.public_key, secret, ns.scenario, ns.retry_after, server=ns.server, plan=ns.plan),
            )
    except OSError as exc:
        print(f"{PROG} simulate {ns.kind}: cannot listen on {ns.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    log.warning(
        "SIMULATED %s listening on %s:%d (scenario %s): not a real service",
        ns.kind,
        address[0],
        server.port,
        ns.scenario,
    )
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0

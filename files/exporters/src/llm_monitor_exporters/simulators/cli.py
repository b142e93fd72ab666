"""``llm-monitor-exporter simulate vllm|langfuse``: command line of the simulated vLLM and Langfuse servers."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from llm_monitor_exporters.httpserver import ListenError, parse_listen_address

if TYPE_CHECKING:
    from llm_monitor_exporters.simulators.langfuse_sim import SimulatedLangfuseServer
    from llm_monitor_exporters.simulators.vllm_sim import SimulatedVllmServer

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from llm_monitor_exporters.simulators.langfuse_sim import MODES  # noqa: PLC0415
    from llm_monitor_exporters.simulators.vllm_sim import SCENARIOS  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="llm-monitor-exporter simulate", description="Run a SIMULATED upstream (not a real service)."
    )
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    v = sub.add_parser(
        "vllm", help="simulated vLLM OpenAI-compatible server", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    v.add_argument("--listen", default="127.0.0.1:8000", metavar="HOST:PORT")
    v.add_argument("--scenario", default="normal", choices=SCENARIOS)
    v.add_argument("--model", default="simulated/llama-3-8b-instruct")
    v.add_argument("--max-model-len", type=int, default=8192)
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
    return parser


def main(argv: Sequence[str]) -> int:
    from llm_monitor_exporters.logsetup import setup_logging  # noqa: PLC0415

    parser = build_parser()
    try:
        ns = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    setup_logging("info")
    try:
        address = parse_listen_address(ns.listen)
    except ListenError as exc:
        print(f"llm-monitor-exporter simulate: {exc}")
        return 2
    server: SimulatedVllmServer | SimulatedLangfuseServer
    try:
        if ns.kind == "vllm":
            from llm_monitor_exporters.simulators.vllm_sim import SimulatedVllm, SimulatedVllmServer  # noqa: PLC0415

            server = SimulatedVllmServer(address, SimulatedVllm(ns.model, ns.scenario, ns.max_model_len))
        else:
            from llm_monitor_exporters.simulators.langfuse_sim import (  # noqa: PLC0415
                SimulatedLangfuse,
                SimulatedLangfuseServer,
            )

            secret = "sk-lf-simulated"  # noqa: S105 - the simulator's documented default
            if ns.secret_key_file:
                with open(ns.secret_key_file, encoding="utf-8") as fh:
                    secret = fh.read().strip()
            server = SimulatedLangfuseServer(
                address, SimulatedLangfuse(ns.public_key, secret, ns.scenario, ns.retry_after)
            )
    except OSError as exc:
        print(f"llm-monitor-exporter simulate: cannot listen on {ns.listen}: {exc.strerror or exc}")
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


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main(sys.argv[1:]))

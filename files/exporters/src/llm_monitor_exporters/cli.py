"""``llm-monitor-exporter <exporter> [options]``: one console script, one subcommand per exporter."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from llm_monitor_exporters import __version__
from llm_monitor_exporters.collector import Collector, SnapshotLoop
from llm_monitor_exporters.config import ConfigError, ServerConfig, build_config, read_yaml_mapping
from llm_monitor_exporters.logsetup import setup_logging

log = logging.getLogger("llm_monitor_exporters")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class ExporterSpec:
    name: str
    summary: str
    description: str
    default_port: int
    #: returns the config dataclass; a function so that only the exporter that runs imports its module
    #: (the Ollama proxy's pulls in aiohttp: about 14 MB of RSS in every other exporter otherwise)
    config_class: Callable[[], type[Any]]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    apply_arguments: Callable[[Any, argparse.Namespace], None]
    build: Callable[[Any], Collector]
    #: exporters that are not a SnapshotLoop (the Ollama proxy): run(server_cfg, exporter_cfg, web) -> exit code
    run: Callable[[Any, Any, Any], int] | None = None


# --- gpu ------------------------------------------------------------------------------------------
def _gpu_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("gpu exporter")
    g.add_argument("--simulate", action="store_true",
                   help="use the simulation backend instead of NVML (same as gpu.backend: simulation)")
    g.add_argument("--simulate-gpus", type=int, metavar="N", help="simulated GPU count (gpu.simulation.gpus)")
    g.add_argument("--simulate-model", metavar="MODEL", help="simulated model, e.g. H100, H200, A100, L40S")
    g.add_argument("--simulate-scenario", metavar="SCENARIO",
                   help="idle, busy, thermal_throttling, ecc_errors, xid_79 or gpu_lost")
    g.add_argument("--pcie-interval", type=float, metavar="SECONDS",
                   help="seconds between background PCIe throughput samples (0 disables)")


def _gpu_apply(cfg: Any, ns: argparse.Namespace) -> None:
    if ns.simulate:
        cfg.backend = "simulation"
    sim = cfg.simulation
    for attr, key in (("simulate_gpus", "gpus"), ("simulate_model", "model"), ("simulate_scenario", "scenario")):
        value = getattr(ns, attr)
        if value is not None:
            setattr(sim, key, value)
    if ns.pcie_interval is not None:
        cfg.pcie_interval = ns.pcie_interval


def _gpu_build(cfg: Any) -> Collector:
    from llm_monitor_exporters.gpu import GpuCollector  # noqa: PLC0415

    if cfg.backend == "simulation":
        from llm_monitor_exporters.nvml_simulation import SimulatedNvml  # noqa: PLC0415

        s = cfg.simulation
        try:
            backend = SimulatedNvml(gpus=s.gpus, model=s.model, scenario=s.scenario, mig_devices=s.mig_devices,
                                    pcie_latency=s.pcie_latency_seconds)
        except ValueError as exc:
            raise ConfigError(f"gpu.simulation: {exc}") from exc
        log.warning("GPU exporter running in SIMULATION mode (%d x %s, scenario %s): values are not real",
                    s.gpus, backend.model.name, s.scenario)
        return GpuCollector(cfg, backend)
    return GpuCollector(cfg)


def _gpu_validate(cfg: Any) -> None:
    if cfg.simulation.gpus < 1:
        raise ConfigError("gpu.simulation.gpus: expected an integer >= 1")


# --- containers -----------------------------------------------------------------------------------
def _containers_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("containers exporter")
    g.add_argument("--docker-url", metavar="URL", help="Docker API endpoint (containers.docker_url)")
    g.add_argument("--cgroup-root", metavar="DIR", help="cgroup mount point (containers.cgroup_root)")
    g.add_argument("--proc-root", metavar="DIR", help="procfs mount point (containers.proc_root)")


def _containers_apply(cfg: Any, ns: argparse.Namespace) -> None:
    for attr in ("docker_url", "cgroup_root", "proc_root"):
        value = getattr(ns, attr)
        if value is not None:
            setattr(cfg, attr, value)


def _containers_build(cfg: Any) -> Collector:
    from llm_monitor_exporters.containers import ContainerCollector  # noqa: PLC0415

    return ContainerCollector(cfg)


# --- vllm, litellm, langfuse -----------------------------------------------------------------------
def _no_args(_p: argparse.ArgumentParser) -> None:
    """No exporter-specific flags: secrets and endpoints come from the config file only."""


def _no_apply(_cfg: Any, _ns: argparse.Namespace) -> None:
    pass


def _vllm_build(cfg: Any) -> Collector:
    from llm_monitor_exporters.vllm import VllmCollector  # noqa: PLC0415

    return VllmCollector(cfg)


def _litellm_build(cfg: Any) -> Collector:
    from llm_monitor_exporters.litellm import LitellmCollector  # noqa: PLC0415

    return LitellmCollector(cfg)


def _langfuse_build(cfg: Any) -> Collector:
    from llm_monitor_exporters.langfuse import LangfuseCollector  # noqa: PLC0415

    return LangfuseCollector(cfg)


def _llm_specs() -> dict[str, ExporterSpec]:
    from llm_monitor_exporters.langfuse import LangfuseConfig  # noqa: PLC0415
    from llm_monitor_exporters.litellm import LitellmConfig  # noqa: PLC0415
    from llm_monitor_exporters.vllm import VllmConfig  # noqa: PLC0415

    return {
        "vllm": ExporterSpec(
            "vllm", "vLLM server discovery (Docker + static) and Prometheus HTTP SD (llm_monitor_vllm_*)",
            "Discovers vLLM servers (containers by image, label or command line; static endpoints), probes "
            "/health and /v1/models, and serves a Prometheus HTTP SD document (/sd/vllm) so Prometheus "
            "scrapes vLLM's native /metrics.",
            9436, lambda: VllmConfig, _no_args, _no_apply, _vllm_build),
        "litellm": ExporterSpec(
            "litellm", "LiteLLM proxy liveness, catalog, cached deployment health, spend (llm_monitor_litellm_*)",
            "Polls a LiteLLM proxy: /health/liveliness, /health/readiness, /model/info (no secrets exported), "
            "/health at most every health_interval, and the spend endpoints when a database is connected. "
            "The master key comes from master_key_file or master_key_env, never the command line.",
            9437, lambda: LitellmConfig, _no_args, _no_apply, _litellm_build),
        "langfuse": ExporterSpec(
            "langfuse", "Langfuse usage, cost, latency and errors per project (llm_monitor_langfuse_*)",
            "Polls the Langfuse public API per project (health, metrics/daily, metrics queries) every "
            "poll_interval, caches between polls, backs off on 429/5xx and counts its own API calls.",
            9438, lambda: LangfuseConfig, _no_args, _no_apply, _langfuse_build),
    }


# --- ollama-proxy ---------------------------------------------------------------------------------
def _ollama_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ollama proxy (--listen-address is the metrics address)")
    g.add_argument("--proxy-listen-address", metavar="HOST:PORT",
                   help="where Ollama clients connect (ollama-proxy.listen, default 127.0.0.1:11435)")
    g.add_argument("--upstream-url", metavar="URL",
                   help="the real Ollama (ollama-proxy.upstream_url, default http://127.0.0.1:11434)")
    g.add_argument("--max-models", type=int, metavar="N", help="model label values before 'other' (default 50)")
    g.add_argument("--upstream-timeout", type=float, metavar="SECONDS",
                   help="seconds Ollama may stay silent before 504 (0 disables; default 300)")
    g.add_argument("--log-bodies", action="store_true", help="log prompts and answers (off by default)")


def _ollama_apply(cfg: Any, ns: argparse.Namespace) -> None:
    from llm_monitor_exporters.ollama_proxy import validate  # noqa: PLC0415

    for attr, key in (("proxy_listen_address", "listen"), ("upstream_url", "upstream_url"),
                      ("max_models", "max_models"), ("upstream_timeout", "upstream_timeout")):
        value = getattr(ns, attr)
        if value is not None:
            setattr(cfg, key, value)
    if ns.log_bodies:
        cfg.log_bodies = True
    if cfg.max_models < 1 or cfg.upstream_timeout < 0:
        raise ConfigError("ollama-proxy: max_models must be >= 1 and upstream_timeout >= 0")
    validate(cfg)


def _ollama_build(_cfg: Any) -> Collector:
    raise ConfigError("ollama-proxy is served by its own asyncio server, not a collection loop")


def _ollama_run(server: Any, cfg: Any, web: Any) -> int:
    from llm_monitor_exporters.ollama_proxy import run  # noqa: PLC0415

    return run(cfg, web, server.listen_address, server.metrics_path, server.interval)


def _ollama_config() -> type[Any]:
    from llm_monitor_exporters.ollama_proxy import OllamaProxyConfig  # noqa: PLC0415

    return OllamaProxyConfig


def _ollama_specs() -> dict[str, ExporterSpec]:
    return {
        "ollama-proxy": ExporterSpec(
            "ollama-proxy", "Transparent Ollama monitoring proxy (llm_monitor_ollama_*)",
            "Forwards every Ollama API request unchanged (streams relayed chunk by chunk, pooled keep-alive "
            "upstream connections) and records requests, time to first token, durations, tokens, tokens/s "
            "and errors per model and endpoint; polls /api/ps and /api/tags in the background. Metrics are "
            "served on --listen-address (default :9439); --interval is the poll interval.",
            9439, _ollama_config, _ollama_args, _ollama_apply, _ollama_build, _ollama_run),
    }


def _specs() -> dict[str, ExporterSpec]:
    from llm_monitor_exporters.containers import ContainersConfig  # noqa: PLC0415
    from llm_monitor_exporters.gpu import GpuConfig  # noqa: PLC0415

    return {
        "gpu": ExporterSpec(
            "gpu", "NVIDIA GPU metrics from NVML (llm_monitor_gpu_*)",
            "Exports per-GPU utilisation, memory, temperature, power, energy, clocks, clock event reasons, "
            "ECC, remapped rows, XID errors, PCIe, NVLink, processes and MIG from NVML. Collection runs in "
            "the background; scrapes serve the last snapshot. Use --simulate for the simulation backend.",
            9835, lambda: GpuConfig, _gpu_args, _gpu_apply, _gpu_build),
        "containers": ExporterSpec(
            "containers", "Docker container metrics from cgroups (container_*, llm_monitor_container_*)",
            "Exports cAdvisor-compatible container metrics read straight from cgroup v1/v2 files and "
            "/proc/<pid>/net/dev, with names and labels from the Docker API (list/inspect and events; "
            "never the stats API).",
            9417, lambda: ContainersConfig, _containers_args, _containers_apply, _containers_build),
        **_llm_specs(),
        **_ollama_specs(),
    }


EXPORTER_NAMES = ("gpu", "containers", "vllm", "litellm", "langfuse", "ollama-proxy")


def build_parser(specs: dict[str, ExporterSpec]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-monitor-exporter",
        description="Prometheus exporters of the llm_monitor.fleet collection. "
                    "Run one exporter per process: llm-monitor-exporter EXPORTER [options].",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="exporter", metavar="EXPORTER", required=True)
    for spec in specs.values():
        p = sub.add_parser(spec.name, help=spec.summary, description=spec.description,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--config", metavar="FILE",
                       help=f"YAML config file (top-level server keys plus a '{spec.name}:' section)")
        p.add_argument("--check-config", action="store_true",
                       help="validate the config and web config files, print the result and exit (0 = valid)")
        p.add_argument("--listen-address", metavar="HOST:PORT",
                       help=f"address to listen on (default :{spec.default_port})")
        p.add_argument("--web-config-file", metavar="FILE",
                       help="exporter-toolkit web config (TLS, basic auth), same file as node_exporter's")
        p.add_argument("--interval", type=float, metavar="SECONDS",
                       help="seconds between background collections (default 5)")
        p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                       help="log level (default info)")
        p.add_argument("--metrics-path", metavar="PATH", help="HTTP path of the metrics (default /metrics)")
        spec.add_arguments(p)
    return parser


@dataclass
class Loaded:
    server: ServerConfig
    exporter: Any


def load_configuration(spec: ExporterSpec, ns: argparse.Namespace) -> Loaded:
    """Config file + command-line overrides -> validated configuration (raises ConfigError)."""
    data: dict[str, Any] = {}
    source = "<command line>"
    if ns.config:
        data = read_yaml_mapping(ns.config)
        source = str(ns.config)
    server_keys = {f.name for f in dataclasses.fields(ServerConfig)}
    for key in data:
        if key not in server_keys and key != spec.name:
            allowed = ", ".join(sorted(server_keys | {spec.name}))
            raise ConfigError(f"{source}: key '{key}': unknown key for exporter '{spec.name}' "
                              f"(allowed top-level keys: {allowed})")
    server_data = {k: v for k, v in data.items() if k in server_keys}
    server_data.setdefault("listen_address", f":{spec.default_port}")
    server = build_config(ServerConfig, server_data, source)
    section = data.get(spec.name)
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: key '{spec.name}': expected a mapping, got {type(section).__name__}")
    exporter = build_config(spec.config_class(), section, f"{source}: key '{spec.name}'")
    for attr in ("listen_address", "web_config_file", "interval", "log_level", "metrics_path"):
        value = getattr(ns, attr)
        if value is not None:
            setattr(server, attr, value)
    if server.interval < 0.05:
        raise ConfigError(f"{source}: key 'interval': expected a number >= 0.05, got {server.interval}")
    spec.apply_arguments(exporter, ns)
    if spec.name == "gpu":
        _gpu_validate(exporter)
    return Loaded(server=server, exporter=exporter)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    if first == "simulate" and args[args.index("simulate") + 1:][:1] == ["ollama"]:
        from llm_monitor_exporters.simulators.ollama_sim import main as ollama_sim_main  # noqa: PLC0415

        return ollama_sim_main(args[args.index("simulate") + 1:])
    if first == "traffic":
        from llm_monitor_exporters.traffic import main as traffic_main  # noqa: PLC0415

        return traffic_main(args[args.index("traffic") + 1:])
    if first == "simulate":
        from llm_monitor_exporters.simulators.cli import main as simulate_main  # noqa: PLC0415

        return simulate_main(args[args.index("simulate") + 1:])
    if first is not None and first not in EXPORTER_NAMES:
        print(f"llm-monitor-exporter: error: unknown exporter {first!r} "
              f"(available: {', '.join(EXPORTER_NAMES)}); see llm-monitor-exporter --help", file=sys.stderr)
        return EXIT_USAGE
    specs = _specs()
    parser = build_parser(specs)
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    spec = specs[ns.exporter]
    setup_logging(ns.log_level or "info")
    try:
        loaded = load_configuration(spec, ns)
        from llm_monitor_exporters.webconfig import load_web_config  # noqa: PLC0415

        web = load_web_config(loaded.server.web_config_file)
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        print(f"llm-monitor-exporter {spec.name}: configuration error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    setup_logging(loaded.server.log_level if ns.log_level is None else ns.log_level)
    if ns.check_config:
        from llm_monitor_exporters.httpserver import ListenError, parse_listen_address  # noqa: PLC0415

        try:
            parse_listen_address(loaded.server.listen_address)
            if spec.run is None:
                spec.build(loaded.exporter)  # validates simulation model etc.; starts nothing
        except (ListenError, ConfigError) as exc:
            print(f"llm-monitor-exporter {spec.name}: configuration error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        auth = f"{len(web.basic_auth_users)} basic auth user(s)" if web.basic_auth_users else "no basic auth"
        print(f"configuration OK: exporter {spec.name}, config {ns.config or '(defaults)'}, listen "
              f"{loaded.server.listen_address}, web config {web.source or '(none)'}: "
              f"{'TLS' if web.tls else 'plain HTTP'}, {auth}")
        return EXIT_OK
    if spec.run is not None:
        return spec.run(loaded.server, loaded.exporter, web)
    return serve(spec, loaded, web)


def serve(spec: ExporterSpec, loaded: Loaded, web: Any) -> int:
    from llm_monitor_exporters.httpserver import ListenError, MetricsServer  # noqa: PLC0415

    try:
        collector = spec.build(loaded.exporter)
    except ConfigError as exc:
        print(f"llm-monitor-exporter {spec.name}: configuration error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    loop = SnapshotLoop(collector, loaded.server.interval)
    try:
        server = MetricsServer(loaded.server.listen_address, loop, web, loaded.server.metrics_path)
    except (ListenError, ConfigError) as exc:
        log.error("%s", exc)
        print(f"llm-monitor-exporter {spec.name}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    collector.start()
    loop.start()
    server.serve_in_thread()
    log.info("exporter %s %s listening on %s%s (%s), interval %.2fs", spec.name, __version__,
             loaded.server.listen_address, loaded.server.metrics_path,
             "https" if web.tls else "http", loaded.server.interval)
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    loop.stop()
    collector.close()
    log.info("exporter %s stopped", spec.name)
    return EXIT_OK

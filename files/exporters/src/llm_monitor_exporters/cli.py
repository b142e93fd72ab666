"""``llm-monitor-exporter <exporter> [options]``: one console script, one subcommand per exporter.

The subcommands come from :data:`llm_monitor_exporters.registry.EXPORTERS`; only the exporter named on the command
line is imported (its ``spec`` module), so that e.g. the GPU exporter never loads aiohttp, which only the Ollama
proxy needs (about 13 MB of RSS).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from llm_monitor_exporters import __version__
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.core.config import ConfigError, ServerConfig, build_config, read_yaml_mapping
from llm_monitor_exporters.core.logsetup import setup_logging
from llm_monitor_exporters.core.spec import ExporterSpec
from llm_monitor_exporters.registry import EXPORTERS, NAMES, ExporterEntry, by_name

log = logging.getLogger("llm_monitor_exporters")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

# Subcommands that are not exporters.
TRAFFIC = "traffic"


def build_parser(selected: ExporterEntry | None = None, spec: ExporterSpec | None = None) -> argparse.ArgumentParser:
    """The parser: every exporter is a subcommand; only ``selected`` (with its loaded ``spec``) gets its own flags."""
    parser = argparse.ArgumentParser(
        prog="llm-monitor-exporter",
        description="Prometheus exporters of the llm_monitor.fleet collection. "
        "Run one exporter per process: llm-monitor-exporter EXPORTER [options]; "
        "llm-monitor-exporter EXPORTER --help explains one and its flags. "
        f"The traffic generator: llm-monitor-exporter {TRAFFIC} --help (or llm-monitor-traffic).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="exporter", metavar="EXPORTER", required=True)
    for entry in EXPORTERS:
        own = selected is not None and spec is not None and entry.name == selected.name
        p = sub.add_parser(
            entry.name,
            help=f"{entry.summary}; metrics on :{entry.default_port}",
            description=spec.description if own and spec is not None else entry.summary,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        if not own:
            continue
        p.add_argument(
            "--config", metavar="FILE", help=f"YAML config file (top-level server keys plus a '{entry.name}:' section)"
        )
        p.add_argument(
            "--check-config",
            action="store_true",
            help="validate the config and web config files, print the result and exit (0 = valid); with "
            "--web-config-file and no --config only the web config is checked",
        )
        p.add_argument(
            "--listen-address", metavar="HOST:PORT", help=f"address to listen on (default :{entry.default_port})"
        )
        p.add_argument(
            "--web-config-file",
            metavar="FILE",
            help="exporter-toolkit web config (TLS, basic auth), same file as node_exporter's",
        )
        p.add_argument(
            "--interval", type=float, metavar="SECONDS", help="seconds between background collections (default 5)"
        )
        p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level (default info)")
        p.add_argument("--metrics-path", metavar="PATH", help="HTTP path of the metrics (default /metrics)")
        assert spec is not None  # noqa: S101 - own implies spec
        spec.add_arguments(p)
    return parser


@dataclass
class Loaded:
    server: ServerConfig
    exporter: Any


def load_configuration(entry: ExporterEntry, spec: ExporterSpec, ns: argparse.Namespace) -> Loaded:
    """Config file + command-line overrides -> validated configuration (raises ConfigError)."""
    data: dict[str, Any] = {}
    source = "<command line>"
    if ns.config:
        data = read_yaml_mapping(ns.config)
        source = str(ns.config)
    server_keys = {f.name for f in dataclasses.fields(ServerConfig)}
    for key in data:
        if key not in server_keys and key != entry.name:
            allowed = ", ".join(sorted(server_keys | {entry.name}))
            raise ConfigError(
                f"{source}: key '{key}': unknown key for exporter '{entry.name}' (allowed top-level keys: {allowed})"
            )
    server_data = {k: v for k, v in data.items() if k in server_keys}
    server_data.setdefault("listen_address", f":{entry.default_port}")
    server = build_config(ServerConfig, server_data, source)
    section = data.get(entry.name)
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: key '{entry.name}': expected a mapping, got {type(section).__name__}")
    exporter = build_config(spec.config_class, section, f"{source}: key '{entry.name}'")
    for attr in ("listen_address", "web_config_file", "interval", "log_level", "metrics_path"):
        value = getattr(ns, attr)
        if value is not None:
            setattr(server, attr, value)
    if server.interval < 0.05:
        raise ConfigError(f"{source}: key 'interval': expected a number >= 0.05, got {server.interval}")
    spec.apply_arguments(exporter, ns)
    spec.validate(exporter)
    return Loaded(server=server, exporter=exporter)


def _usage_error(message: str) -> int:
    print(f"llm-monitor-exporter: error: {message}; see llm-monitor-exporter --help", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    if first == TRAFFIC:
        from llm_monitor_exporters.traffic import main as traffic_main  # noqa: PLC0415

        return traffic_main(args[args.index(TRAFFIC) + 1 :])
    if first == "simulate":
        return _usage_error(
            "'simulate' is not part of the exporters: the simulated upstreams (test doubles) are in the separate "
            "llm-monitor-testkit distribution (llm-monitor-testkit simulate vllm|ollama|langfuse)"
        )
    entry: ExporterEntry | None = None
    spec: ExporterSpec | None = None
    if first is not None:
        try:
            entry = by_name(first)
        except KeyError:
            return _usage_error(f"unknown exporter {first!r} (available: {', '.join(NAMES)})")
        spec = entry.load()
    parser = build_parser(entry, spec)
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    assert entry is not None  # noqa: S101 - argparse requires an exporter
    assert spec is not None  # noqa: S101
    setup_logging(ns.log_level or "info")
    try:
        loaded = load_configuration(entry, spec, ns)
        from llm_monitor_exporters.core.webconfig import load_web_config  # noqa: PLC0415

        web = load_web_config(loaded.server.web_config_file)
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        print(f"llm-monitor-exporter {entry.name}: configuration error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    setup_logging(loaded.server.log_level if ns.log_level is None else ns.log_level)
    if ns.check_config:
        # `--check-config --web-config-file FILE` alone checks that web config (the role validates each file it
        # writes on its own); the exporter's section is checked with --config, or when no web config is named
        web_only = ns.web_config_file is not None and ns.config is None
        return check_config(entry, spec, loaded, web, ns.config, build=not web_only)
    if spec.run is not None:
        return spec.run(loaded.server, loaded.exporter, web)
    return serve(entry, spec, loaded, web)


def check_config(
    entry: ExporterEntry, spec: ExporterSpec, loaded: Loaded, web: Any, config: str | None, build: bool = True
) -> int:
    """``--check-config``: everything that can be checked without serving; 0 and one line on stdout when valid.

    ``build``: also build the collector (it checks what the config dataclass cannot: a simulated GPU model, a
    Langfuse project list, a Docker URL); starts nothing.
    """
    from llm_monitor_exporters.core.httpserver import ListenError, parse_listen_address  # noqa: PLC0415

    try:
        parse_listen_address(loaded.server.listen_address)
        if build and spec.build is not None:
            spec.build(loaded.exporter)
    except (ListenError, ConfigError) as exc:
        print(f"llm-monitor-exporter {entry.name}: configuration error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    auth = f"{len(web.basic_auth_users)} basic auth user(s)" if web.basic_auth_users else "no basic auth"
    print(
        f"configuration OK: exporter {entry.name}, config {config or '(defaults)'}, listen "
        f"{loaded.server.listen_address}, web config {web.source or '(none)'}: "
        f"{'TLS' if web.tls else 'plain HTTP'}, {auth}"
    )
    return EXIT_OK


def serve(entry: ExporterEntry, spec: ExporterSpec, loaded: Loaded, web: Any) -> int:
    from llm_monitor_exporters.core.httpserver import ListenError, MetricsServer  # noqa: PLC0415

    if spec.build is None:  # pragma: no cover - every spec has build or run
        raise ConfigError(f"exporter {entry.name} has neither build nor run")
    try:
        collector = spec.build(loaded.exporter)
    except ConfigError as exc:
        print(f"llm-monitor-exporter {entry.name}: configuration error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    loop = SnapshotLoop(collector, loaded.server.interval)
    try:
        server = MetricsServer(loaded.server.listen_address, loop, web, loaded.server.metrics_path)
    except (ListenError, ConfigError) as exc:
        log.error("%s", exc)
        print(f"llm-monitor-exporter {entry.name}: {exc}", file=sys.stderr)
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
    log.info(
        "exporter %s %s listening on %s%s (%s), interval %.2fs",
        entry.name,
        __version__,
        loaded.server.listen_address,
        loaded.server.metrics_path,
        "https" if web.tls else "http",
        loaded.server.interval,
    )
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    loop.stop()
    collector.close()
    log.info("exporter %s stopped", entry.name)
    return EXIT_OK

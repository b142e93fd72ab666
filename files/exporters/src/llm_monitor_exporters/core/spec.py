"""The interface between the command line and one exporter: what :mod:`llm_monitor_exporters.cli` needs to parse,
validate and run it. Each exporter subpackage has a ``spec`` module with one :class:`ExporterSpec` named ``SPEC``;
:mod:`llm_monitor_exporters.registry` says where each one is, so that only the exporter that runs is imported.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_monitor_exporters.core.collector import Collector


def no_arguments(_parser: argparse.ArgumentParser) -> None:
    """No exporter-specific flags: secrets and endpoints come from the config file only."""


def no_overrides(_cfg: Any, _ns: argparse.Namespace) -> None:
    """Nothing on the command line overrides this exporter's section."""


def no_validation(_cfg: Any) -> None:
    """The config dataclass's own checks (types, minimums) are all there is."""


@dataclass(frozen=True)
class ExporterSpec:
    #: the ``llm-monitor-exporter <name> --help`` text
    description: str
    #: dataclass of the exporter's config section (the section key is the exporter's registry name)
    config_class: type[Any]
    #: adds the exporter's own flags to its subcommand
    add_arguments: Callable[[argparse.ArgumentParser], None] = no_arguments
    #: copies those flags into the config section's dataclass (flags override the file)
    apply_arguments: Callable[[Any, argparse.Namespace], None] = no_overrides
    #: checks across keys once flags are applied; raises ConfigError
    validate: Callable[[Any], None] = no_validation
    #: builds the collector of a SnapshotLoop exporter (raises ConfigError); --check-config calls it too
    build: Callable[[Any], Collector] | None = None
    #: exporters that are not a SnapshotLoop (the Ollama proxy): run(server_cfg, exporter_cfg, web) -> exit code
    run: Callable[[Any, Any, Any], int] | None = None

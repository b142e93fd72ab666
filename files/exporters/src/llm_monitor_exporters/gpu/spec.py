"""``llm-monitor-exporter gpu``: flags, config section ``gpu:``, and how the collector is built (NVML or simulation)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from llm_monitor_exporters.core.collector import Collector
from llm_monitor_exporters.core.config import ConfigError
from llm_monitor_exporters.core.spec import ExporterSpec
from llm_monitor_exporters.gpu.gpu import GpuCollector, GpuConfig

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("gpu exporter")
    g.add_argument(
        "--simulate",
        action="store_true",
        help="use the simulation backend instead of NVML (same as gpu.backend: simulation)",
    )
    g.add_argument("--simulate-gpus", type=int, metavar="N", help="simulated GPU count (gpu.simulation.gpus)")
    g.add_argument("--simulate-model", metavar="MODEL", help="simulated model, e.g. H100, H200, A100, L40S")
    g.add_argument(
        "--simulate-scenario", metavar="SCENARIO", help="idle, busy, thermal_throttling, ecc_errors, xid_79 or gpu_lost"
    )
    g.add_argument("--simulate-driver", metavar="VERSION", help="simulated driver version, e.g. 470.256.02")
    g.add_argument(
        "--profiling-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between GPM profiling samples, the window the SM/tensor/DRAM activity is averaged over",
    )


def apply_arguments(cfg: GpuConfig, ns: argparse.Namespace) -> None:
    if ns.simulate:
        cfg.backend = "simulation"
    sim = cfg.simulation
    for attr, key in (
        ("simulate_gpus", "gpus"),
        ("simulate_model", "model"),
        ("simulate_scenario", "scenario"),
        ("simulate_driver", "driver"),
    ):
        value = getattr(ns, attr)
        if value is not None:
            setattr(sim, key, value)
    if ns.profiling_interval is not None:
        cfg.profiling_interval = ns.profiling_interval


def validate(cfg: GpuConfig) -> None:
    if cfg.simulation.gpus < 1:
        raise ConfigError("gpu.simulation.gpus: expected an integer >= 1")
    if cfg.pcie_interval:
        log.warning(
            "gpu.pcie_interval is deprecated and ignored: PCIe traffic is served as the counters "
            "llm_monitor_gpu_pcie_transmit_bytes_total / _receive_bytes_total (rate() them)"
        )


def build(cfg: Any) -> Collector:
    if cfg.backend == "simulation":
        from llm_monitor_exporters.gpu.nvml_simulation import SimulatedNvml  # noqa: PLC0415

        s = cfg.simulation
        try:
            backend = SimulatedNvml(
                gpus=s.gpus, model=s.model, scenario=s.scenario, mig_devices=s.mig_devices, driver=s.driver
            )  # fmt: skip
        except ValueError as exc:
            raise ConfigError(f"gpu.simulation: {exc}") from exc
        log.warning(
            "GPU exporter running in SIMULATION mode (%d x %s, scenario %s): values are not real",
            s.gpus, backend.model.name, s.scenario,
        )  # fmt: skip
        return GpuCollector(cfg, backend)
    return GpuCollector(cfg)


SPEC = ExporterSpec(
    description="Exports per-GPU utilisation, GPM profiling (SM, tensor, DRAM activity), memory, temperatures and "
    "their limits, power, energy, clocks, throttle reasons and time, ECC, remapped rows or retired pages, XID errors, "
    "PCIe and NVLink counters, process memory and MIG from NVML. NVML is re-initialised after driver failures. "
    "Collection runs in the background; scrapes serve the last snapshot. Use --simulate for the simulation backend.",
    config_class=GpuConfig,
    add_arguments=add_arguments,
    apply_arguments=apply_arguments,
    validate=validate,
    build=build,
)

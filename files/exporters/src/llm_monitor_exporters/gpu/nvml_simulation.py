"""Simulated NVML backend (explicit simulation mode only: ``--simulate`` or ``gpu.backend: simulation``).

Implements the same facade as :class:`llm_monitor_exporters.gpu.nvml.PynvmlBackend`. Values evolve over
time following a scenario, within ranges taken from NVIDIA's datasheets and typical ``nvidia-smi -q``
readings for each model (memory sizes are what NVML reports, e.g. 81559 MiB for an H100 80GB HBM3).

Scenarios: ``idle``, ``busy``, ``thermal_throttling``, ``ecc_errors``, ``xid_79`` (GPU 0 reports XID
79 "fallen off the bus" one second after start, then is lost), ``gpu_lost`` (the last GPU is lost).
Counters (energy, ECC, NVLink) are integrals of the simulated rates, so they never go backwards.
Tests can inject faults with :meth:`SimulatedNvml.inject_error` and :meth:`SimulatedNvml.hang`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_monitor_exporters.gpu.nvml import (
    CLOCK_EVENT_REASONS,
    MemoryInfo,
    MigDeviceInfo,
    NvlinkCounters,
    NvmlError,
    NvmlGpuLost,
    NvmlNotSupported,
    NvmlTimeout,
    ProcessInfo,
    XidEvent,
)

MIB = 1024 * 1024
SCENARIOS = ("idle", "busy", "thermal_throttling", "ecc_errors", "xid_79", "gpu_lost")


@dataclass(frozen=True)
class GpuModel:
    name: str
    memory_mib: int
    reserved_mib: int
    power_limit_w: float
    idle_power_w: float
    sm_max_mhz: int
    sm_idle_mhz: int
    mem_max_mhz: int
    nvlink_links: int
    nvlink_gbps_per_link: float  # GB/s per direction
    mig: bool
    fan: bool
    pcie_gbps: float  # GB/s per direction


MODELS: dict[str, GpuModel] = {
    "NVIDIA H100 80GB HBM3": GpuModel(
        "NVIDIA H100 80GB HBM3", 81559, 553, 700, 72, 1980, 345, 2619, 18, 25, True, False, 64
    ),
    "NVIDIA H200": GpuModel("NVIDIA H200", 143771, 569, 700, 76, 1980, 345, 3201, 18, 25, True, False, 64),
    "NVIDIA A100-SXM4-80GB": GpuModel(
        "NVIDIA A100-SXM4-80GB", 81920, 491, 400, 56, 1410, 210, 1593, 12, 25, True, False, 32
    ),
    "NVIDIA L40S": GpuModel("NVIDIA L40S", 46068, 491, 350, 36, 2520, 210, 9001, 0, 0, False, False, 32),
    "NVIDIA RTX 6000 Ada Generation": GpuModel(
        "NVIDIA RTX 6000 Ada Generation", 49140, 491, 300, 20, 2505, 210, 10001, 0, 0, False, True, 32
    ),
}


def resolve_model(name: str) -> GpuModel:
    """Exact model name, or a unique case-insensitive substring such as ``H100``, ``A100``, ``L40S``."""
    if name in MODELS:
        return MODELS[name]
    matches = [m for key, m in MODELS.items() if name.lower() in key.lower()]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"unknown simulated GPU model {name!r} (known: {', '.join(MODELS)})")


@dataclass
class _Handle:
    index: int


class SimulatedNvml:
    """Facade implementation with deterministic, time-evolving values."""

    def __init__(
        self,
        gpus: int = 8,
        model: str = "NVIDIA H100 80GB HBM3",
        scenario: str = "busy",
        mig_devices: int = 0,
        pcie_latency: float = 0.04,
        driver: str = "570.124.06",
        cuda: int = 12080,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown simulation scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        self.model = resolve_model(model)
        self.gpus = gpus
        self.scenario = scenario
        self.mig_count = mig_devices if self.model.mig else 0
        self.pcie_latency = pcie_latency
        self._driver = driver
        self._cuda = cuda
        self._clock = clock
        self._t0 = clock()
        self._errors: dict[int, NvmlError] = {}
        self._hang_until = 0.0
        self._initialised = False
        self._xid_pending: list[XidEvent] = []
        self._xid_lock = threading.Lock()
        self._lost: set[int] = set()
        if scenario == "gpu_lost":
            self._lost.add(gpus - 1)
        self._xid_fired = False
        self.calls = 0

    # --- fault injection (tests) -------------------------------------------------------------
    def inject_error(self, index: int, error: NvmlError | None) -> None:
        """Make every per-device call on GPU ``index`` raise ``error`` (None clears it)."""
        if error is None:
            self._errors.pop(index, None)
        else:
            self._errors[index] = error

    def hang(self, seconds: float) -> None:
        """Make per-device calls block until ``seconds`` from now (a hung driver)."""
        self._hang_until = time.monotonic() + seconds

    def emit_xid(self, index: int, xid: int) -> None:
        with self._xid_lock:
            self._xid_pending.append(XidEvent(uuid=self._uuid(index), xid=xid))

    # --- helpers -----------------------------------------------------------------------------
    def _t(self) -> float:
        return self._clock() - self._t0

    def _dev(self, h: Any) -> int:
        self.calls += 1
        while time.monotonic() < self._hang_until:
            time.sleep(min(0.05, self._hang_until - time.monotonic()))
        idx = int(h.index)
        if idx in self._errors:
            raise self._errors[idx]
        if idx in self._lost:
            raise NvmlGpuLost("GPU is lost")
        if self.scenario == "xid_79" and idx == 0 and self._xid_fired:
            raise NvmlGpuLost("GPU is lost")
        return idx

    def _wave(self, idx: int, period: float = 60.0) -> float:
        """A smooth value in [0, 1] per GPU, phase-shifted by index."""
        return 0.5 + 0.5 * math.sin(2 * math.pi * self._t() / period + idx * 0.7)

    def _load(self, idx: int) -> float:
        """GPU utilisation in [0, 1] for the scenario."""
        if self.scenario == "idle":
            return 0.0
        if self.scenario == "thermal_throttling":
            return 0.97 + 0.03 * self._wave(idx, 7)
        return 0.82 + 0.18 * self._wave(idx, 23)

    def _power_w(self, idx: int) -> float:
        m = self.model
        load = self._load(idx)
        if self.scenario == "thermal_throttling":
            return m.idle_power_w + 0.72 * (m.power_limit_w - m.idle_power_w) * load
        return m.idle_power_w + 0.9 * (m.power_limit_w - m.idle_power_w) * load

    def _uuid(self, idx: int) -> str:
        return f"GPU-5e7a1c2b-0000-4000-8000-{idx:012x}"

    # --- facade ------------------------------------------------------------------------------
    def init(self) -> None:
        self._initialised = True

    def shutdown(self) -> None:
        self._initialised = False

    def driver_version(self) -> str:
        return self._driver

    def cuda_driver_version(self) -> int:
        return self._cuda

    def device_count(self) -> int:
        return self.gpus

    def handle(self, index: int) -> Any:
        if not 0 <= index < self.gpus:
            raise NvmlError("Invalid Argument")
        return _Handle(index)

    def uuid(self, h: Any) -> str:
        return self._uuid(self._dev(h))

    def name(self, h: Any) -> str:
        self._dev(h)
        return self.model.name

    def pci_bus_id(self, h: Any) -> str:
        idx = self._dev(h)
        bus = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)[idx % 8] + 0x100 * (idx // 8)
        return f"00000000:{bus:02X}:00.0"

    def utilization(self, h: Any) -> tuple[int, int]:
        idx = self._dev(h)
        load = self._load(idx)
        return round(100 * load), round(100 * load * 0.55)

    def memory_info(self, h: Any) -> MemoryInfo:
        idx = self._dev(h)
        m = self.model
        total = m.memory_mib * MIB
        reserved = m.reserved_mib * MIB
        if self.scenario == "idle":
            used = 4 * MIB
        else:
            used = int((0.78 + 0.12 * self._wave(idx, 120)) * (total - reserved))
        return MemoryInfo(total=total, free=total - reserved - used, used=used, reserved=reserved)

    def temperature(self, h: Any) -> int:
        idx = self._dev(h)
        if self.scenario == "thermal_throttling":
            return round(88 + 4 * self._wave(idx, 11))
        return round(29 + 3 * (idx % 3) + 38 * self._load(idx) + 2 * self._wave(idx, 17))

    def memory_temperature(self, h: Any) -> int:
        idx = self._dev(h)
        if self.model.fan:  # GDDR boards do not report HBM temperature
            raise NvmlNotSupported("memory temperature")
        return self.temperature(_Handle(idx)) + 4

    def power_usage_mw(self, h: Any) -> int:
        return round(1000 * self._power_w(self._dev(h)))

    def power_limit_mw(self, h: Any) -> int:
        self._dev(h)
        return round(1000 * self.model.power_limit_w)

    def total_energy_mj(self, h: Any) -> int:
        idx = self._dev(h)
        m = self.model
        t = self._t()
        # integral of the power curve since "boot" (GPU has been up ~ 3 days already)
        base = 3 * 86400 * m.idle_power_w * 1000
        load = 0.0 if self.scenario == "idle" else 0.9
        avg = m.idle_power_w + load * (m.power_limit_w - m.idle_power_w)
        return int(base + 1000 * avg * t + 1000 * idx)

    def clock_mhz(self, h: Any, kind: str) -> int:
        idx = self._dev(h)
        m = self.model
        if kind != "sm":
            return m.mem_max_mhz  # memory clock stays at max (HBM), even idle
        if self.scenario == "idle":
            return m.sm_idle_mhz
        if self.scenario == "thermal_throttling":
            return round(m.sm_max_mhz * (0.6 + 0.1 * self._wave(idx, 9)))
        return m.sm_max_mhz - 15 * round(4 * self._wave(idx, 13))

    def max_clock_mhz(self, h: Any, kind: str) -> int:
        self._dev(h)
        return self.model.sm_max_mhz if kind == "sm" else self.model.mem_max_mhz

    def clock_event_reasons(self, h: Any) -> int:
        idx = self._dev(h)
        r = CLOCK_EVENT_REASONS
        if self.scenario == "idle":
            return r["gpu_idle"]
        if self.scenario == "thermal_throttling":
            return r["sw_thermal_slowdown"] | r["hw_thermal_slowdown"] | (r["hw_slowdown"] if idx % 2 else 0)
        return r["sw_power_cap"] if self._power_w(idx) > 0.95 * self.model.power_limit_w else 0

    def fan_speed_percent(self, h: Any) -> int:
        idx = self._dev(h)
        if not self.model.fan:
            raise NvmlNotSupported("fan speed")
        return min(100, 30 + round(60 * self._load(idx)))

    def pstate(self, h: Any) -> int:
        idx = self._dev(h)
        return 8 if self.scenario == "idle" and self._load(idx) == 0 else 0

    def ecc_total(self, h: Any, uncorrected: bool) -> int:
        idx = self._dev(h)
        if self.scenario != "ecc_errors":
            return 0
        t = self._t()
        return int(t / 120) + (idx == 0) if uncorrected else int(t * 2.5 * (idx + 1)) + 3

    def remapped_rows(self, h: Any) -> tuple[int, int, bool, bool]:
        idx = self._dev(h)
        if self.scenario != "ecc_errors":
            return 0, 0, False, False
        unc = self.ecc_total(_Handle(idx), True)
        return min(8, int(self._t() / 60) + 1), unc, unc > 0, False

    def pcie_throughput_kbs(self, h: Any, tx: bool) -> int:
        idx = self._dev(h)
        if self.pcie_latency:
            time.sleep(self.pcie_latency / 2)  # NVML samples a 20 ms window per direction
        gbps = self.model.pcie_gbps * (0.002 if self.scenario == "idle" else 0.08 + 0.2 * self._wave(idx, 5))
        return int(gbps * 1e9 / 1024 * (1.0 if tx else 1.6))

    def nvlink(self, h: Any) -> NvlinkCounters:
        idx = self._dev(h)
        m = self.model
        if not m.nvlink_links:
            raise NvmlNotSupported("no NVLink")
        t = self._t()
        share = 0.0005 if self.scenario == "idle" else 0.35
        rate = m.nvlink_links * m.nvlink_gbps_per_link * 1e9 * share
        base = 10**12 * (idx + 1)
        return NvlinkCounters(
            links=m.nvlink_links,
            tx_bytes=int(base + rate * t),
            rx_bytes=int(base + 1.02 * rate * t),
            errors={"crc_flit": 0, "crc_data": 0, "replay": int(t / 300), "recovery": 0},
        )

    def processes(self, h: Any) -> list[ProcessInfo]:
        idx = self._dev(h)
        if self.scenario == "idle":
            return []
        used = self.memory_info(_Handle(idx)).used
        # One real pid (this process) so names/cgroups resolve; one that does not exist.
        return [ProcessInfo(os.getpid(), used - 600 * MIB), ProcessInfo(4_000_000 + idx, 600 * MIB)]

    def mig_mode(self, h: Any) -> tuple[int, int]:
        self._dev(h)
        if not self.model.mig:
            raise NvmlNotSupported("MIG")
        mode = 1 if self.mig_count else 0
        return mode, mode

    def mig_devices(self, h: Any) -> list[MigDeviceInfo]:
        idx = self._dev(h)
        if not self.mig_count:
            return []
        per = (self.model.memory_mib // 8) * MIB
        return [
            MigDeviceInfo(
                index=i,
                uuid=f"MIG-0b7c{idx:04x}-0000-4000-8000-{i:012x}",
                gpu_instance_id=7 + i,
                compute_instance_id=0,
                memory=MemoryInfo(total=per, free=per // 3, used=per - per // 3),
            )
            for i in range(self.mig_count)
        ]

    def xid_event_set(self, handles: list[Any]) -> Any:
        return object()

    def xid_wait(self, event_set: Any, timeout_ms: int) -> XidEvent:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self.scenario == "xid_79" and not self._xid_fired and self._t() >= 1.0:
                self._xid_fired = True
                return XidEvent(uuid=self._uuid(0), xid=79)
            with self._xid_lock:
                if self._xid_pending:
                    return self._xid_pending.pop(0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NvmlTimeout("Timeout")
            time.sleep(min(0.05, remaining))

    def free_event_set(self, event_set: Any) -> None:
        return None

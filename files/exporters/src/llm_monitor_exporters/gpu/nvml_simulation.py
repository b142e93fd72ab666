"""Simulated NVML backend (explicit simulation mode only: ``--simulate`` or ``gpu.backend: simulation``).

Implements the same facade as :class:`llm_monitor_exporters.gpu.nvml.PynvmlBackend`. What a model and a driver
support comes from :mod:`llm_monitor_exporters.gpu.models`, the table the tests' C NVML double is generated from,
so the simulation refuses the same queries the double (and NVML) refuses on the same profile: no fan on SXM
boards, no GPM before Hopper, no utilisation in MIG mode, v1 memory and no PCIe byte counters on driver 470.
Values evolve over time following a scenario, within ranges from each model's datasheet.

Scenarios: ``idle``, ``busy``, ``thermal_throttling``, ``ecc_errors``, ``xid_79`` (GPU 0 reports XID 79 "fallen off
the bus" one second after start, then is lost), ``gpu_lost`` (the last GPU is lost). Counters (energy, ECC, NVLink,
PCIe) are integrals of the simulated rates, so they never go backwards. Demos and benchmarks inject faults with
:meth:`SimulatedNvml.inject_error`, :meth:`SimulatedNvml.hang` and :meth:`SimulatedNvml.emit_xid`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_monitor_exporters.gpu.models import MODELS, GpuModel, resolve_driver, resolve_model
from llm_monitor_exporters.gpu.nvml import (
    CLOCK_EVENT_REASONS,
    MemoryInfo,
    MigDeviceInfo,
    NvlinkCounters,
    NvmlError,
    NvmlGpuLost,
    NvmlNotFound,
    NvmlNotSupported,
    NvmlTimeout,
    ProcessInfo,
    XidEvent,
)

MIB = 1024 * 1024
SCENARIOS = ("idle", "busy", "thermal_throttling", "ecc_errors", "xid_79", "gpu_lost")
__all__ = ["MODELS", "SCENARIOS", "GpuModel", "SimulatedNvml", "resolve_model"]


@dataclass
class _Handle:
    index: int
    mig_slot: int | None = None


@dataclass
class _GpmSample:
    index: int
    gpu_instance: int | None
    t: float


class SimulatedNvml:
    """Facade implementation with deterministic, time-evolving values."""

    def __init__(
        self,
        gpus: int = 8,
        model: str = "NVIDIA H100 80GB HBM3",
        scenario: str = "busy",
        mig_devices: int = 0,
        driver: str = "550.127.05",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown simulation scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        self.model = resolve_model(model)
        self.driver = resolve_driver(driver)
        self.gpus = gpus
        self.scenario = scenario
        self.mig_layout = self.model.mig_layout[:mig_devices] if self.model.mig else ()
        self._clock = clock
        self._t0 = clock()
        self._errors: dict[int, NvmlError] = {}
        self._hang_until = 0.0
        self._xid_pending: list[XidEvent] = []
        self._xid_lock = threading.Lock()
        self._lost: set[int] = set()
        if scenario == "gpu_lost":
            self._lost.add(gpus - 1)
        self._xid_fired = False
        self._handles = [_Handle(i) for i in range(gpus)]
        self.calls = 0

    # --- fault injection -----------------------------------------------------------------------
    def inject_error(self, index: int, error: NvmlError | None) -> None:
        """Make every per-device call on GPU ``index`` raise ``error`` (None clears it)."""
        if error is None:
            self._errors.pop(index, None)
        else:
            self._errors[index] = error

    def hang(self, seconds: float) -> None:
        """Make per-device calls block until ``seconds`` from now (a hung driver)."""
        self._hang_until = time.monotonic() + seconds

    def emit_xid(self, index: int, xid: int, gpu_instance: int | None = None) -> None:
        with self._xid_lock:
            self._xid_pending.append(XidEvent(self.handle_key(self._handles[index]), xid, gpu_instance))

    # --- helpers -------------------------------------------------------------------------------
    def _t(self) -> float:
        return self._clock() - self._t0

    def _dev(self, h: Any) -> int:
        self.calls += 1
        while time.monotonic() < self._hang_until:
            time.sleep(min(0.05, self._hang_until - time.monotonic()))
        idx = int(h.index)
        if idx in self._errors:
            raise self._errors[idx]
        if idx in self._lost or (self.scenario == "xid_79" and idx == 0 and self._xid_fired):
            raise NvmlGpuLost("GPU is lost")
        return idx

    def _whole(self, h: Any, query: str) -> int:
        """A query NVML answers only for a whole GPU, and not in MIG mode."""
        idx = self._dev(h)
        if h.mig_slot is not None or self.mig_layout:
            raise NvmlNotSupported(f"{query}: not in MIG mode")
        return idx

    def _wave(self, idx: int, period: float = 60.0) -> float:
        """A smooth value in [0, 1] per GPU, phase-shifted by index."""
        return 0.5 + 0.5 * math.sin(2 * math.pi * self._t() / period + idx * 0.7)

    def _load(self, idx: int) -> float:
        if self.scenario == "idle":
            return 0.0
        if self.scenario == "thermal_throttling":
            return 0.97 + 0.03 * self._wave(idx, 7)
        return 0.82 + 0.18 * self._wave(idx, 23)

    def _power_w(self, idx: int) -> float:
        m = self.model
        share = 0.72 if self.scenario == "thermal_throttling" else 0.9
        return m.idle_power_w + share * (m.power_limit_w - m.idle_power_w) * self._load(idx)

    def _uuid(self, idx: int) -> str:
        return f"GPU-5e7a1c2b-0000-4000-8000-{idx:012x}"

    # --- library -------------------------------------------------------------------------------
    def init(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def driver_version(self) -> str:
        return self.driver.version

    def cuda_driver_version(self) -> int:
        return self.driver.cuda

    def device_count(self) -> int:
        return self.gpus

    def handle(self, index: int) -> Any:
        if not 0 <= index < self.gpus:
            raise NvmlError("Invalid Argument")
        return self._handles[index]

    def handle_key(self, h: Any) -> int:
        return id(h)

    # --- identity ------------------------------------------------------------------------------
    def uuid(self, h: Any) -> str:
        idx = self._dev(h)
        if h.mig_slot is not None:
            return f"MIG-0b7c{idx:04x}-0000-4000-8000-{h.mig_slot:012x}"
        return self._uuid(idx)

    def name(self, h: Any) -> str:
        self._dev(h)
        if h.mig_slot is not None:
            return f"{self.model.name} MIG {self._mig(h)[2]}"
        return self.model.name

    def pci_bus_id(self, h: Any) -> str:
        idx = self._dev(h)
        bus = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)[idx % 8] + 0x100 * (idx // 8)
        return f"00000000:{bus:02X}:00.0"

    # --- fast queries --------------------------------------------------------------------------
    def utilization(self, h: Any) -> tuple[int, int]:
        idx = self._whole(h, "utilization")
        load = self._load(idx)
        return round(100 * load), round(100 * load * 0.55)

    def _mig(self, h: Any) -> tuple[int, int, str, int]:
        return next(entry for entry in self.mig_layout if entry[0] == h.mig_slot)

    def memory_info(self, h: Any) -> MemoryInfo:
        idx = self._dev(h)
        m = self.model
        if h.mig_slot is not None:
            total = self._mig(h)[3] * MIB
            return MemoryInfo(total=total, free=total // 3, reserved=0 if self.driver.memory_v2 else None)
        total = m.memory_mib * MIB
        reserved = m.reserved_mib * MIB
        used = 4 * MIB if self.scenario == "idle" else int((0.78 + 0.12 * self._wave(idx, 120)) * (total - reserved))
        return MemoryInfo(
            total=total, free=total - reserved - used, reserved=reserved if self.driver.memory_v2 else None
        )

    def temperature(self, h: Any) -> int:
        idx = self._dev(h)
        if self.scenario == "thermal_throttling":
            return round(self.model.temp_slowdown_c - 1 + 4 * self._wave(idx, 11))
        return round(29 + 3 * (idx % 3) + 38 * self._load(idx) + 2 * self._wave(idx, 17))

    def temperature_limit(self, h: Any, kind: int) -> int:
        self._dev(h)
        m = self.model
        value = {0: m.temp_shutdown_c, 1: m.temp_slowdown_c, 2: m.temp_mem_max_c, 3: m.temp_gpu_max_c}.get(kind, 0)
        if not value:
            raise NvmlNotSupported("temperature threshold")
        return value

    def memory_temperature(self, h: Any) -> int:
        idx = self._dev(h)
        if not self.model.hbm:
            raise NvmlNotSupported("memory temperature")
        return self.temperature(self._handles[idx]) + 4

    def power_usage_mw(self, h: Any) -> int:
        return round(1000 * self._power_w(self._dev(h)))

    def power_limit_mw(self, h: Any) -> int:
        self._dev(h)
        return round(1000 * self.model.power_limit_w)

    def total_energy_mj(self, h: Any) -> int:
        idx = self._dev(h)
        m = self.model
        if not m.energy_counter:
            raise NvmlNotSupported("total energy")
        base = 3 * 86400 * m.idle_power_w * 1000  # the GPU has been up ~ 3 days already
        avg = m.idle_power_w + (0.0 if self.scenario == "idle" else 0.9) * (m.power_limit_w - m.idle_power_w)
        return int(base + 1000 * avg * self._t() + 1000 * idx)

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

    def violation_ns(self, h: Any, policy: int) -> int:
        self._dev(h)
        if policy not in (0, 1, 2, 3, 4, 5, 10, 11):
            raise NvmlNotSupported("violation policy")
        share = {0: 0.02, 1: 0.6 if self.scenario == "thermal_throttling" else 0.0}.get(policy, 0.0)
        return int(share * self._t() * 1e9)

    def fan_speed_percent(self, h: Any) -> int:
        idx = self._dev(h)
        if not self.model.fan:
            raise NvmlNotSupported("fan speed")
        return min(100, 30 + round(60 * self._load(idx)))

    def pstate(self, h: Any) -> int:
        self._dev(h)
        return 8 if self.scenario == "idle" else 0

    def ecc_total(self, h: Any, uncorrected: bool, volatile: bool = False) -> int:
        idx = self._dev(h)
        if self.scenario != "ecc_errors":
            return 0
        t = self._t()
        count = int(t / 120) + (idx == 0) if uncorrected else int(t * 2.5 * (idx + 1)) + 3
        return count if volatile else count + (0 if uncorrected else 40)

    def remapped_rows(self, h: Any) -> tuple[int, int, bool, bool]:
        idx = self._dev(h)
        if not self.model.row_remapping:
            raise NvmlNotSupported("row remapping")
        if self.scenario != "ecc_errors":
            return 0, 0, False, False
        unc = self.ecc_total(self._handles[idx], True)
        return min(8, int(self._t() / 60) + 1), unc, unc > 0, False

    def retired_pages(self, h: Any, double_bit: bool) -> int:
        self._dev(h)
        if self.model.row_remapping:
            raise NvmlNotSupported("page retirement")
        return 1 if self.scenario == "ecc_errors" and double_bit else 0

    def retired_pages_pending(self, h: Any) -> bool:
        self._dev(h)
        if self.model.row_remapping:
            raise NvmlNotSupported("page retirement")
        return self.scenario == "ecc_errors"

    def pcie_bytes(self, h: Any) -> tuple[int, int]:
        idx = self._dev(h)
        if not self.driver.pcie_byte_counters:
            raise NvmlNotSupported("PCIe byte counters")
        share = 0.002 if self.scenario == "idle" else 0.18
        rate = self.model.pcie_gbps * 1e9 * share
        base = 10**11 * (idx + 1)
        return int(base + rate * self._t()), int(base + 1.6 * rate * self._t())

    def pcie_replay_errors(self, h: Any) -> int:
        self._dev(h)
        return 0

    def encoder_utilization(self, h: Any) -> int:
        self._dev(h)
        if not self.model.encoders:
            raise NvmlNotSupported("encoder")
        return 0

    def decoder_utilization(self, h: Any) -> int:
        self._dev(h)
        if not self.model.encoders:
            raise NvmlNotSupported("decoder")
        return 0

    def nvlink(self, h: Any) -> NvlinkCounters:
        idx = self._dev(h)
        m = self.model
        if not m.nvlink_links:
            raise NvmlNotSupported("no NVLink")
        t = self._t()
        share = 0.0005 if self.scenario == "idle" else 0.35
        rate = m.nvlink_gbps_per_link * 1e9 * share
        base = 10**11 * (idx + 1)
        return NvlinkCounters(
            links=m.nvlink_links,
            tx_bytes={link: int(base + rate * t) // 1024 * 1024 for link in range(m.nvlink_links)},
            rx_bytes={link: int(base + 1.02 * rate * t) // 1024 * 1024 for link in range(m.nvlink_links)},
            errors={"crc_flit": 0, "crc_data": 0, "replay": int(t / 300), "recovery": 0},
        )

    def processes(self, h: Any) -> list[ProcessInfo]:
        idx = self._dev(h)
        if self.mig_layout and h.mig_slot is None:
            raise NvmlNotSupported("process list of a MIG GPU: Insufficient Permissions")
        if self.scenario == "idle":
            return []
        if h.mig_slot is not None:
            gi = self._mig(h)[1]
            return [ProcessInfo(os.getpid(), 1024 * MIB, gi, 0)]
        used = self.memory_info(self._handles[idx]).used
        # One real pid (this process) so names/cgroups resolve; one that does not exist.
        return [ProcessInfo(os.getpid(), used - 600 * MIB), ProcessInfo(4_000_000 + idx, 600 * MIB)]

    # --- MIG -----------------------------------------------------------------------------------
    def mig_mode(self, h: Any) -> tuple[int, int]:
        self._dev(h)
        if not self.model.mig:
            raise NvmlNotSupported("MIG")
        mode = 1 if self.mig_layout else 0
        return mode, mode

    def mig_handles(self, h: Any) -> list[tuple[int, Any]]:
        idx = self._dev(h)
        if not self.model.mig:
            raise NvmlNotSupported("MIG")
        return [(slot, _Handle(idx, slot)) for slot, _gi, _profile, _mib in self.mig_layout]

    def mig_device(self, slot: int, mh: Any) -> MigDeviceInfo:
        self._dev(mh)
        try:
            _slot, gi, profile, _mib = self._mig(mh)
        except StopIteration:
            raise NvmlNotFound("MIG slot") from None
        return MigDeviceInfo(slot, self.uuid(mh), gi, 0, profile, self.memory_info(mh))

    # --- XID events ----------------------------------------------------------------------------
    def xid_event_set(self) -> Any:
        return object()

    def xid_register(self, event_set: Any, h: Any) -> None:
        self._dev(h)

    def xid_wait(self, event_set: Any, timeout_ms: int) -> XidEvent:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self.scenario == "xid_79" and not self._xid_fired and self._t() >= 1.0:
                self._xid_fired = True
                return XidEvent(self.handle_key(self._handles[0]), 79)
            with self._xid_lock:
                if self._xid_pending:
                    return self._xid_pending.pop(0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NvmlTimeout("Timeout")
            time.sleep(min(0.05, remaining))

    def free_event_set(self, event_set: Any) -> None:
        return None

    # --- GPM -----------------------------------------------------------------------------------
    def gpm_supported(self, h: Any) -> bool:
        self._dev(h)
        if not self.driver.gpm:
            raise NvmlNotSupported("GPM: this driver lacks the entry point")
        return self.model.gpm

    def gpm_sample(self, h: Any, gpu_instance_id: int | None = None) -> Any:
        idx = self._dev(h)
        if not (self.driver.gpm and self.model.gpm):
            raise NvmlNotSupported("GPM")
        if gpu_instance_id is not None and gpu_instance_id not in {gi for _s, gi, _p, _m in self.mig_layout}:
            raise NvmlNotFound("GPU instance")
        return _GpmSample(idx, gpu_instance_id, self._t())

    def gpm_metrics(self, earlier: Any, later: Any, metric_ids: list[int]) -> dict[int, float]:
        if (earlier.index, earlier.gpu_instance) != (later.index, later.gpu_instance) or later.t <= earlier.t:
            raise NvmlError("Invalid Argument")
        load = self._load(later.index)
        # a busy LLM server: kernels almost always running, SMs and tensor cores far from saturated
        shares = {1: 0.97, 2: 0.42, 3: 0.31, 5: 0.26, 10: 0.48, 11: 0.0, 12: 0.09, 13: 0.04}
        return {mid: round(100 * shares[mid] * load, 2) for mid in metric_ids if mid in shares}

    def gpm_free(self, sample: Any) -> None:
        return None

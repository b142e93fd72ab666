"""GPU exporter: NVML metrics per GPU (``llm_monitor_gpu_*``).

Fast path (every ``interval``): utilisation, memory, temperatures, power, energy, clocks, clock event
reasons, fan, P-state, ECC, remapped rows, NVLink, processes, MIG. Slow/blocking NVML calls run on
their own threads and only publish results: PCIe throughput (about 40 ms per GPU) and XID events
(``nvmlEventSetWait`` with a timeout).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_monitor_exporters.core.collector import Collector, Snapshot
from llm_monitor_exporters.core.config import opt
from llm_monitor_exporters.core.procfs import process_container_id, process_name
from llm_monitor_exporters.gpu.nvml import (
    CLOCK_EVENT_REASONS,
    NvmlBackend,
    NvmlError,
    NvmlGpuLost,
    NvmlLibraryNotFound,
    NvmlNotSupported,
    NvmlTimeout,
)
from llm_monitor_exporters.gpu.nvml_simulation import SCENARIOS

log = logging.getLogger(__name__)
P = "llm_monitor_gpu_"
LABELS = ["gpu", "uuid", "name", "pci_bus_id"]
#: XID codes pre-initialised at 0 per GPU so that increase() catches their first occurrence.
CRITICAL_XIDS = (48, 62, 64, 74, 79, 94, 95, 119, 120)
T = TypeVar("T")


@dataclass
class SimulationConfig:
    gpus: int = opt(8, minimum=1, help="number of simulated GPUs")
    model: str = opt("NVIDIA H100 80GB HBM3", help="H100, H200, A100, L40S or an exact model name")
    scenario: str = opt("busy", choices=SCENARIOS, help="how the values evolve")
    mig_devices: int = opt(0, minimum=0, help="MIG devices per GPU (MIG-capable models only)")
    pcie_latency_seconds: float = opt(0.04, minimum=0, help="simulated cost of one PCIe sample per GPU")


@dataclass
class GpuConfig:
    backend: str = opt("nvml", choices=("nvml", "simulation"), help="nvml (real) or simulation")
    pcie_interval: float = opt(30.0, minimum=0, help="seconds between PCIe throughput samples (0: off)")
    xid_events: bool = opt(True, help="watch NVML XID critical error events")
    processes: bool = opt(True, help="per-process GPU memory")
    nvlink: bool = opt(True, help="NVLink counters (field values)")
    mig: bool = opt(True, help="MIG mode and MIG device memory")
    nvml_retry_interval: float = opt(60.0, minimum=1, help="seconds between NVML init retries")
    proc_root: str = opt("/proc", help="procfs mount (process names and container ids)")
    simulation: SimulationConfig = opt(factory=SimulationConfig, help="simulation backend settings")


@dataclass
class _Gpu:
    index: int
    handle: Any
    labels: list[str]  # gpu, uuid, name, pci_bus_id


class GpuCollector(Collector):
    name = "gpu"
    error_kinds = ("nvml_init", "nvml_query", "gpu_lost")
    upstream_names = ("nvml",)

    def __init__(self, config: GpuConfig, backend: NvmlBackend | None = None) -> None:
        self.config = config
        self._backend = backend
        self._proc_root = Path(config.proc_root)
        self._gpus: list[_Gpu] = []
        self._lost: set[int] = set()
        self._by_uuid: dict[str, int] = {}
        self._initialised = False
        self._next_init = 0.0
        self._init_logged = False
        self._driver = ""
        self._cuda = ""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._pcie: dict[int, tuple[int, int]] = {}  # index -> (tx, rx) bytes/s
        self._xids: dict[tuple[int, int], int] = {}
        self._xid_state = "off"

    # --- lifecycle -----------------------------------------------------------------------------
    def _make_backend(self) -> NvmlBackend:
        if self._backend is None:
            from llm_monitor_exporters.gpu.nvml import PynvmlBackend  # noqa: PLC0415

            self._backend = PynvmlBackend()
        return self._backend

    def _try_init(self, errors: dict[str, int]) -> bool:
        if self._initialised:
            return True
        now = time.monotonic()
        if now < self._next_init:
            return False
        self._next_init = now + self.config.nvml_retry_interval
        try:
            backend = self._make_backend()
            backend.init()
            self._driver = backend.driver_version()
            try:
                cuda = backend.cuda_driver_version()
                self._cuda = f"{cuda // 1000}.{cuda % 1000 // 10}"
            except NvmlNotSupported:
                self._cuda = ""
            count = backend.device_count()
        except NvmlLibraryNotFound as exc:
            errors["nvml_init"] = 1
            level = logging.DEBUG if self._init_logged else logging.ERROR
            log.log(
                level,
                "NVML library not found (%s): no NVIDIA driver on this host? Serving "
                'llm_monitor_exporter_up{upstream="nvml"} 0; retrying every %.0fs',
                exc,
                self.config.nvml_retry_interval,
            )
            self._init_logged = True
            return False
        except (NvmlError, ImportError) as exc:
            errors["nvml_init"] = 1
            level = logging.DEBUG if self._init_logged else logging.ERROR
            log.log(level, "NVML initialisation failed: %s; retrying every %.0fs", exc, self.config.nvml_retry_interval)
            self._init_logged = True
            return False
        self._gpus = []
        for index in range(count):
            self._gpus.append(self._describe(index))
        self._initialised = True
        log.info("NVML initialised: driver %s, CUDA %s, %d GPU(s)", self._driver, self._cuda or "?", count)
        self._start_helpers()
        return True

    def _describe(self, index: int) -> _Gpu:
        """Fetch and cache the handle and static labels of one GPU (handles are expensive)."""
        b = self._make_backend()
        labels = [str(index), "", "", ""]
        handle: Any = None
        try:
            handle = b.handle(index)
            labels = [str(index), b.uuid(handle), b.name(handle), b.pci_bus_id(handle)]
            self._by_uuid[labels[1]] = index
        except NvmlError as exc:
            log.warning("GPU %d: cannot read identity: %s", index, exc)
            handle = handle if isinstance(exc, NvmlGpuLost) else None
        return _Gpu(index=index, handle=handle, labels=labels)

    def _start_helpers(self) -> None:
        if self.config.pcie_interval > 0:
            self._spawn("gpu-pcie", self._pcie_loop)
        if self.config.xid_events:
            self._spawn("gpu-xid", self._xid_loop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        if self._initialised and self._backend is not None:
            try:
                self._backend.shutdown()
            except NvmlError:
                pass
            self._initialised = False

    # --- helper threads ------------------------------------------------------------------------
    def _pcie_loop(self) -> None:
        b = self._make_backend()
        while not self._stop.is_set():
            for gpu in list(self._gpus):
                if self._stop.is_set():
                    return
                if gpu.handle is None or gpu.index in self._lost:
                    continue
                try:
                    tx = b.pcie_throughput_kbs(gpu.handle, tx=True) * 1024
                    rx = b.pcie_throughput_kbs(gpu.handle, tx=False) * 1024
                except NvmlNotSupported:
                    continue
                except NvmlError as exc:
                    log.debug("GPU %d: PCIe throughput failed: %s", gpu.index, exc)
                    with self._lock:
                        self._pcie.pop(gpu.index, None)
                    continue
                with self._lock:
                    self._pcie[gpu.index] = (tx, rx)
            self._stop.wait(self.config.pcie_interval)

    def _xid_loop(self) -> None:
        b = self._make_backend()
        handles = [g.handle for g in self._gpus if g.handle is not None]
        try:
            event_set = b.xid_event_set(handles)
        except NvmlError as exc:
            self._xid_state = "unsupported"
            log.warning("XID events unavailable: %s", exc)
            return
        self._xid_state = "on"
        with self._lock:
            for gpu in self._gpus:
                for xid in CRITICAL_XIDS:
                    self._xids.setdefault((gpu.index, xid), 0)
        try:
            while not self._stop.is_set():
                try:
                    event = b.xid_wait(event_set, 500)
                except NvmlTimeout:
                    continue
                except NvmlError as exc:
                    log.debug("XID wait failed: %s", exc)
                    self._stop.wait(1.0)
                    continue
                index = self._by_uuid.get(event.uuid)
                if index is None:
                    continue
                log.warning("GPU %d (%s): XID %d", index, event.uuid, event.xid)
                with self._lock:
                    self._xids[(index, event.xid)] = self._xids.get((index, event.xid), 0) + 1
        finally:
            try:
                b.free_event_set(event_set)
            except NvmlError:
                pass

    # --- collection ----------------------------------------------------------------------------
    def collect_snapshot(self) -> Snapshot:
        errors: dict[str, int] = {}
        if not self._try_init(errors):
            return Snapshot(families=[], upstreams={"nvml": False}, errors=errors)
        return Snapshot(families=self._collect(errors), upstreams={"nvml": True}, errors=errors)

    def _collect(self, errors: dict[str, int]) -> list[Metric]:
        b = self._make_backend()
        f = _Families()
        info = f.gauge("info", "NVML driver information (always 1).", ["driver_version", "cuda_version"])
        info.add_metric([self._driver, self._cuda], 1)
        f.gauge("devices", "Number of GPUs NVML reports.", []).add_metric([], len(self._gpus))

        def get(fn: Callable[[], T]) -> T | None:
            try:
                return fn()
            except NvmlNotSupported:
                return None
            except NvmlGpuLost:
                raise
            except NvmlError as exc:
                errors["nvml_query"] = errors.get("nvml_query", 0) + 1
                log.debug("NVML query failed: %s", exc)
                return None

        f.gauge("up", "Whether the GPU answered NVML queries in the last collection (1) or not (0).", [])
        for gpu in self._gpus:
            if gpu.handle is None or not gpu.labels[1]:
                # identity never read: retry (cheap when the GPU came back)
                refreshed = self._describe(gpu.index)
                gpu.handle, gpu.labels = refreshed.handle, refreshed.labels
            try:
                if gpu.handle is None:
                    raise NvmlGpuLost("no handle")
                self._collect_gpu(b, gpu, f, get)
                f.add("up", gpu.labels, 1)
                if gpu.index in self._lost:
                    log.info("GPU %d answers again", gpu.index)
                    self._lost.discard(gpu.index)
            except NvmlGpuLost as exc:
                f.add("up", gpu.labels, 0)
                errors["gpu_lost"] = errors.get("gpu_lost", 0) + 1
                if gpu.index not in self._lost:
                    log.error("GPU %d (%s) is lost: %s", gpu.index, gpu.labels[1], exc)
                    self._lost.add(gpu.index)

        with self._lock:
            pcie = dict(self._pcie)
            xids = dict(self._xids)
        tx = f.gauge(
            "pcie_transmit_bytes_per_second",
            "PCIe transmit throughput (sampled in the background every pcie_interval).",
            [],
        )
        rx = f.gauge("pcie_receive_bytes_per_second", "PCIe receive throughput (sampled in the background).", [])
        for gpu in self._gpus:
            if gpu.index in pcie and gpu.index not in self._lost:
                tx.add_metric(gpu.labels, pcie[gpu.index][0])
                rx.add_metric(gpu.labels, pcie[gpu.index][1])
        xid = f.counter("xid_errors", "XID errors reported by NVML events, by XID code.", ["xid"])
        for (index, code), count in sorted(xids.items()):
            if index < len(self._gpus):
                xid.add_metric([*self._gpus[index].labels, str(code)], count)
        f.gauge("xid_events_watched", "Whether XID events are being watched (1) or not (0).", []).add_metric(
            [], 1 if self._xid_state == "on" else 0
        )
        return f.all()

    def _collect_gpu(self, b: NvmlBackend, gpu: _Gpu, f: _Families, get: Callable[[Callable[[], Any]], Any]) -> None:
        h, lb = gpu.handle, gpu.labels
        util = get(lambda: b.utilization(h))
        if util is not None:
            f.add("utilization_ratio", lb, util[0] / 100)
            f.add("memory_utilization_ratio", lb, util[1] / 100)
        mem = get(lambda: b.memory_info(h))
        if mem is not None:
            f.add("memory_total_bytes", lb, mem.total)
            f.add("memory_used_bytes", lb, mem.used)
            f.add("memory_free_bytes", lb, mem.free)
            if mem.reserved is not None:
                f.add("memory_reserved_bytes", lb, mem.reserved)
        for metric, fn in (
            ("temperature_celsius", b.temperature),
            ("memory_temperature_celsius", b.memory_temperature),
        ):
            value = get(partial(fn, h))
            if value is not None:
                f.add(metric, lb, value)
        for metric, fn in (("power_watts", b.power_usage_mw), ("power_limit_watts", b.power_limit_mw)):
            value = get(partial(fn, h))
            if value is not None:
                f.add(metric, lb, value / 1000)
        energy = get(lambda: b.total_energy_mj(h))
        if energy is not None:
            f.add("energy_joules_total", lb, energy / 1000)
        for kind, label in (("sm", "sm"), ("mem", "memory")):
            cur = get(partial(b.clock_mhz, h, kind))
            if cur is not None:
                f.add("clock_hertz", [*lb, label], cur * 1e6)
            top = get(partial(b.max_clock_mhz, h, kind))
            if top is not None:
                f.add("clock_max_hertz", [*lb, label], top * 1e6)
        reasons = get(lambda: b.clock_event_reasons(h))
        if reasons is not None:
            for reason, bit in CLOCK_EVENT_REASONS.items():
                f.add("clock_event_active", [*lb, reason], 1 if reasons & bit else 0)
        fan = get(lambda: b.fan_speed_percent(h))
        if fan is not None:
            f.add("fan_speed_ratio", lb, fan / 100)
        pstate = get(lambda: b.pstate(h))
        if pstate is not None and pstate != 32:  # 32 = NVML_PSTATE_UNKNOWN
            f.add("performance_state", lb, pstate)
        for kind, unc in (("corrected", False), ("uncorrected", True)):
            value = get(partial(b.ecc_total, h, unc))
            if value is not None:
                f.add("ecc_errors_total", [*lb, kind], value)
        rows = get(lambda: b.remapped_rows(h))
        if rows is not None:
            f.add("remapped_rows", [*lb, "correctable"], rows[0])
            f.add("remapped_rows", [*lb, "uncorrectable"], rows[1])
            f.add("remapped_rows_pending", lb, 1 if rows[2] else 0)
            f.add("remapped_rows_failure", lb, 1 if rows[3] else 0)
        if self.config.nvlink:
            nv = get(lambda: b.nvlink(h))
            if nv is not None:
                f.add("nvlink_links", lb, nv.links)
                f.add("nvlink_transmit_bytes_total", lb, nv.tx_bytes)
                f.add("nvlink_receive_bytes_total", lb, nv.rx_bytes)
                for kind, count in sorted(nv.errors.items()):
                    f.add("nvlink_errors_total", [*lb, kind], count)
        if self.config.processes:
            procs = get(lambda: b.processes(h))
            for proc in procs or []:
                if proc.used_memory is None:
                    continue
                f.add(
                    "process_memory_used_bytes",
                    [
                        lb[0],
                        lb[1],
                        str(proc.pid),
                        process_name(self._proc_root, proc.pid),
                        process_container_id(self._proc_root, proc.pid),
                    ],
                    proc.used_memory,
                )
        if self.config.mig:
            mode = get(lambda: b.mig_mode(h))
            if mode is not None:
                f.add("mig_mode", lb, mode[0])
                f.add("mig_mode_pending", lb, mode[1])
                if mode[0]:
                    for mig in get(lambda: b.mig_devices(h)) or []:
                        ml = [lb[0], lb[1], mig.uuid, str(mig.gpu_instance_id), str(mig.compute_instance_id)]
                        f.add("mig_memory_total_bytes", ml, mig.memory.total)
                        f.add("mig_memory_used_bytes", ml, mig.memory.used)


_PROC_LABELS = ["gpu", "uuid", "pid", "process_name", "container_id"]
_MIG_LABELS = ["gpu", "uuid", "mig_uuid", "gpu_instance", "compute_instance"]

#: name (without prefix) -> (type, help, extra labels or full label list)
METRICS: dict[str, tuple[str, str, list[str]]] = {
    "utilization_ratio": ("gauge", "GPU utilisation (fraction of time a kernel was running), 0..1.", []),
    "memory_utilization_ratio": ("gauge", "Memory controller utilisation, 0..1.", []),
    "memory_total_bytes": ("gauge", "Total framebuffer memory.", []),
    "memory_used_bytes": ("gauge", "Used framebuffer memory.", []),
    "memory_free_bytes": ("gauge", "Free framebuffer memory.", []),
    "memory_reserved_bytes": ("gauge", "Framebuffer memory reserved by the driver (NVML memory info v2).", []),
    "temperature_celsius": ("gauge", "GPU core temperature.", []),
    "memory_temperature_celsius": ("gauge", "HBM memory temperature (where supported).", []),
    "power_watts": ("gauge", "Current power draw.", []),
    "power_limit_watts": ("gauge", "Enforced power limit.", []),
    "energy_joules": ("counter", "Energy consumed since the driver was loaded.", []),
    "clock_hertz": ("gauge", "Current clock frequency by clock (sm, memory).", ["clock"]),
    "clock_max_hertz": ("gauge", "Maximum clock frequency by clock (sm, memory).", ["clock"]),
    "clock_event_active": ("gauge", "Whether a clock event (throttle) reason is active (1) or not (0).", ["reason"]),
    "fan_speed_ratio": ("gauge", "Fan speed as a fraction of the maximum (boards with fans only).", []),
    "performance_state": ("gauge", "Performance state (0 = P0, maximum performance .. 15).", []),
    "ecc_errors": (
        "counter",
        "ECC errors since the last reset (aggregate), by type (corrected, uncorrected).",
        ["type"],
    ),
    "remapped_rows": ("gauge", "Rows remapped by the row remapper, by type (correctable, uncorrectable).", ["type"]),
    "remapped_rows_pending": ("gauge", "Whether a row remapping is pending (needs a GPU reset).", []),
    "remapped_rows_failure": ("gauge", "Whether a row remapping failed.", []),
    "nvlink_links": ("gauge", "Number of NVLink links.", []),
    "nvlink_transmit_bytes": ("counter", "NVLink data transmitted, all links.", []),
    "nvlink_receive_bytes": ("counter", "NVLink data received, all links.", []),
    "nvlink_errors": (
        "counter",
        "NVLink errors summed over links, by type (crc_flit, crc_data, replay, recovery).",
        ["type"],
    ),
    "process_memory_used_bytes": ("gauge", "GPU memory used by a process.", _PROC_LABELS),
    "mig_mode": ("gauge", "Current MIG mode (1 enabled, 0 disabled).", []),
    "mig_mode_pending": ("gauge", "Pending MIG mode (applies after a GPU reset).", []),
    "mig_memory_total_bytes": ("gauge", "Memory of a MIG device.", _MIG_LABELS),
    "mig_memory_used_bytes": ("gauge", "Used memory of a MIG device.", _MIG_LABELS),
}


class _Families:
    """Collects metric families lazily, in a stable order."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def _labels(self, extra: list[str]) -> list[str]:
        return extra if extra and extra[0] == "gpu" else [*LABELS, *extra]

    def gauge(self, name: str, doc: str, extra: list[str]) -> GaugeMetricFamily:
        fam = GaugeMetricFamily(
            P + name,
            doc,
            labels=self._labels(extra) if name not in ("info", "devices", "xid_events_watched") else extra,
        )
        self._families[name] = fam
        return fam

    def counter(self, name: str, doc: str, extra: list[str]) -> CounterMetricFamily:
        fam = CounterMetricFamily(P + name, doc, labels=self._labels(extra))
        self._families[name] = fam
        return fam

    def add(self, name: str, labels: list[str], value: float) -> None:
        key = name[: -len("_total")] if name.endswith("_total") else name
        fam = self._families.get(key)
        if fam is None:
            kind, doc, extra = METRICS[key] if key != "up" else ("gauge", "", [])
            fam = self.counter(key, doc, extra) if kind == "counter" else self.gauge(key, doc, extra)
        fam.add_metric(labels, value)  # type: ignore[attr-defined]

    def all(self) -> list[Metric]:
        return list(self._families.values())

"""A small NVML facade: the only NVML surface the GPU collector uses.

:class:`PynvmlBackend` implements it with the real ``pynvml`` (nvidia-ml-py);
:mod:`llm_monitor_exporters.gpu.nvml_simulation` implements it for tests, demos and benchmarks.
Errors are translated into the exception classes below so the collector never sees pynvml types.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


class NvmlError(Exception):
    """Any NVML failure."""


class NvmlNotSupported(NvmlError):
    """The query is not supported by this GPU/driver (skipped silently)."""


class NvmlGpuLost(NvmlError):
    """The GPU fell off the bus / is lost: report it with up=0."""


class NvmlLibraryNotFound(NvmlError):
    """libnvidia-ml.so.1 is missing (no driver)."""


class NvmlTimeout(NvmlError):
    """Event wait timed out (normal in the XID watcher)."""


@dataclass
class MemoryInfo:
    total: int
    free: int
    used: int
    reserved: int | None = None


@dataclass
class ProcessInfo:
    pid: int
    used_memory: int | None


@dataclass
class MigDeviceInfo:
    index: int
    uuid: str
    gpu_instance_id: int
    compute_instance_id: int
    memory: MemoryInfo


@dataclass
class NvlinkCounters:
    links: int
    tx_bytes: int
    rx_bytes: int
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class XidEvent:
    uuid: str
    xid: int


# Clock event ("throttle") reason bits, as defined by NVML.
CLOCK_EVENT_REASONS: dict[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}


class NvmlBackend(Protocol):
    """The facade. ``Handle`` values are opaque; callers cache them per GPU index."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def driver_version(self) -> str: ...
    def cuda_driver_version(self) -> int: ...
    def device_count(self) -> int: ...
    def handle(self, index: int) -> Any: ...
    def uuid(self, h: Any) -> str: ...
    def name(self, h: Any) -> str: ...
    def pci_bus_id(self, h: Any) -> str: ...
    def utilization(self, h: Any) -> tuple[int, int]: ...
    def memory_info(self, h: Any) -> MemoryInfo: ...
    def temperature(self, h: Any) -> int: ...
    def memory_temperature(self, h: Any) -> int: ...
    def power_usage_mw(self, h: Any) -> int: ...
    def power_limit_mw(self, h: Any) -> int: ...
    def total_energy_mj(self, h: Any) -> int: ...
    def clock_mhz(self, h: Any, kind: str) -> int: ...
    def max_clock_mhz(self, h: Any, kind: str) -> int: ...
    def clock_event_reasons(self, h: Any) -> int: ...
    def fan_speed_percent(self, h: Any) -> int: ...
    def pstate(self, h: Any) -> int: ...
    def ecc_total(self, h: Any, uncorrected: bool) -> int: ...
    def remapped_rows(self, h: Any) -> tuple[int, int, bool, bool]: ...
    def pcie_throughput_kbs(self, h: Any, tx: bool) -> int: ...
    def nvlink(self, h: Any) -> NvlinkCounters: ...
    def processes(self, h: Any) -> list[ProcessInfo]: ...
    def mig_mode(self, h: Any) -> tuple[int, int]: ...
    def mig_devices(self, h: Any) -> list[MigDeviceInfo]: ...
    def xid_event_set(self, handles: list[Any]) -> Any: ...
    def xid_wait(self, event_set: Any, timeout_ms: int) -> XidEvent: ...
    def free_event_set(self, event_set: Any) -> None: ...


def _translate(exc: Exception) -> NvmlError:
    import pynvml  # noqa: PLC0415

    value = getattr(exc, "value", None)
    msg = str(exc)
    if value in (
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        pynvml.NVML_ERROR_NO_PERMISSION,
        pynvml.NVML_ERROR_NO_DATA,
    ):
        return NvmlNotSupported(msg)
    if value == pynvml.NVML_ERROR_GPU_IS_LOST:
        return NvmlGpuLost(msg)
    if value in (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, pynvml.NVML_ERROR_DRIVER_NOT_LOADED):
        return NvmlLibraryNotFound(msg)
    if value == pynvml.NVML_ERROR_TIMEOUT:
        return NvmlTimeout(msg)
    return NvmlError(msg)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PynvmlBackend:
    """The product path: real NVML through nvidia-ml-py (``import pynvml``)."""

    _NVLINK_ERROR_FIELDS = {
        "crc_flit": "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "crc_data": "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
        "replay": "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
        "recovery": "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    }

    def __init__(self) -> None:
        import pynvml  # noqa: PLC0415

        self._n: Any = pynvml
        self._lock = threading.Lock()

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self._n, fn)(*args)
        except self._n.NVMLError as exc:
            raise _translate(exc) from exc
        except AttributeError as exc:  # function missing in this binding
            raise NvmlNotSupported(str(exc)) from exc

    def init(self) -> None:
        self._call("nvmlInit")

    def shutdown(self) -> None:
        self._call("nvmlShutdown")

    def driver_version(self) -> str:
        return _text(self._call("nvmlSystemGetDriverVersion"))

    def cuda_driver_version(self) -> int:
        return int(self._call("nvmlSystemGetCudaDriverVersion"))

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def handle(self, index: int) -> Any:
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def uuid(self, h: Any) -> str:
        return _text(self._call("nvmlDeviceGetUUID", h))

    def name(self, h: Any) -> str:
        return _text(self._call("nvmlDeviceGetName", h))

    def pci_bus_id(self, h: Any) -> str:
        return _text(self._call("nvmlDeviceGetPciInfo", h).busId)

    def utilization(self, h: Any) -> tuple[int, int]:
        u = self._call("nvmlDeviceGetUtilizationRates", h)
        return int(u.gpu), int(u.memory)

    def memory_info(self, h: Any) -> MemoryInfo:
        try:
            m = self._call("nvmlDeviceGetMemoryInfo", h, self._n.nvmlMemory_v2)
            return MemoryInfo(int(m.total), int(m.free), int(m.used), int(m.reserved))
        except NvmlNotSupported:
            m = self._call("nvmlDeviceGetMemoryInfo", h)
            return MemoryInfo(int(m.total), int(m.free), int(m.used))

    def temperature(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetTemperature", h, self._n.NVML_TEMPERATURE_GPU))

    def _field(self, h: Any, field_id: int, scope: int | None = None) -> int:
        values = self._call("nvmlDeviceGetFieldValues", h, [field_id if scope is None else (field_id, scope)])
        return self._field_value(values[0])

    def _field_value(self, fv: Any) -> int:
        if fv.nvmlReturn != self._n.NVML_SUCCESS:
            raise NvmlNotSupported(f"field {fv.fieldId}: NVML return {fv.nvmlReturn}")
        vt = fv.valueType
        n = self._n
        if vt == n.NVML_VALUE_TYPE_DOUBLE:
            return int(fv.value.dVal)
        if vt == n.NVML_VALUE_TYPE_UNSIGNED_INT:
            return int(fv.value.uiVal)
        if vt == n.NVML_VALUE_TYPE_UNSIGNED_LONG:
            return int(fv.value.ulVal)
        if vt == n.NVML_VALUE_TYPE_SIGNED_LONG_LONG:
            return int(fv.value.sllVal)
        return int(fv.value.ullVal)

    def memory_temperature(self, h: Any) -> int:
        return self._field(h, self._n.NVML_FI_DEV_MEMORY_TEMP)

    def power_usage_mw(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetPowerUsage", h))

    def power_limit_mw(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetEnforcedPowerLimit", h))

    def total_energy_mj(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetTotalEnergyConsumption", h))

    def _clock_type(self, kind: str) -> int:
        return int(self._n.NVML_CLOCK_SM if kind == "sm" else self._n.NVML_CLOCK_MEM)

    def clock_mhz(self, h: Any, kind: str) -> int:
        return int(self._call("nvmlDeviceGetClockInfo", h, self._clock_type(kind)))

    def max_clock_mhz(self, h: Any, kind: str) -> int:
        return int(self._call("nvmlDeviceGetMaxClockInfo", h, self._clock_type(kind)))

    def clock_event_reasons(self, h: Any) -> int:
        try:
            return int(self._call("nvmlDeviceGetCurrentClocksEventReasons", h))
        except NvmlNotSupported:
            return int(self._call("nvmlDeviceGetCurrentClocksThrottleReasons", h))

    def fan_speed_percent(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetFanSpeed", h))

    def pstate(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetPerformanceState", h))

    def ecc_total(self, h: Any, uncorrected: bool) -> int:
        kind = self._n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED if uncorrected else self._n.NVML_MEMORY_ERROR_TYPE_CORRECTED
        return int(self._call("nvmlDeviceGetTotalEccErrors", h, kind, self._n.NVML_AGGREGATE_ECC))

    def remapped_rows(self, h: Any) -> tuple[int, int, bool, bool]:
        corr, unc, pending, failure = self._call("nvmlDeviceGetRemappedRows", h)
        return int(corr), int(unc), bool(pending), bool(failure)

    def pcie_throughput_kbs(self, h: Any, tx: bool) -> int:
        counter = self._n.NVML_PCIE_UTIL_TX_BYTES if tx else self._n.NVML_PCIE_UTIL_RX_BYTES
        return int(self._call("nvmlDeviceGetPcieThroughput", h, counter))

    def nvlink(self, h: Any) -> NvlinkCounters:
        n = self._n
        links = self._field(h, n.NVML_FI_DEV_NVLINK_LINK_COUNT)
        if links <= 0:
            raise NvmlNotSupported("no NVLink links")
        ids: list[tuple[int, int]] = []
        for link in range(links):
            ids += [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link), (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link)]
        err_ids = [(getattr(n, name), 0) for name in self._NVLINK_ERROR_FIELDS.values()]
        values = self._call("nvmlDeviceGetFieldValues", h, ids + err_ids)
        tx = rx = 0
        for i in range(0, 2 * links, 2):
            try:
                tx += self._field_value(values[i]) * 1024  # KiB
                rx += self._field_value(values[i + 1]) * 1024
            except NvmlNotSupported:
                continue
        errors: dict[str, int] = {}
        for offset, kind in enumerate(self._NVLINK_ERROR_FIELDS):
            try:
                errors[kind] = self._field_value(values[2 * links + offset])
            except NvmlNotSupported:
                continue
        return NvlinkCounters(links=links, tx_bytes=tx, rx_bytes=rx, errors=errors)

    def processes(self, h: Any) -> list[ProcessInfo]:
        out: dict[int, ProcessInfo] = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                procs = self._call(fn, h)
            except NvmlNotSupported:
                continue
            for p in procs:
                used = p.usedGpuMemory
                used = None if used is None or used >= 2**63 else int(used)  # NVML_VALUE_NOT_AVAILABLE
                prev = out.get(int(p.pid))
                if prev is None or (used or 0) > (prev.used_memory or 0):
                    out[int(p.pid)] = ProcessInfo(int(p.pid), used)
        return list(out.values())

    def mig_mode(self, h: Any) -> tuple[int, int]:
        current, pending = self._call("nvmlDeviceGetMigMode", h)
        return int(current), int(pending)

    def mig_devices(self, h: Any) -> list[MigDeviceInfo]:
        count = int(self._call("nvmlDeviceGetMaxMigDeviceCount", h))
        out: list[MigDeviceInfo] = []
        for i in range(count):
            try:
                mh = self._call("nvmlDeviceGetMigDeviceHandleByIndex", h, i)
            except (NvmlNotSupported, NvmlError):
                continue  # NVML_ERROR_NOT_FOUND for empty slots
            m = self._call("nvmlDeviceGetMemoryInfo", mh)
            out.append(
                MigDeviceInfo(
                    index=i,
                    uuid=_text(self._call("nvmlDeviceGetUUID", mh)),
                    gpu_instance_id=int(self._call("nvmlDeviceGetGpuInstanceId", mh)),
                    compute_instance_id=int(self._call("nvmlDeviceGetComputeInstanceId", mh)),
                    memory=MemoryInfo(int(m.total), int(m.free), int(m.used)),
                )
            )
        return out

    def xid_event_set(self, handles: list[Any]) -> Any:
        event_set = self._call("nvmlEventSetCreate")
        registered = 0
        for h in handles:
            try:
                self._call("nvmlDeviceRegisterEvents", h, self._n.nvmlEventTypeXidCriticalError, event_set)
                registered += 1
            except NvmlNotSupported:
                continue
        if not registered:
            self._call("nvmlEventSetFree", event_set)
            raise NvmlNotSupported("no GPU supports XID critical error events")
        return event_set

    def xid_wait(self, event_set: Any, timeout_ms: int) -> XidEvent:
        data = self._call("nvmlEventSetWait_v2", event_set, timeout_ms)
        return XidEvent(uuid=_text(self._call("nvmlDeviceGetUUID", data.device)), xid=int(data.eventData))

    def free_event_set(self, event_set: Any) -> None:
        self._call("nvmlEventSetFree", event_set)

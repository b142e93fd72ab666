"""A small NVML facade: the only NVML surface the GPU collector uses.

:class:`PynvmlBackend` implements it with the real ``pynvml`` (nvidia-ml-py);
:mod:`llm_monitor_exporters.gpu.nvml_simulation` implements it for demos and benchmarks.
Every failure, NVML's own and anything else a pynvml call raises (``NVMLLibraryMismatchError`` when a driver lacks a
versioned symbol, ctypes errors), is translated into the exception classes below, so the collector never sees
pynvml types and one failing query never takes others down.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


class NvmlError(Exception):
    """Any NVML failure of one query."""


class NvmlNotSupported(NvmlError):
    """This GPU, driver or caller cannot answer the query (skipped, and reported as unsupported)."""


class NvmlNotFound(NvmlError):
    """The object does not exist (an empty MIG slot)."""


class NvmlGpuUnavailable(NvmlError):
    """The GPU does not answer any more (``up`` 0) until it is reset or the driver reloaded."""

    reason = "unavailable"


class NvmlGpuLost(NvmlGpuUnavailable):
    """NVML_ERROR_GPU_IS_LOST: fell off the bus."""

    reason = "lost"


class NvmlResetRequired(NvmlGpuUnavailable):
    """NVML_ERROR_RESET_REQUIRED: the GPU needs a reset before it can be used again."""

    reason = "reset_required"


class NvmlDriverFailure(NvmlError):
    """NVML as a whole is unusable (UNKNOWN, UNINITIALIZED, DRIVER_NOT_LOADED, version mismatch): re-initialise."""


class NvmlLibraryNotFound(NvmlDriverFailure):
    """libnvidia-ml.so.1 is missing (no driver)."""


class NvmlTimeout(NvmlError):
    """Event wait timed out (normal in the XID watcher)."""


@dataclass
class MemoryInfo:
    """``used`` is always total - free, reserved memory included, whichever NVML memory version answered."""

    total: int
    free: int
    reserved: int | None = None  # only NVML memory info v2 (R510+) tells it apart

    @property
    def used(self) -> int:
        return self.total - self.free


@dataclass
class ProcessInfo:
    pid: int
    used_memory: int | None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None


@dataclass
class MigDeviceInfo:
    slot: int
    uuid: str
    gpu_instance_id: int
    compute_instance_id: int
    profile: str  # "3g.40gb"; "" when the name does not tell
    memory: MemoryInfo


@dataclass
class NvlinkCounters:
    links: int
    #: link -> bytes; a link whose counter failed is absent, so no sum ever goes backwards
    tx_bytes: dict[int, int] = field(default_factory=dict)
    rx_bytes: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class XidEvent:
    device_key: int  # handle_key() of the GPU the event is for: no NVML call needed to know which GPU it is
    xid: int
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None


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

#: nvmlDeviceGetViolationStatus policies -> the ``reason`` label of clock_throttle_seconds_total
VIOLATION_POLICIES: dict[str, int] = {
    "power": 0,
    "thermal": 1,
    "sync_boost": 2,
    "board_limit": 3,
    "low_utilization": 4,
    "reliability": 5,
    "app_clocks": 10,
    "base_clocks": 11,
}

#: nvmlDeviceGetTemperatureThreshold kinds -> the ``limit`` label of temperature_limit_celsius
TEMPERATURE_LIMITS: dict[str, int] = {"shutdown": 0, "slowdown": 1, "memory_max": 2, "gpu_max": 3}

#: GPM metric ids (nvmlGpmMetricId_t) -> exported metric (without prefix), all percentages in NVML
GPM_METRICS: dict[int, str] = {
    1: "graphics_active_ratio",
    2: "sm_active_ratio",
    3: "sm_occupancy_ratio",
    5: "tensor_active_ratio",
    10: "dram_active_ratio",
    11: "fp64_active_ratio",
    12: "fp32_active_ratio",
    13: "fp16_active_ratio",
}

_UNSET_ID = 0xFFFFFFFF  # NVML's "no instance" in process and event structs


class NvmlBackend(Protocol):
    """The facade. ``Handle`` values are opaque; callers cache them per GPU index."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def driver_version(self) -> str: ...
    def cuda_driver_version(self) -> int: ...
    def device_count(self) -> int: ...
    def handle(self, index: int) -> Any: ...
    def handle_key(self, h: Any) -> int: ...
    def uuid(self, h: Any) -> str: ...
    def name(self, h: Any) -> str: ...
    def pci_bus_id(self, h: Any) -> str: ...
    def utilization(self, h: Any) -> tuple[int, int]: ...
    def memory_info(self, h: Any) -> MemoryInfo: ...
    def temperature(self, h: Any) -> int: ...
    def temperature_limit(self, h: Any, kind: int) -> int: ...
    def memory_temperature(self, h: Any) -> int: ...
    def power_usage_mw(self, h: Any) -> int: ...
    def power_limit_mw(self, h: Any) -> int: ...
    def total_energy_mj(self, h: Any) -> int: ...
    def clock_mhz(self, h: Any, kind: str) -> int: ...
    def max_clock_mhz(self, h: Any, kind: str) -> int: ...
    def clock_event_reasons(self, h: Any) -> int: ...
    def violation_ns(self, h: Any, policy: int) -> int: ...
    def fan_speed_percent(self, h: Any) -> int: ...
    def pstate(self, h: Any) -> int: ...
    def ecc_total(self, h: Any, uncorrected: bool, volatile: bool = False) -> int: ...
    def remapped_rows(self, h: Any) -> tuple[int, int, bool, bool]: ...
    def retired_pages(self, h: Any, double_bit: bool) -> int: ...
    def retired_pages_pending(self, h: Any) -> bool: ...
    def pcie_bytes(self, h: Any) -> tuple[int, int]: ...
    def pcie_replay_errors(self, h: Any) -> int: ...
    def encoder_utilization(self, h: Any) -> int: ...
    def decoder_utilization(self, h: Any) -> int: ...
    def nvlink(self, h: Any) -> NvlinkCounters: ...
    def processes(self, h: Any) -> list[ProcessInfo]: ...
    def mig_mode(self, h: Any) -> tuple[int, int]: ...
    def mig_handles(self, h: Any) -> list[tuple[int, Any]]: ...
    def mig_device(self, slot: int, mh: Any) -> MigDeviceInfo: ...
    def xid_event_set(self) -> Any: ...
    def xid_register(self, event_set: Any, h: Any) -> None: ...
    def xid_wait(self, event_set: Any, timeout_ms: int) -> XidEvent: ...
    def free_event_set(self, event_set: Any) -> None: ...
    def gpm_supported(self, h: Any) -> bool: ...
    def gpm_sample(self, h: Any, gpu_instance_id: int | None = None) -> Any: ...
    def gpm_metrics(self, earlier: Any, later: Any, metric_ids: list[int]) -> dict[int, float]: ...
    def gpm_free(self, sample: Any) -> None: ...


def mig_profile_from_name(name: str) -> str:
    """NVML names a MIG device "<GPU model> MIG 3g.40gb": the profile is the last word after "MIG"."""
    head, sep, tail = name.rpartition(" MIG ")
    return tail.strip() if sep and head else ""


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
        # versioned entry points this driver lacks, found once (a 470 driver has no _v3 / memory v2 symbols)
        self._memory_v2 = True
        self._process_suffixes: tuple[str, ...] = ("_v3", "_v2")
        n = pynvml
        self._not_supported = {
            n.NVML_ERROR_NOT_SUPPORTED,
            n.NVML_ERROR_FUNCTION_NOT_FOUND,
            n.NVML_ERROR_NO_PERMISSION,
            n.NVML_ERROR_NO_DATA,
            n.NVML_ERROR_ARGUMENT_VERSION_MISMATCH,
            n.NVML_ERROR_INVALID_ARGUMENT,
        }
        self._driver_failures = {
            n.NVML_ERROR_UNINITIALIZED,
            n.NVML_ERROR_DRIVER_NOT_LOADED,
            n.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
            n.NVML_ERROR_UNKNOWN,
        }

    # --- error translation ---------------------------------------------------------------------
    def _translate_code(self, value: int | None, msg: str) -> NvmlError:
        n = self._n
        if value in self._not_supported:
            return NvmlNotSupported(msg)
        if value == n.NVML_ERROR_NOT_FOUND:
            return NvmlNotFound(msg)
        if value == n.NVML_ERROR_GPU_IS_LOST:
            return NvmlGpuLost(msg)
        if value == n.NVML_ERROR_RESET_REQUIRED:
            return NvmlResetRequired(msg)
        if value == n.NVML_ERROR_LIBRARY_NOT_FOUND:
            return NvmlLibraryNotFound(msg)
        if value in self._driver_failures:
            return NvmlDriverFailure(msg)
        if value == n.NVML_ERROR_TIMEOUT:
            return NvmlTimeout(msg)
        return NvmlError(msg)

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self._n, fn)(*args)
        except self._n.NVMLError as exc:
            raise self._translate_code(getattr(exc, "value", None), f"{fn}: {exc}") from exc
        except self._n.NVMLLibraryMismatchError as exc:  # a plain Exception: the driver lacks the symbol
            raise NvmlNotSupported(f"{fn}: this driver lacks the entry point ({exc})") from exc
        except AttributeError as exc:  # function missing in this binding
            raise NvmlNotSupported(f"{fn}: {exc}") from exc
        except Exception as exc:  # ctypes and anything else: one query fails, never the cycle
            raise NvmlError(f"{fn}: {type(exc).__name__}: {exc}") from exc

    # --- library -------------------------------------------------------------------------------
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

    def handle_key(self, h: Any) -> int:
        return int(ctypes.cast(h, ctypes.c_void_p).value or 0)

    # --- identity ------------------------------------------------------------------------------
    def uuid(self, h: Any) -> str:
        return _text(self._call("nvmlDeviceGetUUID", h))

    def name(self, h: Any) -> str:
        return _text(self._call("nvmlDeviceGetName", h))

    def pci_bus_id(self, h: Any) -> str:
        return _text(self._call("nvmlDeviceGetPciInfo", h).busId)

    # --- fast queries --------------------------------------------------------------------------
    def utilization(self, h: Any) -> tuple[int, int]:
        u = self._call("nvmlDeviceGetUtilizationRates", h)
        return int(u.gpu), int(u.memory)

    def memory_info(self, h: Any) -> MemoryInfo:
        if self._memory_v2:
            try:
                m = self._call("nvmlDeviceGetMemoryInfo", h, self._n.nvmlMemory_v2)
                return MemoryInfo(int(m.total), int(m.free), int(m.reserved))
            except (NvmlGpuUnavailable, NvmlDriverFailure):
                raise
            except NvmlNotSupported as exc:
                if "FunctionNotFound" in type(exc.__cause__).__name__ or "Function Not Found" in str(exc):
                    self._memory_v2 = False  # a driver before R510: never ask again
            except NvmlError:
                pass  # any other v2 failure: v1 still answers
        m = self._call("nvmlDeviceGetMemoryInfo", h)
        return MemoryInfo(int(m.total), int(m.free))

    def temperature(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetTemperature", h, self._n.NVML_TEMPERATURE_GPU))

    def temperature_limit(self, h: Any, kind: int) -> int:
        return int(self._call("nvmlDeviceGetTemperatureThreshold", h, kind))

    def _fields(self, h: Any, ids: list[Any]) -> list[int | float | NvmlError]:
        values = self._call("nvmlDeviceGetFieldValues", h, ids)
        return [self._field_value(values[i]) for i in range(len(ids))]

    def _field(self, h: Any, field_id: int) -> int:
        value = self._fields(h, [field_id])[0]
        if isinstance(value, NvmlError):
            raise value
        return int(value)

    def _field_value(self, fv: Any) -> int | float | NvmlError:
        n = self._n
        if fv.nvmlReturn != n.NVML_SUCCESS:
            return self._translate_code(int(fv.nvmlReturn), f"field {fv.fieldId}: NVML return {fv.nvmlReturn}")
        member = {
            n.NVML_VALUE_TYPE_DOUBLE: "dVal",
            n.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
            n.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
            n.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
            n.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
            n.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
            n.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
        }.get(fv.valueType)
        if member is None:
            return NvmlError(f"field {fv.fieldId}: unknown value type {fv.valueType}")
        value = getattr(fv.value, member)
        return float(value) if member == "dVal" else int(value)

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

    def violation_ns(self, h: Any, policy: int) -> int:
        return int(self._call("nvmlDeviceGetViolationStatus", h, policy).violationTime)

    def fan_speed_percent(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetFanSpeed", h))

    def pstate(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetPerformanceState", h))

    def ecc_total(self, h: Any, uncorrected: bool, volatile: bool = False) -> int:
        n = self._n
        kind = n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED if uncorrected else n.NVML_MEMORY_ERROR_TYPE_CORRECTED
        counter = n.NVML_VOLATILE_ECC if volatile else n.NVML_AGGREGATE_ECC
        return int(self._call("nvmlDeviceGetTotalEccErrors", h, kind, counter))

    def remapped_rows(self, h: Any) -> tuple[int, int, bool, bool]:
        corr, unc, pending, failure = self._call("nvmlDeviceGetRemappedRows", h)
        return int(corr), int(unc), bool(pending), bool(failure)

    def retired_pages(self, h: Any, double_bit: bool) -> int:
        n = self._n
        cause = (
            n.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
            if double_bit
            else n.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
        )
        return len(self._call("nvmlDeviceGetRetiredPages", h, cause))

    def retired_pages_pending(self, h: Any) -> bool:
        return bool(self._call("nvmlDeviceGetRetiredPagesPendingStatus", h))

    def pcie_bytes(self, h: Any) -> tuple[int, int]:
        n = self._n
        tx, rx = self._fields(h, [n.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, n.NVML_FI_DEV_PCIE_COUNT_RX_BYTES])
        if isinstance(tx, NvmlError):
            raise tx
        if isinstance(rx, NvmlError):
            raise rx
        return int(tx), int(rx)

    def pcie_replay_errors(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetPcieReplayCounter", h))

    def encoder_utilization(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetEncoderUtilization", h)[0])

    def decoder_utilization(self, h: Any) -> int:
        return int(self._call("nvmlDeviceGetDecoderUtilization", h)[0])

    def nvlink(self, h: Any) -> NvlinkCounters:
        n = self._n
        links = self._field(h, n.NVML_FI_DEV_NVLINK_LINK_COUNT)
        if links <= 0:
            raise NvmlNotSupported("no NVLink links")
        ids: list[tuple[int, int]] = []
        for link in range(links):
            ids += [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link), (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link)]
        ids += [(getattr(n, name), 0) for name in self._NVLINK_ERROR_FIELDS.values()]
        values = self._fields(h, ids)
        lost = next((v for v in values if isinstance(v, NvmlGpuUnavailable | NvmlDriverFailure)), None)
        if lost is not None:
            raise lost
        out = NvlinkCounters(links=links)
        for link in range(links):
            tx, rx = values[2 * link], values[2 * link + 1]
            if not isinstance(tx, NvmlError):
                out.tx_bytes[link] = int(tx) * 1024  # KiB
            if not isinstance(rx, NvmlError):
                out.rx_bytes[link] = int(rx) * 1024
        for offset, kind in enumerate(self._NVLINK_ERROR_FIELDS):
            value = values[2 * links + offset]
            if not isinstance(value, NvmlError):
                out.errors[kind] = int(value)
        return out

    def _running_processes(self, kind: str, h: Any) -> list[Any]:
        for suffix in self._process_suffixes:
            try:
                return list(self._call(f"nvmlDeviceGet{kind}RunningProcesses{suffix}", h))
            except NvmlNotSupported as exc:
                if "Function Not Found" not in str(exc) and "lacks the entry point" not in str(exc):
                    raise
                # this driver lacks this version of the call: never ask for it again
                with self._lock:
                    self._process_suffixes = tuple(s for s in self._process_suffixes if s != suffix)
        raise NvmlNotSupported(f"no {kind} running processes entry point in this driver")

    def processes(self, h: Any) -> list[ProcessInfo]:
        out: dict[int, ProcessInfo] = {}
        for kind in ("Compute", "Graphics"):
            try:
                procs = self._running_processes(kind, h)
            except NvmlNotSupported:
                if kind == "Compute":
                    raise
                continue
            for p in procs:
                used = p.usedGpuMemory
                used = None if used is None or used >= 2**63 else int(used)  # NVML_VALUE_NOT_AVAILABLE
                gi = getattr(p, "gpuInstanceId", _UNSET_ID)
                ci = getattr(p, "computeInstanceId", _UNSET_ID)
                prev = out.get(int(p.pid))
                if prev is None or (used or 0) > (prev.used_memory or 0):
                    out[int(p.pid)] = ProcessInfo(
                        int(p.pid),
                        used,
                        None if gi in (None, _UNSET_ID) else int(gi),
                        None if ci in (None, _UNSET_ID) else int(ci),
                    )
        return list(out.values())

    # --- MIG -----------------------------------------------------------------------------------
    def mig_mode(self, h: Any) -> tuple[int, int]:
        current, pending = self._call("nvmlDeviceGetMigMode", h)
        return int(current), int(pending)

    def mig_handles(self, h: Any) -> list[tuple[int, Any]]:
        count = int(self._call("nvmlDeviceGetMaxMigDeviceCount", h))
        out: list[tuple[int, Any]] = []
        for slot in range(count):
            try:
                out.append((slot, self._call("nvmlDeviceGetMigDeviceHandleByIndex", h, slot)))
            except (NvmlNotFound, NvmlNotSupported):
                continue  # an empty slot
        return out

    def mig_device(self, slot: int, mh: Any) -> MigDeviceInfo:
        return MigDeviceInfo(
            slot=slot,
            uuid=self.uuid(mh),
            gpu_instance_id=int(self._call("nvmlDeviceGetGpuInstanceId", mh)),
            compute_instance_id=int(self._call("nvmlDeviceGetComputeInstanceId", mh)),
            profile=mig_profile_from_name(self.name(mh)),
            memory=self.memory_info(mh),
        )

    # --- XID events ----------------------------------------------------------------------------
    def xid_event_set(self) -> Any:
        return self._call("nvmlEventSetCreate")

    def xid_register(self, event_set: Any, h: Any) -> None:
        self._call("nvmlDeviceRegisterEvents", h, self._n.nvmlEventTypeXidCriticalError, event_set)

    def xid_wait(self, event_set: Any, timeout_ms: int) -> XidEvent:
        data = self._call("nvmlEventSetWait_v2", event_set, timeout_ms)
        gi, ci = int(data.gpuInstanceId), int(data.computeInstanceId)
        return XidEvent(
            device_key=self.handle_key(data.device),
            xid=int(data.eventData),
            gpu_instance_id=None if gi == _UNSET_ID else gi,
            compute_instance_id=None if ci == _UNSET_ID else ci,
        )

    def free_event_set(self, event_set: Any) -> None:
        self._call("nvmlEventSetFree", event_set)

    # --- GPM (Hopper and newer) ----------------------------------------------------------------
    def gpm_supported(self, h: Any) -> bool:
        return bool(self._call("nvmlGpmQueryDeviceSupport", h).isSupportedDevice)

    def gpm_sample(self, h: Any, gpu_instance_id: int | None = None) -> Any:
        sample = self._call("nvmlGpmSampleAlloc")
        try:
            if gpu_instance_id is None:
                self._call("nvmlGpmSampleGet", h, sample)
            else:
                self._call("nvmlGpmMigSampleGet", h, gpu_instance_id, sample)
        except NvmlError:
            self.gpm_free(sample)
            raise
        return sample

    def gpm_metrics(self, earlier: Any, later: Any, metric_ids: list[int]) -> dict[int, float]:
        n = self._n
        request = n.c_nvmlGpmMetricsGet_t()
        request.version = n.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(metric_ids)
        request.sample1 = earlier
        request.sample2 = later
        for i, metric_id in enumerate(metric_ids):
            request.metrics[i].metricId = metric_id
        self._call("nvmlGpmMetricsGet", request)
        return {
            int(request.metrics[i].metricId): float(request.metrics[i].value)
            for i in range(len(metric_ids))
            if request.metrics[i].nvmlReturn == n.NVML_SUCCESS
        }

    def gpm_free(self, sample: Any) -> None:
        try:
            self._call("nvmlGpmSampleFree", sample)
        except NvmlError:
            pass  # nothing left to release

"""The C NVML double (tests/nvml_double) itself, through the real pynvml.

The "current" library (driver 550) is loaded in this process, where pynvml's own CDLL("libnvidia-ml.so.1") finds
it by its soname; the r470 library, which has the same soname, runs in subprocesses that find it through
LD_LIBRARY_PATH. Every expectation about a model comes from llm_monitor_exporters.gpu.models, the table the double
is generated from.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pynvml as n
import pytest

from llm_monitor_exporters.gpu.models import DRIVERS, MODELS, PROFILES
from nvml_double import C_SOURCE, NvmlDouble, build, compile_command, variants

MIB = 1024 * 1024
UNSET = 0xFFFFFFFF
CURRENT_PROFILES = [name for name, p in PROFILES.items() if p.driver == variants()["current"]]
R470_DRIVER = variants()["r470"]


@pytest.fixture(scope="module")
def double() -> NvmlDouble:
    try:
        return NvmlDouble.load("current")
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"NVML double unavailable: {exc}")


@pytest.fixture
def nvml(double: NvmlDouble) -> Iterator[NvmlDouble]:
    """h200 with 2 GPUs, NVML initialised."""
    double.reset("h200", 2)
    n.nvmlInit()
    yield double
    double.reset("h200", 2)


def rc(fn: Any, *args: Any) -> int:
    """The NVML return code of a pynvml call: 0, or the NVMLError's value."""
    try:
        fn(*args)
    except n.NVMLError as exc:
        return int(exc.value)
    return 0


def ptr(handle: Any) -> int:
    return int(ctypes.cast(handle, ctypes.c_void_p).value or 0)


def fields(handle: Any, ids: list[Any]) -> list[Any]:
    return list(n.nvmlDeviceGetFieldValues(handle, ids))


def start_profile(double: NvmlDouble, profile: str, gpus: int = 1) -> list[Any]:
    double.reset(profile, gpus)
    n.nvmlInit()
    return [n.nvmlDeviceGetHandleByIndex(i) for i in range(gpus)]


# --- library ------------------------------------------------------------------------------------------------
def test_init_shutdown_refcount_and_calls_before_init(double: NvmlDouble) -> None:
    double.reset("h200", 2)
    n.nvmlInit()
    n.nvmlInit()
    assert double.counter("refcount") == 2
    n.nvmlShutdown()
    assert n.nvmlDeviceGetCount() == 2, "still initialised once"
    n.nvmlShutdown()
    assert rc(n.nvmlDeviceGetCount) == n.NVML_ERROR_UNINITIALIZED
    assert rc(n.nvmlSystemGetDriverVersion) == n.NVML_ERROR_UNINITIALIZED
    assert rc(n.nvmlShutdown) == n.NVML_ERROR_UNINITIALIZED
    assert double.counter("refcount") == 0, "never below 0"
    assert double.lib.nvmlInit_v2() == 0
    assert [double.counter(k) for k in ("init_calls", "init_ok", "shutdown_calls", "refcount")] == [3, 3, 3, 1]
    assert double.counter("calls") >= 8
    with pytest.raises(KeyError):
        double.counter("nope")


def test_error_strings(double: NvmlDouble) -> None:
    expected = {0: "Success", 1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported", 4: "Insufficient Permissions",
                6: "Not Found", 7: "Insufficient Size", 9: "Driver Not Loaded", 10: "Timeout", 13: "Function Not Found",
                15: "GPU is lost", 16: "GPU requires reset", 25: "Argument version mismatch", 999: "Unknown Error",
                12345: "Unknown Error"}  # fmt: skip
    assert {code: n.nvmlErrorString(code) for code in expected} == expected
    assert str(n.NVMLError(15)) == "GPU is lost"


def test_reset_refuses_unknown_profiles_other_drivers_and_gpu_counts(double: NvmlDouble) -> None:
    assert double.lib.nvml_double_reset(b"nope", 2) == -1
    assert double.lib.nvml_double_reset(b"pascal_470", 2) == -2
    for bad in (0, 65):
        with pytest.raises(ValueError, match="1..64"):
            double.reset("h200", bad)
    with pytest.raises(ValueError, match="driver generation"):
        double.reset("pascal_470", 1)
    double.reset("h200", 64)
    n.nvmlInit()
    assert n.nvmlDeviceGetCount() == 64


# --- devices: what each profile says -------------------------------------------------------------------------
@pytest.mark.parametrize("profile", CURRENT_PROFILES)
def test_every_figure_comes_from_the_model_table(double: NvmlDouble, profile: str) -> None:
    p = PROFILES[profile]
    m = MODELS[p.model]
    handles = start_profile(double, profile, 3)
    assert n.nvmlSystemGetDriverVersion() == p.driver
    assert n.nvmlSystemGetCudaDriverVersion() == DRIVERS[p.driver].cuda == n.nvmlSystemGetCudaDriverVersion_v2()
    uuids, buses = set(), set()
    for h in handles:
        assert n.nvmlDeviceGetName(h) == m.name
        uuids.add(n.nvmlDeviceGetUUID(h))
        pci = n.nvmlDeviceGetPciInfo_v3(h)
        buses.add(pci.busId)
        assert pci.busId.startswith("00000000:") and pci.busId.endswith(":00.0")
        assert pci.busIdLegacy == pci.busId[4:]
        mem = n.nvmlDeviceGetMemoryInfo(h, n.nvmlMemory_v2)
        assert mem.total == m.memory_mib * MIB and mem.reserved == m.reserved_mib * MIB
        assert mem.total == mem.reserved + mem.free + mem.used
        assert 0.7 < mem.used / (mem.total - mem.reserved) < 0.9
        v1 = n.nvmlDeviceGetMemoryInfo(h)
        assert (v1.total, v1.free, v1.used) == (mem.total, mem.free, mem.used + mem.reserved)
        assert n.nvmlDeviceGetEnforcedPowerLimit(h) == m.power_limit_w * 1000
        assert m.idle_power_w * 1000 <= n.nvmlDeviceGetPowerUsage(h) <= m.power_limit_w * 1000
        assert n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM) == m.sm_max_mhz
        assert n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_GRAPHICS) == m.sm_max_mhz
        assert n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_MEM) == m.mem_max_mhz
        for clock in range(4):
            assert 0 < n.nvmlDeviceGetClockInfo(h, clock) <= n.nvmlDeviceGetMaxClockInfo(h, clock)
        assert 40 <= n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU) <= 75
        limits = {0: m.temp_shutdown_c, 1: m.temp_slowdown_c, 2: m.temp_mem_max_c, 3: m.temp_gpu_max_c}
        for kind, limit in limits.items():
            got = rc(n.nvmlDeviceGetTemperatureThreshold, h, kind)
            assert got == (0 if limit else n.NVML_ERROR_NOT_SUPPORTED)
            if limit:
                assert n.nvmlDeviceGetTemperatureThreshold(h, kind) == limit
        assert rc(n.nvmlDeviceGetTemperatureThreshold, h, 4) == n.NVML_ERROR_NOT_SUPPORTED
        assert rc(n.nvmlDeviceGetFanSpeed, h) == (0 if m.fan else n.NVML_ERROR_NOT_SUPPORTED)
        assert rc(n.nvmlDeviceGetTotalEnergyConsumption, h) == (0 if m.energy_counter else n.NVML_ERROR_NOT_SUPPORTED)
        assert rc(n.nvmlDeviceGetRemappedRows, h) == (0 if m.row_remapping else n.NVML_ERROR_NOT_SUPPORTED)
        retired = 0 if not m.row_remapping else n.NVML_ERROR_NOT_SUPPORTED
        assert rc(n.nvmlDeviceGetRetiredPages, h, 0) == retired == rc(n.nvmlDeviceGetRetiredPagesPendingStatus, h)
        for codec in (n.nvmlDeviceGetEncoderUtilization, n.nvmlDeviceGetDecoderUtilization):
            assert rc(codec, h) == (0 if m.encoders else n.NVML_ERROR_NOT_SUPPORTED)
        assert rc(n.nvmlDeviceGetMigMode, h) == (0 if m.mig else n.NVML_ERROR_NOT_SUPPORTED)
        if m.mig:
            assert n.nvmlDeviceGetMigMode(h) == ([1, 1] if p.mig_enabled else [0, 0])
        assert rc(n.nvmlDeviceGetUtilizationRates, h) == (n.NVML_ERROR_NOT_SUPPORTED if p.mig_enabled else 0)
        assert n.nvmlGpmQueryDeviceSupport(h).isSupportedDevice == int(m.gpm)
        link_count = fields(h, [n.NVML_FI_DEV_NVLINK_LINK_COUNT])[0]
        if m.nvlink_links:
            assert (link_count.nvmlReturn, link_count.value.uiVal) == (0, m.nvlink_links)
        else:
            assert link_count.nvmlReturn == n.NVML_ERROR_NOT_SUPPORTED
        assert fields(h, [n.NVML_FI_DEV_MEMORY_TEMP])[0].nvmlReturn == (0 if m.hbm else n.NVML_ERROR_NOT_SUPPORTED)
    assert len(uuids) == 3 and all(u.startswith("GPU-") for u in uuids) and len(buses) == 3


def test_handles_are_stable_across_shutdown_and_init(nvml: NvmlDouble) -> None:
    h = n.nvmlDeviceGetHandleByIndex(1)
    uuid = n.nvmlDeviceGetUUID(h)
    n.nvmlShutdown()
    n.nvmlInit()
    again = n.nvmlDeviceGetHandleByIndex(1)
    assert ptr(again) == ptr(h) and n.nvmlDeviceGetUUID(h) == uuid
    assert ptr(n.nvmlDeviceGetHandleByIndex(0)) != ptr(h)
    assert rc(n.nvmlDeviceGetHandleByIndex, 2) == n.NVML_ERROR_INVALID_ARGUMENT
    bogus = ctypes.cast(ctypes.c_void_p(ptr(h) + 3), n.c_nvmlDevice_t)
    assert rc(n.nvmlDeviceGetUUID, bogus) == n.NVML_ERROR_INVALID_ARGUMENT
    buf = ctypes.create_string_buffer(8)
    assert nvml.lib.nvmlDeviceGetUUID(h, buf, ctypes.c_uint(8)) == n.NVML_ERROR_INSUFFICIENT_SIZE


def test_busy_gpu_values_ecc_violations_and_throttle_reasons(nvml: NvmlDouble) -> None:
    h = n.nvmlDeviceGetHandleByIndex(0)
    util = n.nvmlDeviceGetUtilizationRates(h)
    assert 88 <= util.gpu <= 100 and 0 < util.memory < util.gpu
    assert n.nvmlDeviceGetPerformanceState(h) == 0
    ecc = {(e, c): n.nvmlDeviceGetTotalEccErrors(h, e, c) for e in (0, 1) for c in (0, 1)}
    assert ecc == {(0, 0): 3, (0, 1): 12, (1, 0): 0, (1, 1): 0}
    assert rc(n.nvmlDeviceGetTotalEccErrors, h, 2, 0) == n.NVML_ERROR_INVALID_ARGUMENT
    assert n.nvmlDeviceGetRemappedRows(h) == (1, 0, 0, 0)
    assert n.nvmlDeviceGetEncoderUtilization(h) == [0, 167000]
    assert n.nvmlDeviceGetCurrentClocksEventReasons(h) & ~0x4 == 0, "at most the SW power cap"
    assert n.nvmlDeviceGetCurrentClocksThrottleReasons(h) & ~0x4 == 0
    assert n.nvmlDeviceGetPcieReplayCounter(h) == 0
    policies = (0, 1, 2, 3, 4, 5, 10, 11)
    first = {p: n.nvmlDeviceGetViolationStatus(h, p) for p in policies}
    assert rc(n.nvmlDeviceGetViolationStatus, h, 6) == n.NVML_ERROR_INVALID_ARGUMENT
    assert abs(first[0].referenceTime / 1e6 - time.time()) < 5
    nvml.advance(100)
    for p in policies:
        later = n.nvmlDeviceGetViolationStatus(h, p)
        assert later.violationTime > first[p].violationTime and later.referenceTime > first[p].referenceTime
    assert n.nvmlDeviceGetViolationStatus(h, 0).violationTime - first[0].violationTime == pytest.approx(5e9, rel=0.01)


def test_counters_only_grow_and_follow_the_rates(nvml: NvmlDouble) -> None:
    h = n.nvmlDeviceGetHandleByIndex(1)
    m = MODELS["NVIDIA H200"]
    ids = [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 5), (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, 17),
           n.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, n.NVML_FI_DEV_PCIE_COUNT_RX_BYTES,
           n.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL]  # fmt: skip
    before = [f.value.ullVal for f in fields(h, ids)]
    energy = n.nvmlDeviceGetTotalEnergyConsumption(h)
    nvml.advance(600)
    after = [f.value.ullVal for f in fields(h, ids)]
    assert all(b > a for a, b in zip(before[:4], after[:4], strict=True)) and after[4] >= before[4] + 2
    nvlink_share = (after[0] - before[0]) * 1024 / (600 * m.nvlink_gbps_per_link * 1e9)
    pcie_share = (after[2] - before[2]) / (600 * m.pcie_gbps * 1e9)
    assert 0.2 < nvlink_share < 0.45 and 0.1 < pcie_share < 0.25
    joules = (n.nvmlDeviceGetTotalEnergyConsumption(h) - energy) / 1000
    assert m.idle_power_w * 600 < joules < m.power_limit_w * 600


def test_pcie_throughput_samples_20_ms(nvml: NvmlDouble) -> None:
    h = n.nvmlDeviceGetHandleByIndex(0)
    start = time.monotonic()
    tx = n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_TX_BYTES)
    assert time.monotonic() - start >= 0.019
    assert 0 < tx < MODELS["NVIDIA H200"].pcie_gbps * 1e9 / 1024
    assert n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_RX_BYTES) > 0
    assert rc(n.nvmlDeviceGetPcieThroughput, h, 2) == n.NVML_ERROR_INVALID_ARGUMENT
    assert nvml.counter("pcie_throughput_calls") == 2, "the invalid call samples nothing"


# --- field values ------------------------------------------------------------------------------------------------
def test_field_values_types_scopes_and_union_garbage(nvml: NvmlDouble) -> None:
    h = n.nvmlDeviceGetHandleByIndex(0)
    got = fields(h, [n.NVML_FI_DEV_MEMORY_TEMP, n.NVML_FI_DEV_POWER_INSTANT, (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 17),
                     (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 18), 1, n.NVML_FI_DEV_PCIE_REPLAY_COUNTER,
                     n.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL, n.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
                     n.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL])  # fmt: skip
    assert [f.nvmlReturn for f in got] == [
        0,
        0,
        0,
        n.NVML_ERROR_INVALID_ARGUMENT,
        n.NVML_ERROR_NOT_SUPPORTED,
        0,
        0,
        0,
        0,
    ]
    assert [f.valueType for f in got if f.nvmlReturn == 0] == [1, 1, 3, 1, 3, 3, 3]
    assert got[2].scopeId == 17 and abs(got[0].timestamp / 1e6 - time.time()) < 5 and got[0].latencyUsec >= 0
    raw = [bytes(f.value) for f in got]
    assert raw[0][4:] == b"\xab" * 4, "the rest of the union is garbage"
    assert raw[3] == raw[4] == b"\xab" * 8
    temp = got[0].value.uiVal
    assert 40 < temp < 90
    assert 0 < got[1].value.uiVal <= 700_000
    members = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    for value_type, member in members.items():
        nvml.set_field_type(n.NVML_FI_DEV_MEMORY_TEMP, value_type)
        f = fields(h, [n.NVML_FI_DEV_MEMORY_TEMP])[0]
        assert f.valueType == value_type and abs(getattr(f.value, member) - temp) <= 2
        size = {0: 8, 1: 4, 2: 8, 3: 8, 4: 8, 5: 4, 6: 2}[value_type]
        assert bytes(f.value)[size:] == b"\xab" * (8 - size), "a reader of a wider member reads garbage"
    nvml.set_field_type(n.NVML_FI_DEV_MEMORY_TEMP, -1)
    assert fields(h, [n.NVML_FI_DEV_MEMORY_TEMP])[0].valueType == 1


def test_fields_of_models_without_nvlink_or_hbm(double: NvmlDouble) -> None:
    (h,) = start_profile(double, "l40s")
    got = fields(h, [n.NVML_FI_DEV_NVLINK_LINK_COUNT, (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, 0),
                     n.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL, n.NVML_FI_DEV_MEMORY_TEMP,
                     n.NVML_FI_DEV_PCIE_COUNT_TX_BYTES])  # fmt: skip
    assert [f.nvmlReturn for f in got] == [n.NVML_ERROR_NOT_SUPPORTED] * 4 + [0]


def test_a_failing_nvlink_keeps_the_other_links_counting(nvml: NvmlDouble) -> None:
    h = n.nvmlDeviceGetHandleByIndex(0)
    ids = [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link) for link in range(18)]
    ids += [(n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link) for link in range(18)]
    before = fields(h, ids)
    nvml.fail_nvlink(0, 3, n.NVML_ERROR_INSUFFICIENT_RESOURCES)
    nvml.advance(10)
    after = fields(h, ids)
    for k, (b, a) in enumerate(zip(before, after, strict=True)):
        if k % 18 == 3:
            assert a.nvmlReturn == n.NVML_ERROR_INSUFFICIENT_RESOURCES
        else:
            assert a.nvmlReturn == 0 and a.value.ullVal > b.value.ullVal
    assert fields(n.nvmlDeviceGetHandleByIndex(1), [ids[3]])[0].nvmlReturn == 0, "only GPU 0's link"
    nvml.fail_nvlink(0, 3, 0)
    assert all(f.nvmlReturn == 0 for f in fields(h, ids))


# --- fault injection -----------------------------------------------------------------------------------------------
def test_fail_rules_count_gpus_and_wildcards(nvml: NvmlDouble) -> None:
    h0, h1 = (n.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    nvml.fail("nvmlDeviceGetTemperature", 1, n.NVML_ERROR_RESET_REQUIRED, 2)
    assert rc(n.nvmlDeviceGetTemperature, h0, 0) == 0
    assert [rc(n.nvmlDeviceGetTemperature, h1, 0) for _ in range(3)] == [16, 16, 0]
    nvml.fail("nvmlDeviceGetPowerUsage", -1, n.NVML_ERROR_NO_PERMISSION, -1)
    assert [rc(n.nvmlDeviceGetPowerUsage, h) for h in (h0, h1, h0)] == [4, 4, 4]
    nvml.clear_fail("nvmlDeviceGetPowerUsage")
    assert rc(n.nvmlDeviceGetPowerUsage, h0) == 0
    nvml.fail("*", 1, n.NVML_ERROR_RESET_REQUIRED, -1)
    assert rc(n.nvmlDeviceGetUUID, h1) == rc(n.nvmlDeviceGetFieldValues, h1, [82]) == 16
    assert rc(n.nvmlDeviceGetUUID, h0) == 0 and n.nvmlDeviceGetCount() == 2, "other GPUs and device-less calls"
    nvml.fail("*", 1, n.NVML_ERROR_RESET_REQUIRED, 0)
    nvml.fail("*", -1, n.NVML_ERROR_UNKNOWN, -1)
    assert rc(n.nvmlDeviceGetCount) == rc(n.nvmlDeviceGetUUID, h0) == rc(n.nvmlSystemGetDriverVersion) == 999
    assert rc(n.nvmlInit) == 999 and rc(n.nvmlEventSetCreate) == 999
    assert n.nvmlErrorString(999) == "Unknown Error", "nvmlErrorString is never failed"
    n.nvmlShutdown()  # nor is nvmlShutdown
    assert nvml.counter("refcount") == 0
    nvml.fail("*", -1, n.NVML_ERROR_UNKNOWN, 0)
    nvml.fail("nvmlInitWithFlags", -1, n.NVML_ERROR_DRIVER_NOT_LOADED, 1)
    assert rc(n.nvmlInit) == 9 and rc(n.nvmlInit) == 0
    nvml.fail("nvmlDeviceGetCount_v2", -1, n.NVML_ERROR_INSUFFICIENT_RESOURCES, 1)
    assert rc(n.nvmlDeviceGetCount) == 23 and n.nvmlDeviceGetCount() == 2
    nvml.fail("nvmlDeviceGetHandleByIndex_v2", 1, n.NVML_ERROR_GPU_IS_LOST, 1)
    assert rc(n.nvmlDeviceGetHandleByIndex, 1) == 15 and rc(n.nvmlDeviceGetHandleByIndex, 0) == 0


def test_a_lost_gpu_fails_every_call_and_its_fields(nvml: NvmlDouble) -> None:
    h0, h1 = (n.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    nvml.lose_gpu(1)
    for fn, args in ((n.nvmlDeviceGetUUID, ()), (n.nvmlDeviceGetName, ()), (n.nvmlDeviceGetTemperature, (0,)),
                     (n.nvmlDeviceGetMemoryInfo, ()), (n.nvmlDeviceGetComputeRunningProcesses, ()),
                     (n.nvmlDeviceGetPowerUsage, ()), (n.nvmlGpmQueryDeviceSupport, ())):  # fmt: skip
        assert rc(fn, h1, *args) == n.NVML_ERROR_GPU_IS_LOST, fn
    got = fields(h1, [n.NVML_FI_DEV_MEMORY_TEMP, (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 0)])
    assert [f.nvmlReturn for f in got] == [n.NVML_ERROR_GPU_IS_LOST] * 2, "the call succeeds, each field fails"
    assert rc(n.nvmlDeviceGetUUID, h0) == 0
    nvml.restore_gpu(1)
    assert rc(n.nvmlDeviceGetUUID, h1) == 0


def test_a_driver_reload_invalidates_handles_fails_inits_and_recounts(nvml: NvmlDouble) -> None:
    old = n.nvmlDeviceGetHandleByIndex(0)
    nvml.set_gpu_count(3)
    assert n.nvmlDeviceGetCount() == 2, "the count changes at the next init"
    nvml.driver_reload(2)
    assert rc(n.nvmlDeviceGetUUID, old) == n.NVML_ERROR_UNKNOWN
    assert rc(n.nvmlDeviceGetCount) == n.NVML_ERROR_UNKNOWN
    n.nvmlShutdown()
    assert [rc(n.nvmlInit) for _ in range(3)] == [9, 9, 0]
    assert n.nvmlDeviceGetCount() == 3
    new = n.nvmlDeviceGetHandleByIndex(0)
    assert ptr(new) != ptr(old)
    assert rc(n.nvmlDeviceGetUUID, old) == n.NVML_ERROR_INVALID_ARGUMENT
    assert n.nvmlDeviceGetUUID(new).startswith("GPU-")
    assert nvml.counter("refcount") == 1


# --- processes ------------------------------------------------------------------------------------------------------
class ProcessInfoV1(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


def test_processes_default_custom_and_the_two_call_pattern(nvml: NvmlDouble) -> None:
    h = n.nvmlDeviceGetHandleByIndex(1)
    used = n.nvmlDeviceGetMemoryInfo(h, n.nvmlMemory_v2).used
    procs = [(p.pid, p.usedGpuMemory, p.gpuInstanceId, p.computeInstanceId)
             for p in n.nvmlDeviceGetComputeRunningProcesses(h)]  # fmt: skip
    assert procs == [(os.getpid(), used - 600 * MIB, UNSET, UNSET), (4_000_001, 600 * MIB, UNSET, UNSET)]
    v2 = [(p.pid, p.usedGpuMemory) for p in n.nvmlDeviceGetComputeRunningProcesses_v2(h)]
    assert v2 == [p[:2] for p in procs]
    assert n.nvmlDeviceGetGraphicsRunningProcesses(h) == [] == n.nvmlDeviceGetGraphicsRunningProcesses_v2(h)
    count = ctypes.c_uint(0)
    fn = nvml.lib.nvmlDeviceGetComputeRunningProcesses  # the unversioned entry point: the v1 struct
    assert fn(h, ctypes.byref(count), None) == n.NVML_ERROR_INSUFFICIENT_SIZE and count.value == 2
    count.value = 1
    arr = (ProcessInfoV1 * 4)()
    assert fn(h, ctypes.byref(count), arr) == n.NVML_ERROR_INSUFFICIENT_SIZE and count.value == 2
    count.value = 4
    assert fn(h, ctypes.byref(count), arr) == 0 and count.value == 2
    assert [(p.pid, p.usedGpuMemory) for p in arr[:2]] == v2
    nvml.set_processes(1, -1, [(7001, 2 << 30), (7002, 1 << 30), (7003, 5)])
    assert [(p.pid, p.usedGpuMemory) for p in n.nvmlDeviceGetComputeRunningProcesses(h)] == [
        (7001, 2 << 30), (7002, 1 << 30), (7003, 5),
    ]  # fmt: skip
    assert len(n.nvmlDeviceGetComputeRunningProcesses(n.nvmlDeviceGetHandleByIndex(0))) == 2, "GPU 0 unchanged"
    nvml.set_processes(1, -1, [])
    assert n.nvmlDeviceGetComputeRunningProcesses(h) == []
    nvml.set_processes(1, -1, None)
    assert len(n.nvmlDeviceGetComputeRunningProcesses(h)) == 2


# --- MIG ------------------------------------------------------------------------------------------------------------
def test_mig_layout_with_gaps_handles_memory_and_processes(double: NvmlDouble) -> None:
    (h,) = start_profile(double, "a100_mig")
    m = MODELS["NVIDIA A100-SXM4-80GB"]
    assert n.nvmlDeviceGetMigMode(h) == [1, 1]
    assert n.nvmlDeviceGetMaxMigDeviceCount(h) == m.max_mig_devices
    layout = {slot: (gi, profile, mib) for slot, gi, profile, mib in m.mig_layout}
    migs = {}
    for slot in range(m.max_mig_devices):
        code = rc(n.nvmlDeviceGetMigDeviceHandleByIndex, h, slot)
        assert code == (0 if slot in layout else n.NVML_ERROR_NOT_FOUND), slot
        if not code:
            migs[slot] = n.nvmlDeviceGetMigDeviceHandleByIndex(h, slot)
    assert rc(n.nvmlDeviceGetMigDeviceHandleByIndex, h, m.max_mig_devices) == n.NVML_ERROR_INVALID_ARGUMENT
    assert n.nvmlDeviceIsMigDeviceHandle(h).value == 0
    for slot, mh in migs.items():
        gi, profile, mib = layout[slot]
        assert n.nvmlDeviceIsMigDeviceHandle(mh).value == 1
        assert ptr(n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mh)) == ptr(h)
        assert n.nvmlDeviceGetGpuInstanceId(mh) == gi and n.nvmlDeviceGetComputeInstanceId(mh) == 0
        assert n.nvmlDeviceGetName(mh) == f"{m.name} MIG {profile}"
        assert n.nvmlDeviceGetUUID(mh).startswith("MIG-")
        mem = n.nvmlDeviceGetMemoryInfo(mh, n.nvmlMemory_v2)
        assert (mem.total, mem.reserved) == (mib * MIB, 0) and 0 < mem.used < mem.total
        assert mem.total == mem.free + mem.used
        assert rc(n.nvmlDeviceGetUtilizationRates, mh) == n.NVML_ERROR_NOT_SUPPORTED
        procs = n.nvmlDeviceGetComputeRunningProcesses(mh)
        assert [(p.pid, p.usedGpuMemory, p.gpuInstanceId, p.computeInstanceId) for p in procs] == [
            (os.getpid(), 1 << 30, gi, 0)
        ]
    assert len({n.nvmlDeviceGetUUID(mh) for mh in migs.values()}) == len(migs)
    assert rc(n.nvmlDeviceGetGpuInstanceId, h) == n.NVML_ERROR_NOT_SUPPORTED
    assert rc(n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle, h) == n.NVML_ERROR_INVALID_ARGUMENT
    assert rc(n.nvmlDeviceGetUtilizationRates, h) == n.NVML_ERROR_NOT_SUPPORTED
    assert rc(n.nvmlDeviceGetComputeRunningProcesses, h) == n.NVML_ERROR_NO_PERMISSION
    assert n.nvmlDeviceGetGraphicsRunningProcesses(h) == []
    double.set_privileged(True)
    assert sorted(p.gpuInstanceId for p in n.nvmlDeviceGetComputeRunningProcesses(h)) == sorted(
        gi for gi, _, _ in layout.values()
    )
    double.set_processes(0, 2, [(4242, 3 << 30)])
    assert [(p.pid, p.gpuInstanceId) for p in n.nvmlDeviceGetComputeRunningProcesses(migs[2])] == [(4242, layout[2][0])]
    double.fail("nvmlDeviceGetGpuInstanceId", 0, n.NVML_ERROR_INSUFFICIENT_RESOURCES, 1)  # MIG handles are GPU 0's
    assert [rc(n.nvmlDeviceGetGpuInstanceId, mh) for mh in migs.values()] == [23, 0, 0]
    ev = n.nvmlEventSetCreate()
    assert rc(n.nvmlDeviceRegisterEvents, migs[0], n.nvmlEventTypeXidCriticalError, ev) == n.NVML_ERROR_NOT_SUPPORTED
    assert n.nvmlGpmQueryDeviceSupport(h).isSupportedDevice == 0, "Ampere has no GPM"
    sample = n.nvmlGpmSampleAlloc()
    assert rc(n.nvmlGpmSampleGet, h, sample) == n.NVML_ERROR_NOT_SUPPORTED
    n.nvmlGpmSampleFree(sample)
    n.nvmlEventSetFree(ev)


def test_mig_capable_boards_with_mig_off(double: NvmlDouble) -> None:
    (h,) = start_profile(double, "h100_nvlink")
    assert n.nvmlDeviceGetMigMode(h) == [0, 0] and n.nvmlDeviceGetMaxMigDeviceCount(h) == 0
    assert rc(n.nvmlDeviceGetMigDeviceHandleByIndex, h, 0) == n.NVML_ERROR_NOT_FOUND
    (h,) = start_profile(double, "l40s")
    assert rc(n.nvmlDeviceGetMigDeviceHandleByIndex, h, 0) == n.NVML_ERROR_NOT_SUPPORTED


# --- events -----------------------------------------------------------------------------------------------------
def test_xid_events_reach_the_sets_watching_the_gpu(nvml: NvmlDouble) -> None:
    h0, h1 = (n.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    watching, other = n.nvmlEventSetCreate(), n.nvmlEventSetCreate()
    assert nvml.counter("event_sets_open") == 2
    n.nvmlDeviceRegisterEvents(h0, n.nvmlEventTypeXidCriticalError, watching)
    n.nvmlDeviceRegisterEvents(h1, n.nvmlEventTypeXidCriticalError, watching)
    n.nvmlDeviceRegisterEvents(h1, n.nvmlEventTypeXidCriticalError, other)
    start = time.monotonic()
    assert rc(n.nvmlEventSetWait_v2, watching, 50) == n.NVML_ERROR_TIMEOUT
    assert 0.04 < time.monotonic() - start < 1
    nvml.xid(0, 48)
    data = n.nvmlEventSetWait_v2(watching, 1000)
    assert (ptr(data.device), data.eventType, data.eventData) == (ptr(h0), 0x8, 48)
    assert (data.gpuInstanceId, data.computeInstanceId) == (UNSET, UNSET)
    assert rc(n.nvmlEventSetWait_v2, other, 0) == n.NVML_ERROR_TIMEOUT, "GPU 0 is not registered there"
    nvml.xid(1, 79, lose_gpu=True)
    assert rc(n.nvmlDeviceGetUUID, h1) == 0, "lost when the event is read"
    data = n.nvmlEventSetWait_v2(watching, 1000)
    assert (ptr(data.device), data.eventData) == (ptr(h1), 79)
    assert rc(n.nvmlDeviceGetUUID, h1) == n.NVML_ERROR_GPU_IS_LOST
    assert n.nvmlEventSetWait_v2(other, 0).eventData == 79, "every set watching GPU 1 gets it"
    nvml.xid(0, 43, gpu_instance=5, compute_instance=0)
    data = n.nvmlEventSetWait_v2(watching, 1000)
    assert (data.eventData, data.gpuInstanceId, data.computeInstanceId) == (43, 5, 0)
    nvml.fail("nvmlEventSetWait_v2", -1, n.NVML_ERROR_UNKNOWN, 2)
    assert [rc(n.nvmlEventSetWait_v2, watching, 0) for _ in range(3)] == [999, 999, n.NVML_ERROR_TIMEOUT]
    nvml.fail("nvmlDeviceRegisterEvents", 1, n.NVML_ERROR_UNKNOWN, -1)
    third = n.nvmlEventSetCreate()
    assert rc(n.nvmlDeviceRegisterEvents, h1, n.nvmlEventTypeXidCriticalError, third) == 999
    assert rc(n.nvmlDeviceRegisterEvents, h0, n.nvmlEventTypeXidCriticalError, third) == 0
    assert rc(n.nvmlDeviceRegisterEvents, h0, 1 << 40, third) == n.NVML_ERROR_NOT_SUPPORTED
    for s in (watching, other, third):
        n.nvmlEventSetFree(s)
    assert rc(n.nvmlEventSetFree, watching) == n.NVML_ERROR_INVALID_ARGUMENT
    assert nvml.counter("event_sets_open") == 0


def test_a_waiting_thread_does_not_hold_the_lock(nvml: NvmlDouble) -> None:
    h = n.nvmlDeviceGetHandleByIndex(0)
    ev = n.nvmlEventSetCreate()
    n.nvmlDeviceRegisterEvents(h, n.nvmlEventTypeXidCriticalError, ev)
    box: list[Any] = []
    waiter = threading.Thread(target=lambda: box.append(n.nvmlEventSetWait_v2(ev, 5000)))
    waiter.start()
    time.sleep(0.05)
    start = time.monotonic()
    for _ in range(20):
        n.nvmlDeviceGetTemperature(h, 0)
    assert time.monotonic() - start < 0.5
    nvml.xid(0, 31)
    waiter.join(timeout=2)
    assert not waiter.is_alive() and time.monotonic() - start < 1.5
    assert box[0].eventData == 31
    n.nvmlEventSetFree(ev)


# --- GPM --------------------------------------------------------------------------------------------------------
def metrics(first: Any, second: Any, ids: list[int]) -> dict[int, tuple[int, float]]:
    req = n.c_nvmlGpmMetricsGet_t()
    req.version = n.NVML_GPM_METRICS_GET_VERSION
    req.numMetrics = len(ids)
    req.sample1, req.sample2 = first, second
    for i, metric in enumerate(ids):
        req.metrics[i].metricId = metric
    n.nvmlGpmMetricsGet(req)
    return {req.metrics[i].metricId: (req.metrics[i].nvmlReturn, req.metrics[i].value) for i in range(len(ids))}


def test_gpm_metrics_average_the_interval_between_two_samples(nvml: NvmlDouble) -> None:
    h0, h1 = (n.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    support = n.c_nvmlGpmSupport_t()
    support.version = 2
    assert nvml.lib.nvmlGpmQueryDeviceSupport(h0, ctypes.byref(support)) == n.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    a, b, c = n.nvmlGpmSampleAlloc(), n.nvmlGpmSampleAlloc(), n.nvmlGpmSampleAlloc()
    assert nvml.counter("gpm_samples_open") == 3
    n.nvmlGpmSampleGet(h0, a)
    n.nvmlGpmSampleGet(h1, c)
    ids = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 20, 21, 30, 37, 40, 47, 8, 60, 100]
    util = n.nvmlDeviceGetUtilizationRates(h0).gpu
    for gap in (0.0, 1.0, 3600.0):  # samples close together and far apart
        nvml.advance(gap)
        n.nvmlGpmSampleGet(h0, b)
        got = metrics(a, b, ids)
        assert all(got[i][0] == n.NVML_ERROR_NOT_SUPPORTED for i in (8, 60, 100))
        values = {i: v for i, (code, v) in got.items() if code == 0}
        assert set(values) == set(ids) - {8, 60, 100}
        assert all(0 <= v <= 100 for i, v in values.items() if i not in (20, 21))
        assert 85 <= values[1] <= 100 and 30 <= values[2] <= 50 and 15 <= values[5] <= 35
        assert values[2] < util - 30, "SM active far below the utilisation"
        assert values[20] > 0 and values[21] > values[20], "PCIe MiB/s"
        n.nvmlGpmSampleGet(h0, a)
    # a is now the later sample; c is GPU 1's
    for first, second in ((a, b), (b, c)):
        req = n.c_nvmlGpmMetricsGet_t()
        req.version, req.numMetrics, req.sample1, req.sample2 = 1, 1, first, second
        assert rc(n.nvmlGpmMetricsGet, req) == n.NVML_ERROR_INVALID_ARGUMENT
    req = n.c_nvmlGpmMetricsGet_t()
    req.version, req.numMetrics, req.sample1, req.sample2 = 2, 1, b, a
    assert rc(n.nvmlGpmMetricsGet, req) == n.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    req.version, req.numMetrics = 1, 211
    assert rc(n.nvmlGpmMetricsGet, req) == n.NVML_ERROR_INVALID_ARGUMENT
    req.numMetrics = 1
    assert rc(n.nvmlGpmMetricsGet, req) == 0
    assert nvml.lib.nvmlGpmMetricsGet(None) == n.NVML_ERROR_INVALID_ARGUMENT
    assert rc(n.nvmlGpmMigSampleGet, h0, 1, a) == n.NVML_ERROR_INVALID_ARGUMENT, "not in MIG mode"
    assert nvml.counter("gpm_sample_calls") == 8
    for s in (a, b, c):
        n.nvmlGpmSampleFree(s)
    assert rc(n.nvmlGpmSampleFree, a) == n.NVML_ERROR_INVALID_ARGUMENT
    assert nvml.counter("gpm_samples_open") == 0


def test_gpm_per_mig_gpu_instance(double: NvmlDouble) -> None:
    (h,) = start_profile(double, "h100_mig")
    m = MODELS["NVIDIA H100 80GB HBM3"]
    samples = {}
    for _slot, gi, _profile, _mib in m.mig_layout:
        first, second = n.nvmlGpmSampleAlloc(), n.nvmlGpmSampleAlloc()
        n.nvmlGpmMigSampleGet(h, gi, first)
        samples[gi] = (first, second)
    double.advance(5)
    sm = {}
    for gi, (first, second) in samples.items():
        n.nvmlGpmMigSampleGet(h, gi, second)
        code, sm[gi] = metrics(first, second, [2])[2]
        assert code == 0 and 20 < sm[gi] < 60
    assert len(set(sm.values())) == len(sm), "each GPU instance has its own curve"
    first, second = samples[m.mig_layout[0][1]]
    other = samples[m.mig_layout[1][1]][1]
    req = n.c_nvmlGpmMetricsGet_t()
    req.version, req.numMetrics, req.sample1, req.sample2 = 1, 1, first, other
    assert rc(n.nvmlGpmMetricsGet, req) == n.NVML_ERROR_INVALID_ARGUMENT, "samples of two GPU instances"
    assert rc(n.nvmlGpmMigSampleGet, h, 4, first) == n.NVML_ERROR_NOT_FOUND
    for pair in samples.values():
        for s in pair:
            n.nvmlGpmSampleFree(s)


# --- the driver-470 library and the library search -------------------------------------------------------------
R470_SCRIPT = r"""
import ctypes, json, os, sys
import pynvml as n
out = {}
def rc(fn, *args):
    try:
        fn(*args)
    except n.NVMLError as exc:
        return int(exc.value)
    except Exception as exc:
        return type(exc).__name__
    return 0
n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(0)
lib = n.nvmlLib
out["exported"] = {s: hasattr(lib, s) for s in sys.argv[1:]}
out["driver"], out["cuda"], out["count"] = n.nvmlSystemGetDriverVersion(), n.nvmlSystemGetCudaDriverVersion(), n.nvmlDeviceGetCount()
out["name"] = n.nvmlDeviceGetName(h)
mem = n.nvmlDeviceGetMemoryInfo(h)
out["mem"] = [mem.total, mem.free, mem.used]
out["mem_v2"] = rc(n.nvmlDeviceGetMemoryInfo, h, n.nvmlMemory_v2)
out["procs"] = rc(n.nvmlDeviceGetComputeRunningProcesses, h)
out["procs_v2"] = [(p.pid, p.usedGpuMemory) for p in n.nvmlDeviceGetComputeRunningProcesses_v2(h)]
out["pid"] = os.getpid()
out["event_reasons"] = rc(n.nvmlDeviceGetCurrentClocksEventReasons, h)
out["throttle_reasons"] = rc(n.nvmlDeviceGetCurrentClocksThrottleReasons, h)
out["gpm"] = rc(n.nvmlGpmQueryDeviceSupport, h)
out["fields"] = [f.nvmlReturn for f in n.nvmlDeviceGetFieldValues(h, [197, 198, 82, 91, 186])]
out["retired"] = [n.nvmlDeviceGetRetiredPages(h, 0), n.nvmlDeviceGetRetiredPages(h, 1), n.nvmlDeviceGetRetiredPagesPendingStatus(h)]
out["unsupported"] = [rc(n.nvmlDeviceGetRemappedRows, h), rc(n.nvmlDeviceGetTotalEnergyConsumption, h),
                      rc(n.nvmlDeviceGetMigMode, h), rc(n.nvmlDeviceGetEncoderUtilization, h)]
out["profile_refused"] = lib.nvml_double_reset(b"h200", 1)
print(json.dumps(out))
"""


def run_python(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=30
    )


def test_the_r470_library_lacks_the_symbols_driver_470_lacks(double: NvmlDouble) -> None:
    missing = list(DRIVERS[R470_DRIVER].missing_symbols)
    present = ["nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetMemoryInfo", "nvml_double_reset"]
    res = run_python(R470_SCRIPT, NvmlDouble.env("r470", profile="pascal_470", gpus=2), *missing, *present)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["exported"] == {**dict.fromkeys(missing, False), **dict.fromkeys(present, True)}
    m = MODELS[PROFILES["pascal_470"].model]
    assert (out["driver"], out["cuda"], out["count"], out["name"]) == (
        R470_DRIVER,
        DRIVERS[R470_DRIVER].cuda,
        2,
        m.name,
    )
    total, free, used = out["mem"]
    assert total == m.memory_mib * MIB and used + free == total
    assert out["mem_v2"] == out["event_reasons"] == out["gpm"] == n.NVML_ERROR_FUNCTION_NOT_FOUND
    assert out["procs"] == "NVMLLibraryMismatchError", "pynvml's unversioned call needs the _v3 symbol"
    assert out["procs_v2"][0][0] == out["pid"] and len(out["procs_v2"]) == 2
    assert out["throttle_reasons"] == 0
    assert out["fields"] == [n.NVML_ERROR_NOT_SUPPORTED] * 2 + [0, n.NVML_ERROR_NOT_SUPPORTED, 0]
    pages_single, pages_double, pending = out["retired"]
    assert (len(pages_single), len(pages_double), pending) == (2, 1, 0)
    assert out["unsupported"] == [n.NVML_ERROR_NOT_SUPPORTED] * 4
    assert out["profile_refused"] == -2


ENV_SCRIPT = r"""
import json, pynvml as n
try:
    n.nvmlInit()
except n.NVMLError as exc:
    print(json.dumps({"init": int(exc.value)}))
    raise SystemExit(0)
h = n.nvmlDeviceGetHandleByIndex(0)
print(json.dumps({"init": 0, "count": n.nvmlDeviceGetCount(), "name": n.nvmlDeviceGetName(h),
                  "driver": n.nvmlSystemGetDriverVersion()}))
"""


@pytest.mark.parametrize(
    ("variant", "profile", "gpus", "expected"),
    [
        ("current", "l40s", 3, {"init": 0, "count": 3, "name": "NVIDIA L40S", "driver": variants()["current"]}),
        ("current", None, None, {"init": 0, "count": 8, "name": "NVIDIA H200", "driver": variants()["current"]}),
        (
            "r470",
            None,
            1,
            {"init": 0, "count": 1, "name": MODELS[PROFILES["pascal_470"].model].name, "driver": R470_DRIVER},
        ),
        ("r470", "h200", 2, {"init": n.NVML_ERROR_UNKNOWN}),
        ("current", "nope", 2, {"init": n.NVML_ERROR_UNKNOWN}),
    ],
    ids=["l40s", "default", "r470-default", "r470-refuses-h200", "unknown"],
)
def test_subprocesses_select_the_profile_from_the_environment(
    double: NvmlDouble, variant: str, profile: str | None, gpus: int | None, expected: dict[str, Any]
) -> None:
    env = NvmlDouble.env(variant, profile=profile, gpus=gpus)
    assert env["LD_LIBRARY_PATH"].split(":")[0] == str(build(variant).parent)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NVML_DOUBLE_")}
    res = subprocess.run(
        [sys.executable, "-c", ENV_SCRIPT], env={**clean, **env}, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == expected
    assert ("nvmlInit will fail" in res.stderr) == (expected["init"] != 0)


# --- the build ----------------------------------------------------------------------------------------------------
def exported(path: str) -> set[str]:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) missing")
    res = subprocess.run([nm, "-D", "--defined-only", path], capture_output=True, text=True, check=True)
    return {line.split()[-1] for line in res.stdout.splitlines() if line.split()[-2] in ("T", "t")}


def test_the_libraries_export_nvml_and_the_control_api_only(double: NvmlDouble) -> None:
    current, r470 = exported(str(build("current"))), exported(str(build("r470")))
    missing = set(DRIVERS[R470_DRIVER].missing_symbols)
    assert missing <= current and not missing & r470
    assert current - r470 == missing
    assert all(s.startswith(("nvml", "nvml_double_")) for s in current)
    control = {s for s in current if s.startswith("nvml_double_")}
    assert control == {f"nvml_double_{s}" for s in (
        "reset", "fail", "lose_gpu", "restore_gpu", "xid", "fail_nvlink", "driver_reload", "set_gpu_count",
        "set_processes", "set_privileged", "set_field_type", "advance", "counter", "variant")}  # fmt: skip
    assert len(current - control) == 59


@pytest.mark.parametrize("variant", list(variants()))
def test_the_source_compiles_without_warnings(variant: str, tmp_path: Any) -> None:
    build(variant)
    from nvml_double import _gen_models

    (tmp_path / "models.h").write_text(str(_gen_models().render()))
    cmd = compile_command(variant, C_SOURCE, tmp_path, tmp_path / "lib.so")
    cmd = [arg for arg in cmd if arg not in ("-shared", "-O2")] + ["-fsyntax-only", "-Werror", "-Wpedantic", "-Wshadow"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_the_build_is_cached_per_variant_and_sources(double: NvmlDouble) -> None:
    first = build("current")
    assert build("current") == first and first.name == "libnvidia-ml.so.1"
    assert first.parent.name.startswith("current-") and build("r470").parent.name.startswith("r470-")
    with pytest.raises(ValueError, match="unknown NVML double variant"):
        build("r390")
    with pytest.raises(RuntimeError, match="is loaded already"):
        NvmlDouble.load("r470")


PARALLEL_BUILD = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import nvml_double
nvml_double.CACHE_DIR = Path(sys.argv[1])
print(nvml_double.build("r470"))
"""


def test_parallel_builds_agree_on_one_library(tmp_path: Any) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    procs = [
        subprocess.Popen([sys.executable, "-c", PARALLEL_BUILD, str(tmp_path), here], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1 and os.path.isfile(outs[0])
    assert [d.name for d in tmp_path.iterdir()] == [os.path.basename(os.path.dirname(outs[0]))], "no temporary left"


def test_a_missing_gcc_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import nvml_double

    monkeypatch.setattr(nvml_double.shutil, "which", lambda _name: None)
    monkeypatch.setattr(nvml_double, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(RuntimeError, match="gcc not found"):
        build("current")
    assert list((tmp_path / "cache").iterdir()) == []

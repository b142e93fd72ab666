"""The GPU exporter's NVML backend through the real pynvml, against the C NVML double (tests/nvml_double).

Each test names the defect it guards (issue 10). The double is loaded in this process before pynvml looks for
libnvidia-ml.so.1, so pynvml's own CDLL("libnvidia-ml.so.1") finds it by its soname; the driver-470 variant, a
different library, runs in a subprocess that finds it through LD_LIBRARY_PATH, as on a host.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import parse_samples, value, wait_for
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.gpu.gpu import GpuCollector, GpuConfig
from llm_monitor_exporters.gpu.nvml_simulation import SimulatedNvml
from nvml_double import NvmlDouble

Samples = dict[str, list[tuple[dict[str, str], float]]]
UNKNOWN, IRQ_ISSUE, INSUFFICIENT_RESOURCES, FUNCTION_NOT_FOUND = 999, 11, 23, 13
RESET_REQUIRED, GPU_IS_LOST, ARGUMENT_VERSION_MISMATCH = 16, 15, 25


@pytest.fixture(scope="module")
def nvml() -> NvmlDouble:
    try:
        return NvmlDouble.load("current")
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"NVML double unavailable: {exc}")


class Fleet:
    """One collector over the double, and the samples of its last cycle."""

    def __init__(self, nvml: NvmlDouble, profile: str, gpus: int, **cfg: Any) -> None:
        nvml.reset(profile, gpus)
        self.nvml = nvml
        config = GpuConfig(backend="nvml", nvml_retry_interval=1, profiling_interval=0.1)
        for key, val in cfg.items():
            setattr(config, key, val)
        self.collector = GpuCollector(config)
        self.loop = SnapshotLoop(self.collector, interval=0.1)

    def cycle(self) -> Samples:
        self.loop.run_once()
        return parse_samples(self.loop.latest().decode())

    def text(self) -> str:
        self.loop.run_once()
        return self.loop.latest().decode()

    def until(self, pred: Callable[[Samples], bool], timeout: float = 8) -> Samples:
        box: list[Samples] = []

        def check() -> bool:
            box[:] = [self.cycle()]
            return pred(box[0])

        assert wait_for(check, timeout=timeout, step=0.1), f"condition never held; last cycle:\n{box[-1]}"
        return box[-1]


@pytest.fixture
def fleet(nvml: NvmlDouble) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(profile: str = "h200", gpus: int = 2, **cfg: Any) -> Fleet:
        made.append(Fleet(nvml, profile, gpus, **cfg))
        return made[-1]

    yield make
    for f in made:
        f.collector.close()


def ups(s: Samples, gpus: int) -> list[float | None]:
    return [value(s, "llm_monitor_gpu_up", gpu=str(i)) for i in range(gpus)]


# --- 1. drivers without the _v3 process symbols; any non-NVML exception ----------------------------------
def test_1_a_process_call_raising_library_mismatch_keeps_every_other_metric(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 2)
    # the v3 symbol answers "function not found": pynvml turns that into NVMLLibraryMismatchError, no NVMLError
    f.nvml.fail("nvmlDeviceGetComputeRunningProcesses_v3", -1, FUNCTION_NOT_FOUND, -1)
    s = f.cycle()
    assert ups(s, 2) == [1, 1]
    for gpu in ("0", "1"):
        assert value(s, "llm_monitor_gpu_temperature_celsius", gpu=gpu) is not None
        assert value(s, "llm_monitor_gpu_memory_total_bytes", gpu=gpu) is not None
    # and the processes still come, from the _v2 entry point
    assert s.get("llm_monitor_gpu_process_memory_used_bytes")
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="exception") == 0


def test_1_the_driver_470_library_serves_every_gpu_metric_through_the_normal_library_search(
    nvml: NvmlDouble, tmp_path: Path
) -> None:
    """A Pascal board on driver 470, no _v3 symbols, no memory v2: the exporter CLI as a host runs it."""
    env = {**os.environ, **NvmlDouble.env("r470", profile="pascal_470", gpus=2)}
    out = _scrape_cli(env, tmp_path)
    s = parse_samples(out)
    assert ups(s, 2) == [1, 1]
    info = s["llm_monitor_gpu_info"][0][0]
    assert info["driver_version"] == "470.256.02"
    for gpu in ("0", "1"):
        total = value(s, "llm_monitor_gpu_memory_total_bytes", gpu=gpu)
        used = value(s, "llm_monitor_gpu_memory_used_bytes", gpu=gpu)
        free = value(s, "llm_monitor_gpu_memory_free_bytes", gpu=gpu)
        assert total and used is not None and free is not None and used + free == total
        assert value(s, "llm_monitor_gpu_retired_pages", gpu=gpu, cause="double_bit_ecc") is not None
        assert value(s, "llm_monitor_gpu_query_unsupported", gpu=gpu, query="pcie_bytes") == 1
    assert "llm_monitor_gpu_memory_reserved_bytes" not in s  # v1 cannot tell it apart
    assert "llm_monitor_gpu_sm_active_ratio" not in s  # no GPM before R520 nor before Hopper
    assert s.get("llm_monitor_gpu_process_memory_used_bytes"), "processes through _v2"


def _scrape_cli(env: dict[str, str], tmp_path: Path) -> str:
    from conftest import free_port, scrape

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_monitor_exporters", "gpu", "--interval", "0.2",
         "--listen-address", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        box: list[str] = []

        def ready() -> bool:
            try:
                box[:] = [scrape(f"http://127.0.0.1:{port}/metrics", timeout=1)]
            except OSError:
                return False
            return 'llm_monitor_gpu_up{gpu="1"' in box[0]

        if not wait_for(ready, timeout=20):
            proc.kill()
            raise AssertionError(f"exporter never served the GPUs:\n{proc.communicate(timeout=5)[1]}")
        return box[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- 2. recovery after an error storm, a driver reload, a GPU reset --------------------------------------
def test_2_an_error_storm_takes_nvml_down_and_it_recovers(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 2)
    assert ups(f.cycle(), 2) == [1, 1]
    f.nvml.fail("*", -1, UNKNOWN, -1)
    s = f.cycle()
    assert value(s, "llm_monitor_exporter_up", upstream="nvml") == 0
    assert ups(s, 2) == [0, 0], "no GPU is up while NVML answers nothing"
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="nvml_driver") == 1
    f.nvml.fail("*", -1, UNKNOWN, 0)
    s = f.until(lambda s: value(s, "llm_monitor_exporter_up", upstream="nvml") == 1)
    assert ups(s, 2) == [1, 1]
    assert f.nvml.counter("refcount") == 1, "every init but the live one was shut down"


def test_2_a_driver_reload_recounts_the_devices_and_takes_new_handles(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 2)
    assert ups(f.cycle(), 2) == [1, 1]
    f.nvml.set_gpu_count(3)
    f.nvml.driver_reload(2)
    s = f.cycle()
    assert value(s, "llm_monitor_exporter_up", upstream="nvml") == 0
    s = f.until(lambda s: value(s, "llm_monitor_gpu_devices") == 3, timeout=12)
    assert ups(s, 3) == [1, 1, 1]
    assert value(s, "llm_monitor_gpu_temperature_celsius", gpu="2") is not None
    assert f.nvml.counter("refcount") == 1


def test_2_a_gpu_that_needs_a_reset_is_down_and_comes_back(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 3)
    f.cycle()
    f.nvml.fail("*", 1, RESET_REQUIRED, -1)
    s = f.cycle()
    assert ups(s, 3) == [1, 0, 1]
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="gpu_reset_required") >= 1
    assert value(s, "llm_monitor_gpu_temperature_celsius", gpu="1") is None
    f.nvml.fail("*", 1, RESET_REQUIRED, 0)
    f.until(lambda s: ups(s, 3) == [1, 1, 1], timeout=8)


# --- 3. XID events --------------------------------------------------------------------------------------
def test_3_xid_79_is_counted_although_the_gpu_is_gone_when_the_event_is_read(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 2)
    f.until(lambda s: value(s, "llm_monitor_gpu_xid_events_watched", gpu="0") == 1)
    f.nvml.xid(0, 79, lose_gpu=True)
    s = f.until(lambda s: value(s, "llm_monitor_gpu_xid_errors_total", gpu="0", xid="79") == 1)
    assert value(s, "llm_monitor_gpu_xid_last_code", gpu="0") == 79
    # the XID thread counts the event at once; the collection cycle sees the GPU gone on its next round
    s = f.until(lambda s: ups(s, 2) == [0, 1])
    assert value(s, "llm_monitor_gpu_xid_errors_total", gpu="0", xid="79") == 1


def test_3_mig_xid_events_keep_their_gpu_instance(fleet: Callable[..., Fleet]) -> None:
    f = fleet("a100_mig", 1)
    f.until(lambda s: value(s, "llm_monitor_gpu_xid_events_watched", gpu="0") == 1)
    f.nvml.xid(0, 43, gpu_instance=5, compute_instance=0)
    f.until(lambda s: value(s, "llm_monitor_gpu_xid_errors_total", gpu="0", xid="43", gpu_instance="5") == 1)


def test_3_events_are_registered_again_after_nvml_comes_back(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 2)
    f.until(lambda s: value(s, "llm_monitor_gpu_xid_events_watched", gpu="1") == 1)
    f.nvml.driver_reload(0)
    f.until(
        lambda s: (
            value(s, "llm_monitor_exporter_up", upstream="nvml") == 1
            and value(s, "llm_monitor_gpu_xid_events_watched", gpu="1") == 1
        )
    )
    f.nvml.xid(1, 48)
    f.until(lambda s: value(s, "llm_monitor_gpu_xid_errors_total", gpu="1", xid="48") == 1)
    assert f.nvml.counter("event_sets_open") == 1, "the old session's event set was freed"


def test_3_a_wait_that_keeps_failing_says_events_are_not_watched(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 1)
    f.until(lambda s: value(s, "llm_monitor_gpu_xid_events_watched", gpu="0") == 1)
    f.nvml.fail("nvmlEventSetWait_v2", -1, IRQ_ISSUE, -1)
    s = f.until(lambda s: value(s, "llm_monitor_gpu_xid_events_watched", gpu="0") == 0, timeout=10)
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="xid_wait") >= 1
    f.nvml.fail("nvmlEventSetWait_v2", -1, IRQ_ISSUE, 0)
    f.until(lambda s: value(s, "llm_monitor_gpu_xid_events_watched", gpu="0") == 1, timeout=10)


# --- 4. NVLink ------------------------------------------------------------------------------------------
def test_4_a_failing_nvlink_never_makes_a_counter_go_backwards(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h100_nvlink", 1)
    first = f.cycle()
    links = value(first, "llm_monitor_gpu_nvlink_links", gpu="0")
    assert links == 18
    f.nvml.fail_nvlink(0, 3, INSUFFICIENT_RESOURCES)
    f.nvml.advance(10)
    second = f.cycle()
    assert value(second, "llm_monitor_gpu_nvlink_transmit_bytes_total", gpu="0", link="3") is None
    assert value(second, "llm_monitor_gpu_nvlink_receive_bytes_total", gpu="0", link="3") is None
    for link in [str(i) for i in range(18) if i != 3]:
        for name in ("llm_monitor_gpu_nvlink_transmit_bytes_total", "llm_monitor_gpu_nvlink_receive_bytes_total"):
            assert value(second, name, gpu="0", link=link) > value(first, name, gpu="0", link=link)


def test_4_8_gpu_lost_in_a_field_value_is_a_lost_gpu_not_an_unsupported_field(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h100_nvlink", 2)
    f.cycle()
    f.nvml.fail_nvlink(1, 0, GPU_IS_LOST)
    assert ups(f.cycle(), 2) == [1, 0]


# --- 5. MIG ---------------------------------------------------------------------------------------------
def test_5_mig_devices_with_gaps_profiles_processes_and_what_mig_mode_cannot_tell(fleet: Callable[..., Fleet]) -> None:
    f = fleet("a100_mig", 1)
    s = f.cycle()
    migs = s["llm_monitor_gpu_mig_memory_total_bytes"]
    assert sorted((lbl["gpu_instance"], lbl["mig_profile"]) for lbl, _ in migs) == [
        ("1", "3g.40gb"), ("13", "1g.10gb"), ("5", "2g.20gb"),
    ]  # fmt: skip
    assert all(lbl["compute_instance"] == "0" and lbl["mig_uuid"].startswith("MIG-") for lbl, _ in migs)
    assert value(s, "llm_monitor_gpu_utilization_ratio", gpu="0") is None
    assert value(s, "llm_monitor_gpu_query_unsupported", gpu="0", query="utilization") == 1
    procs = s["llm_monitor_gpu_process_memory_used_bytes"]
    assert sorted(lbl["gpu_instance"] for lbl, _ in procs) == ["1", "13", "5"], "per MIG device, no privileges"
    for lbl, _ in migs:
        used = value(s, "llm_monitor_gpu_mig_memory_used_bytes", gpu_instance=lbl["gpu_instance"])
        assert used is not None and 0 < used < value(
            s, "llm_monitor_gpu_mig_memory_total_bytes", gpu_instance=lbl["gpu_instance"]
        )
    assert value(s, "llm_monitor_gpu_profiling_supported", gpu="0") in (0, None)  # Ampere: no GPM


def test_5_one_failing_mig_device_keeps_the_others(fleet: Callable[..., Fleet]) -> None:
    f = fleet("a100_mig", 1)
    f.nvml.fail("nvmlDeviceGetGpuInstanceId", 0, INSUFFICIENT_RESOURCES, 1)
    s = f.cycle()
    assert len(s["llm_monitor_gpu_mig_memory_total_bytes"]) == 2
    assert len(f.cycle()["llm_monitor_gpu_mig_memory_total_bytes"]) == 3


def test_gpm_per_mig_gpu_instance(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h100_mig", 1)
    s = f.until(lambda s: len(s.get("llm_monitor_gpu_mig_sm_active_ratio", [])) == 3)
    assert {lbl["mig_profile"] for lbl, _ in s["llm_monitor_gpu_mig_sm_active_ratio"]} == {
        "3g.40gb",
        "2g.20gb",
        "1g.10gb",
    }


# --- 7. PCIe --------------------------------------------------------------------------------------------
def test_7_pcie_is_a_byte_counter_read_in_the_cycle_never_the_20ms_sample(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 1)
    first = f.cycle()
    f.nvml.advance(5)
    second = f.cycle()
    for name in ("llm_monitor_gpu_pcie_transmit_bytes_total", "llm_monitor_gpu_pcie_receive_bytes_total"):
        assert value(second, name, gpu="0") > value(first, name, gpu="0")
    assert f.nvml.counter("pcie_throughput_calls") == 0


# --- 8. field value types -------------------------------------------------------------------------------
@pytest.mark.parametrize("value_type", [1, 3, 5, 6], ids=["uint", "ulonglong", "sint", "ushort"])
def test_8_field_values_are_read_through_their_own_union_member(fleet: Callable[..., Fleet], value_type: int) -> None:
    f = fleet("h200", 1)
    expected = value(f.cycle(), "llm_monitor_gpu_memory_temperature_celsius", gpu="0")
    assert expected is not None and 20 < expected < 120
    f.nvml.set_field_type(82, value_type)  # NVML_FI_DEV_MEMORY_TEMP
    got = value(f.cycle(), "llm_monitor_gpu_memory_temperature_celsius", gpu="0")
    assert got is not None and abs(got - expected) <= 2


# --- 9. memory ------------------------------------------------------------------------------------------
def test_9_used_means_total_minus_free_with_v2_and_when_v2_fails(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 1)
    s = f.cycle()
    total, used, free = (value(s, f"llm_monitor_gpu_memory_{k}_bytes", gpu="0") for k in ("total", "used", "free"))
    reserved = value(s, "llm_monitor_gpu_memory_reserved_bytes", gpu="0")
    assert reserved and used + free == total
    f.nvml.fail("nvmlDeviceGetMemoryInfo_v2", -1, ARGUMENT_VERSION_MISMATCH, -1)
    s = f.cycle()
    assert value(s, "llm_monitor_gpu_memory_total_bytes", gpu="0") == total, "v1 answers when v2 fails"
    assert (
        value(s, "llm_monitor_gpu_memory_used_bytes", gpu="0") + value(s, "llm_monitor_gpu_memory_free_bytes", gpu="0")
        == total
    )


# --- 10. init balanced by shutdown ----------------------------------------------------------------------
def test_10_a_failure_after_init_shuts_nvml_down_before_the_retry(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 1)
    f.nvml.fail("nvmlDeviceGetCount_v2", -1, INSUFFICIENT_RESOURCES, 3)
    for _ in range(3):
        s = f.cycle()
        assert value(s, "llm_monitor_exporter_up", upstream="nvml") == 0
        assert f.nvml.counter("refcount") == 0
        time.sleep(1.1)  # the back-off: 1 s, 2 s, ...
    f.until(lambda s: value(s, "llm_monitor_exporter_up", upstream="nvml") == 1, timeout=10)
    assert f.nvml.counter("refcount") == 1


# --- 11. event registration ------------------------------------------------------------------------------
def test_11_one_gpu_refusing_event_registration_keeps_the_others_watched(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 2)
    f.nvml.fail("nvmlDeviceRegisterEvents", 1, INSUFFICIENT_RESOURCES, -1)
    s = f.until(lambda s: value(s, "llm_monitor_gpu_xid_events_watched", gpu="0") == 1)
    assert value(s, "llm_monitor_gpu_xid_events_watched", gpu="1") == 0
    f.nvml.xid(0, 62)
    f.until(lambda s: value(s, "llm_monitor_gpu_xid_errors_total", gpu="0", xid="62") == 1)
    assert f.nvml.counter("event_sets_open") == 1
    f.collector.close()
    assert f.nvml.counter("event_sets_open") == 0, "closing frees the event set"


# --- 12. help texts -------------------------------------------------------------------------------------
def test_12_help_texts_say_what_nvml_means(fleet: Callable[..., Fleet]) -> None:
    text = fleet("h200", 1).text()
    helps = {line.split()[2]: line for line in text.splitlines() if line.startswith("# HELP")}
    assert "lifetime" in helps["llm_monitor_gpu_ecc_errors_total"]
    assert "one-second average on Ampere" in helps["llm_monitor_gpu_power_watts"]
    assert "not how full" in helps["llm_monitor_gpu_memory_controller_utilization_ratio"]
    assert "llm_monitor_gpu_memory_utilization_ratio" not in helps


# --- profiling --------------------------------------------------------------------------------------------
def test_gpm_profiling_on_hopper_tells_a_busy_looking_gpu_from_a_saturated_one(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 2)
    s = f.until(lambda s: value(s, "llm_monitor_gpu_tensor_active_ratio", gpu="1") is not None)
    for gpu in ("0", "1"):
        util = value(s, "llm_monitor_gpu_utilization_ratio", gpu=gpu)
        sm = value(s, "llm_monitor_gpu_sm_active_ratio", gpu=gpu)
        assert util is not None and sm is not None and 0 < sm < util
        for name in ("sm_occupancy", "dram_active", "fp16_active", "fp32_active", "fp64_active", "graphics_active"):
            ratio = value(s, f"llm_monitor_gpu_{name}_ratio", gpu=gpu)
            assert ratio is not None and 0 <= ratio <= 1
    assert f.nvml.counter("gpm_samples_open") <= 2, "one sample kept per GPU, the others freed"
    f.collector.close()
    assert f.nvml.counter("gpm_samples_open") == 0


def test_gpu_limits_violation_time_encoders_and_volatile_ecc(fleet: Callable[..., Fleet]) -> None:
    f = fleet("h200", 1)
    first = f.cycle()
    assert value(first, "llm_monitor_gpu_temperature_limit_celsius", gpu="0", limit="slowdown") == 89
    assert value(first, "llm_monitor_gpu_temperature_limit_celsius", gpu="0", limit="shutdown") == 92
    assert value(first, "llm_monitor_gpu_encoder_utilization_ratio", gpu="0") is not None
    agg = value(first, "llm_monitor_gpu_ecc_errors_total", gpu="0", type="corrected")
    vol = value(first, "llm_monitor_gpu_ecc_volatile_errors_total", gpu="0", type="corrected")
    assert agg is not None and vol is not None and agg >= vol
    f.nvml.advance(30)
    second = f.cycle()
    for reason in ("power", "thermal"):
        name = "llm_monitor_gpu_clock_throttle_seconds_total"
        assert value(second, name, gpu="0", reason=reason) >= value(first, name, gpu="0", reason=reason)


def test_promtool_accepts_every_profile(fleet: Callable[..., Fleet], promtool: Callable[[str], None]) -> None:
    for profile in ("h200", "h100_nvlink", "h100_mig", "a100_mig", "l40s"):
        f = fleet(profile, 2)
        f.until(lambda s: "llm_monitor_gpu_up" in s)
        time.sleep(0.3)
        promtool(f.text())
        f.collector.close()


# --- the simulation is no kinder than the double ----------------------------------------------------------
def _shape(s: Samples) -> set[tuple[str, tuple[str, ...]]]:
    skip = ("llm_monitor_exporter_", "llm_monitor_gpu_profiling_sample_seconds")
    return {(name, tuple(sorted(lbl))) for name, rows in s.items() if not name.startswith(skip) for lbl, _ in rows}


@pytest.mark.parametrize(
    ("profile", "model", "mig"), [("h200", "H200", 0), ("a100_mig", "A100", 3), ("l40s", "L40S", 0)]
)
def test_the_simulation_serves_the_same_series_as_the_double(
    fleet: Callable[..., Fleet], profile: str, model: str, mig: int
) -> None:
    f = fleet(profile, 2)
    double = f.until(
        lambda s: "llm_monitor_gpu_up" in s and value(s, "llm_monitor_gpu_xid_events_watched", gpu="1") == 1
    )
    time.sleep(0.3)
    double = f.cycle()
    sim = SimulatedNvml(gpus=2, model=model, scenario="busy", mig_devices=mig)
    collector = GpuCollector(GpuConfig(backend="simulation", profiling_interval=0.1), sim)
    loop = SnapshotLoop(collector, interval=0.1)
    try:
        assert wait_for(
            lambda: (
                loop.run_once() is None
                and value(parse_samples(loop.latest().decode()), "llm_monitor_gpu_xid_events_watched", gpu="1") == 1
            ),
            timeout=5,
        )
        time.sleep(0.3)
        loop.run_once()
        simulated = parse_samples(loop.latest().decode())
    finally:
        collector.close()
    assert _shape(simulated) == _shape(double)
    unsupported = {(lbl["gpu"], lbl["query"]) for lbl, _ in double.get("llm_monitor_gpu_query_unsupported", [])}
    assert {
        (lbl["gpu"], lbl["query"]) for lbl, _ in simulated.get("llm_monitor_gpu_query_unsupported", [])
    } == unsupported


# --- 6. process labels and PID namespaces (fake procfs) -------------------------------------------------
def _fake_proc(root: Path, ns: str, nspid: str, pids: dict[int, tuple[str, str]]) -> Path:
    (root / "self" / "ns").mkdir(parents=True)
    (root / "self" / "status").write_text(f"Name:\tpython\nNSpid:\t{nspid}\n")
    os.symlink(ns, root / "self" / "ns" / "pid")
    for pid, (comm, cgroup) in pids.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "comm").write_text(comm + "\n")
        (root / str(pid) / "cgroup").write_text(cgroup)
    return root


def test_6_kubernetes_cgroupfs_containers_and_no_pid_label_by_default(
    fleet: Callable[..., Fleet], nvml: NvmlDouble, tmp_path: Path
) -> None:
    cid = "3f" * 32
    proc = _fake_proc(tmp_path, "pid:[4026531836]", "1", {
        7001: ("vllm", f"12:memory:/kubepods/burstable/pod0d9a8c2e-1111-4c2b-9e8e-0123456789ab/{cid}\n"),
        7002: ("vllm", f"12:memory:/kubepods/burstable/pod0d9a8c2e-1111-4c2b-9e8e-0123456789ab/{cid}\n"),
    })  # fmt: skip
    f = fleet("h200", 1, proc_root=str(proc))
    nvml.set_processes(0, -1, [(7001, 2 << 30), (7002, 1 << 30)])
    rows = f.cycle()["llm_monitor_gpu_process_memory_used_bytes"]
    assert rows == [({"gpu": "0", "uuid": rows[0][0]["uuid"], "gpu_instance": "", "process_name": "vllm",
                      "container_id": cid[:12]}, float(3 << 30))]  # fmt: skip
    g = fleet("h200", 1, proc_root=str(proc), process_pid_label=True)
    nvml.set_processes(0, -1, [(7001, 2 << 30), (7002, 1 << 30)])
    assert sorted(lbl["pid"] for lbl, _ in g.cycle()["llm_monitor_gpu_process_memory_used_bytes"]) == ["7001", "7002"]


def test_6_a_containers_own_procfs_resolves_no_host_pid(
    fleet: Callable[..., Fleet], nvml: NvmlDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """NVML reports host PIDs; in the container's own PID namespace they name other processes."""
    proc = _fake_proc(tmp_path, "pid:[4026532101]", "1", {7001: ("bash", "0::/\n")})
    with caplog.at_level(logging.WARNING, logger="llm_monitor_exporters"):
        f = fleet("h200", 1, proc_root=str(proc))
    assert any("NVML reports the host's PIDs" in r.getMessage() for r in caplog.records)
    nvml.set_processes(0, -1, [(7001, 1 << 30)])
    rows = f.cycle()["llm_monitor_gpu_process_memory_used_bytes"]
    assert [(lbl["process_name"], lbl["container_id"]) for lbl, _ in rows] == [("", "")]


def test_6_the_hosts_procfs_mounted_into_a_container_resolves_names(
    fleet: Callable[..., Fleet], nvml: NvmlDouble, tmp_path: Path
) -> None:
    proc = _fake_proc(tmp_path, "pid:[4026532101]", "52811\t1", {7001: ("ollama", "0::/system.slice/ollama.service\n")})
    f = fleet("h200", 1, proc_root=str(proc))
    nvml.set_processes(0, -1, [(7001, 1 << 30)])
    rows = f.cycle()["llm_monitor_gpu_process_memory_used_bytes"]
    assert [lbl["process_name"] for lbl, _ in rows] == ["ollama"]

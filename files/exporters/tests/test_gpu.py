"""GPU collector against the simulation backend and the real (missing) NVML."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from conftest import parse_samples, value
from llm_monitor_exporters.core.collector import SnapshotLoop
from llm_monitor_exporters.gpu.gpu import CRITICAL_XIDS, GpuCollector, GpuConfig, SimulationConfig
from llm_monitor_exporters.gpu.nvml import NvmlError, NvmlGpuLost
from llm_monitor_exporters.gpu.nvml_simulation import MODELS, SCENARIOS, SimulatedNvml, resolve_model


def make(
    scenario: str = "busy", gpus: int = 2, model: str = "H100", mig: int = 0, **cfg: object
) -> tuple[GpuCollector, SnapshotLoop, SimulatedNvml]:
    sim = SimulatedNvml(
        gpus=gpus, model=model, scenario=scenario, mig_devices=mig, driver=str(cfg.pop("driver", "550.127.05"))
    )
    config = GpuConfig(
        backend="simulation",
        profiling_interval=0.1,
        proc_root="/proc",
        simulation=SimulationConfig(gpus=gpus, model=model, scenario=scenario),
    )
    for key, val in cfg.items():
        setattr(config, key, val)
    collector = GpuCollector(config, sim)
    return collector, SnapshotLoop(collector, interval=0.1), sim


def samples(loop: SnapshotLoop) -> dict[str, list[tuple[dict[str, str], float]]]:
    loop.run_once()
    return parse_samples(loop.latest().decode())


def test_busy_h100_all_series() -> None:
    collector, loop, _ = make("busy", gpus=2)
    try:
        s = samples(loop)
        assert value(s, "llm_monitor_exporter_up", upstream="nvml") == 1
        for gpu in ("0", "1"):
            assert value(s, "llm_monitor_gpu_up", gpu=gpu) == 1
            util = value(s, "llm_monitor_gpu_utilization_ratio", gpu=gpu)
            assert util is not None
            assert 0.8 <= util <= 1.0
            total = value(s, "llm_monitor_gpu_memory_total_bytes", gpu=gpu)
            assert total == 81559 * 1024 * 1024
            assert 0 < value(s, "llm_monitor_gpu_memory_used_bytes", gpu=gpu) < total
            assert value(s, "llm_monitor_gpu_memory_reserved_bytes", gpu=gpu) > 0
            assert 40 <= value(s, "llm_monitor_gpu_temperature_celsius", gpu=gpu) <= 80
            assert value(s, "llm_monitor_gpu_memory_temperature_celsius", gpu=gpu) is not None
            assert 70 <= value(s, "llm_monitor_gpu_power_watts", gpu=gpu) <= 700
            assert value(s, "llm_monitor_gpu_power_limit_watts", gpu=gpu) == 700
            assert value(s, "llm_monitor_gpu_energy_joules_total", gpu=gpu) > 0
            assert value(s, "llm_monitor_gpu_clock_max_hertz", gpu=gpu, clock="sm") == 1980e6
            assert value(s, "llm_monitor_gpu_clock_hertz", gpu=gpu, clock="memory") == 2619e6
            assert value(s, "llm_monitor_gpu_clock_event_active", gpu=gpu, reason="hw_thermal_slowdown") == 0
            assert value(s, "llm_monitor_gpu_performance_state", gpu=gpu) == 0
            assert value(s, "llm_monitor_gpu_ecc_errors_total", gpu=gpu, type="uncorrected") == 0
            assert value(s, "llm_monitor_gpu_remapped_rows", gpu=gpu, type="correctable") == 0
            assert value(s, "llm_monitor_gpu_nvlink_links", gpu=gpu) == 18
            assert value(s, "llm_monitor_gpu_mig_mode", gpu=gpu) == 0
        # fans are not supported on SXM boards: skipped silently, no error counted
        assert "llm_monitor_gpu_fan_speed_ratio" not in s
        assert value(s, "llm_monitor_exporter_collection_errors_total", kind="nvml_query") == 0
        info = s["llm_monitor_gpu_info"][0][0]
        assert info["driver_version"] == "550.127.05"
        assert info["cuda_version"] == "12.4"
        # processes: this test process is resolved to its name; a vanished pid has an empty name
        procs = s["llm_monitor_gpu_process_memory_used_bytes"]
        assert any(lbl["process_name"] for lbl, _ in procs)
        assert all(set(lbl) == {"gpu", "uuid", "gpu_instance", "process_name", "container_id"} for lbl, _ in procs)
    finally:
        collector.close()


def test_counters_never_decrease() -> None:
    collector, loop, _ = make("ecc_errors", gpus=1)
    try:
        first = samples(loop)
        time.sleep(0.3)
        second = samples(loop)
        for name, lbls in (
            ("llm_monitor_gpu_energy_joules_total", {}),
            ("llm_monitor_gpu_ecc_errors_total", {"type": "corrected"}),
            ("llm_monitor_gpu_nvlink_transmit_bytes_total", {"link": "0"}),
            ("llm_monitor_gpu_pcie_receive_bytes_total", {}),
            ("llm_monitor_gpu_clock_throttle_seconds_total", {"reason": "power"}),
        ):
            assert value(second, name, gpu="0", **lbls) >= value(first, name, gpu="0", **lbls)
        assert value(second, "llm_monitor_gpu_ecc_errors_total", gpu="0", type="corrected") > 0
        assert value(second, "llm_monitor_gpu_ecc_errors_total", gpu="0", type="uncorrected") >= 1
        assert value(second, "llm_monitor_gpu_remapped_rows_pending", gpu="0") == 1
    finally:
        collector.close()


def test_thermal_throttling_reasons() -> None:
    collector, loop, _ = make("thermal_throttling", gpus=2)
    try:
        s = samples(loop)
        for gpu in ("0", "1"):
            assert value(s, "llm_monitor_gpu_temperature_celsius", gpu=gpu) >= 85
            assert value(s, "llm_monitor_gpu_clock_event_active", gpu=gpu, reason="sw_thermal_slowdown") == 1
            assert value(s, "llm_monitor_gpu_clock_event_active", gpu=gpu, reason="hw_thermal_slowdown") == 1
            assert value(s, "llm_monitor_gpu_clock_hertz", gpu=gpu, clock="sm") < 0.75 * 1980e6
    finally:
        collector.close()


def test_idle_and_not_supported_fields_are_skipped() -> None:
    collector, loop, _ = make("idle", gpus=1, model="L40S")
    try:
        s = samples(loop)
        assert value(s, "llm_monitor_gpu_up", gpu="0") == 1
        assert value(s, "llm_monitor_gpu_clock_event_active", gpu="0", reason="gpu_idle") == 1
        assert value(s, "llm_monitor_gpu_utilization_ratio", gpu="0") == 0
        for absent in (
            "llm_monitor_gpu_nvlink_links",
            "llm_monitor_gpu_mig_mode",
            "llm_monitor_gpu_fan_speed_ratio",
            "llm_monitor_gpu_process_memory_used_bytes",
        ):
            assert absent not in s
        assert value(s, "llm_monitor_exporter_collection_errors_total", kind="nvml_query") == 0
        assert value(s, "llm_monitor_gpu_memory_total_bytes", gpu="0") == 46068 * 1024 * 1024
    finally:
        collector.close()


def test_fan_on_boards_with_fans() -> None:
    collector, loop, _ = make("busy", gpus=1, model="RTX 6000")
    try:
        s = samples(loop)
        assert 0 < value(s, "llm_monitor_gpu_fan_speed_ratio", gpu="0") <= 1
    finally:
        collector.close()


def test_mig_devices() -> None:
    collector, loop, _ = make("busy", gpus=1, model="A100", mig=3)
    try:
        s = samples(loop)
        assert value(s, "llm_monitor_gpu_mig_mode", gpu="0") == 1
        migs = s["llm_monitor_gpu_mig_memory_total_bytes"]
        assert len(migs) == 3
        assert {lbl["gpu_instance"] for lbl, _ in migs} == {"1", "5", "13"}
        assert {lbl["mig_profile"] for lbl, _ in migs} == {"3g.40gb", "2g.20gb", "1g.10gb"}
        # no utilisation in MIG mode, said so instead of silently missing
        assert value(s, "llm_monitor_gpu_utilization_ratio", gpu="0") is None
        assert value(s, "llm_monitor_gpu_query_unsupported", gpu="0", query="utilization") == 1
        # processes come from each MIG device (the parent's list needs privileges)
        procs = s["llm_monitor_gpu_process_memory_used_bytes"]
        assert {lbl["gpu_instance"] for lbl, _ in procs} == {"1", "5", "13"}
    finally:
        collector.close()


def test_error_on_one_gpu_keeps_others() -> None:
    collector, loop, sim = make("busy", gpus=3)
    try:
        samples(loop)
        sim.inject_error(1, NvmlGpuLost("GPU is lost"))
        s = samples(loop)
        assert value(s, "llm_monitor_gpu_up", gpu="1") == 0
        assert value(s, "llm_monitor_gpu_up", gpu="0") == 1
        assert value(s, "llm_monitor_gpu_up", gpu="2") == 1
        assert value(s, "llm_monitor_gpu_utilization_ratio", gpu="1") is None
        assert value(s, "llm_monitor_gpu_utilization_ratio", gpu="2") is not None
        assert value(s, "llm_monitor_exporter_collection_errors_total", kind="gpu_lost") == 1
        assert value(s, "llm_monitor_exporter_up", upstream="nvml") == 1
        # a generic NVML error on one field is counted, the GPU stays up
        sim.inject_error(1, None)
        s = samples(loop)
        assert value(s, "llm_monitor_gpu_up", gpu="1") == 1
        sim.inject_error(2, NvmlError("Unknown Error"))
        s = samples(loop)
        assert value(s, "llm_monitor_gpu_up", gpu="2") == 1
        assert value(s, "llm_monitor_exporter_collection_errors_total", kind="nvml_query") > 0
    finally:
        collector.close()


def test_gpu_lost_scenario() -> None:
    collector, loop, _ = make("gpu_lost", gpus=4)
    try:
        s = samples(loop)
        assert [value(s, "llm_monitor_gpu_up", gpu=str(i)) for i in range(4)] == [1, 1, 1, 0]
    finally:
        collector.close()


def test_xid_events_counted_on_their_own_thread() -> None:
    collector, loop, sim = make("xid_79", gpus=2)
    try:
        s = samples(loop)
        for gpu in ("0", "1"):
            for xid in CRITICAL_XIDS:
                # pre-initialised at 0 once the watcher runs (so increase() sees the first one)
                assert value(s, "llm_monitor_gpu_xid_errors_total", gpu=gpu, xid=str(xid)) in (0, 1, None)
        assert _wait(lambda: value(samples(loop), "llm_monitor_gpu_xid_errors_total", gpu="0", xid="79") == 1)
        sim.emit_xid(1, 13)
        assert _wait(lambda: value(samples(loop), "llm_monitor_gpu_xid_errors_total", gpu="1", xid="13") == 1)
        s = samples(loop)
        assert value(s, "llm_monitor_gpu_up", gpu="0") == 0  # XID 79: fell off the bus
        assert value(s, "llm_monitor_gpu_up", gpu="1") == 1
        assert value(s, "llm_monitor_gpu_xid_events_watched", gpu="1") == 1
        assert value(s, "llm_monitor_gpu_xid_last_code", gpu="0") == 79
    finally:
        collector.close()


def test_simulated_driver_470_is_no_kinder_than_nvml() -> None:
    """Driver 470: no PCIe byte counters, no GPM, no reserved memory; Pascal: retired pages, no row remapping."""
    collector, loop, _ = make("busy", gpus=1, model="P100", driver="470.256.02")
    try:
        s = samples(loop)
        for absent in (
            "llm_monitor_gpu_pcie_transmit_bytes_total",
            "llm_monitor_gpu_memory_reserved_bytes",
            "llm_monitor_gpu_remapped_rows",
            "llm_monitor_gpu_energy_joules_total",
            "llm_monitor_gpu_sm_active_ratio",
        ):
            assert absent not in s, absent
        assert value(s, "llm_monitor_gpu_query_unsupported", gpu="0", query="pcie_bytes") == 1
        assert value(s, "llm_monitor_gpu_retired_pages", gpu="0", cause="double_bit_ecc") == 0
        total = value(s, "llm_monitor_gpu_memory_total_bytes", gpu="0")
        used, free = (
            value(s, "llm_monitor_gpu_memory_used_bytes", gpu="0"),
            value(s, "llm_monitor_gpu_memory_free_bytes", gpu="0"),
        )
        assert used + free == total
    finally:
        collector.close()


def test_gpm_profiling_sampled_off_the_scrape_path() -> None:
    collector, loop, _ = make("busy", gpus=2, model="H200")
    try:
        assert _wait(lambda: value(samples(loop), "llm_monitor_gpu_sm_active_ratio", gpu="1") is not None)
        s = samples(loop)
        util = value(s, "llm_monitor_gpu_utilization_ratio", gpu="1")
        sm = value(s, "llm_monitor_gpu_sm_active_ratio", gpu="1")
        assert 0 < sm < util, "SM activity tells a busy-looking GPU from a saturated one"
        assert value(s, "llm_monitor_gpu_profiling_supported", gpu="0") == 1
        assert value(s, "llm_monitor_gpu_profiling_sample_seconds") >= 0
    finally:
        collector.close()


def test_nvml_library_missing_serves_up_zero(caplog: pytest.LogCaptureFixture) -> None:
    """No driver on this machine: the real pynvml backend fails to load libnvidia-ml."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("a real NVML is present here")
    except Exception:
        pass
    collector = GpuCollector(GpuConfig(nvml_retry_interval=1))
    loop = SnapshotLoop(collector, interval=1)
    with caplog.at_level(logging.DEBUG, logger="llm_monitor_exporters"):
        s = samples(loop)
        samples(loop)
    assert value(s, "llm_monitor_exporter_up", exporter="gpu", upstream="nvml") == 0
    assert value(s, "llm_monitor_exporter_collection_errors_total", kind="nvml_init") == 1
    assert not any(name.startswith("llm_monitor_gpu_") for name in s)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "NVML library not found" in errors[0].getMessage()
    collector.close()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_promtool_every_scenario(scenario: str, promtool: Callable[[str], None]) -> None:
    collector, loop, sim = make(scenario, gpus=2, model="H200", mig=2)
    try:
        loop.run_once()
        sim.emit_xid(1, 94)
        time.sleep(0.15)
        loop.run_once()
        promtool(loop.latest().decode())
    finally:
        collector.close()


@pytest.mark.parametrize("model", list(MODELS))
def test_promtool_every_model(model: str, promtool: Callable[[str], None]) -> None:
    collector, loop, _ = make("busy", gpus=1, model=model, mig=1)
    try:
        loop.run_once()
        text = loop.latest().decode()
        promtool(text)
        assert resolve_model(model).name in text
    finally:
        collector.close()


def test_model_resolution() -> None:
    assert resolve_model("h200").name == "NVIDIA H200"
    with pytest.raises(ValueError, match="unknown GPU model"):
        resolve_model("V100")
    with pytest.raises(ValueError, match="unknown simulation scenario"):
        SimulatedNvml(scenario="melting")


def _wait(pred: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False

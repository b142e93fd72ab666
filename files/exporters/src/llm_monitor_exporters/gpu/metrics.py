"""Every series the GPU exporter serves: name, type, help and labels, in one table (the README lists the same)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PREFIX = "llm_monitor_gpu_"
GPU_LABELS = ["gpu", "uuid", "name", "pci_bus_id"]
MIG_LABELS = ["gpu", "uuid", "mig_uuid", "gpu_instance", "compute_instance", "mig_profile"]
PROCESS_LABELS = ["gpu", "uuid", "gpu_instance", "process_name", "container_id"]

_RATIO = "0..1, averaged by NVML GPM over the profiling interval (Hopper and newer)"

#: name (without prefix) -> (type, help, labels: extra labels after GPU_LABELS, or a full list starting with "gpu")
METRICS: dict[str, tuple[str, str, list[str]]] = {
    "up": ("gauge", "Whether the GPU answered NVML in the last collection (1) or not (0: lost, needs a reset).", []),
    "utilization_ratio": (
        "gauge",
        "Fraction of time at least one kernel ran, 0..1 (100 % for a GPU mostly idle inside its kernels: see "
        "sm_active_ratio). Not reported in MIG mode.",
        [],
    ),
    "memory_controller_utilization_ratio": (
        "gauge",
        "Fraction of time the memory controller was busy reading or writing, 0..1 (how busy, not how full).",
        [],
    ),
    "memory_total_bytes": ("gauge", "Total framebuffer memory.", []),
    "memory_used_bytes": (
        "gauge",
        "Framebuffer memory in use, total minus free: includes the driver's reserved memory on every driver.",
        [],
    ),
    "memory_free_bytes": ("gauge", "Free framebuffer memory.", []),
    "memory_reserved_bytes": (
        "gauge",
        "Framebuffer memory reserved by the driver (NVML memory info v2, drivers R510 and newer).",
        [],
    ),
    "temperature_celsius": ("gauge", "GPU core temperature.", []),
    "temperature_limit_celsius": (
        "gauge",
        "The GPU's own temperature limits: slowdown (clocks drop), shutdown, gpu_max and memory_max (the most "
        "the GPU or memory should run at). Alert relative to these, not to one number for every model.",
        ["limit"],
    ),
    "memory_temperature_celsius": ("gauge", "HBM memory temperature (where supported).", []),
    "power_watts": (
        "gauge",
        "Power draw as NVML reports it: a one-second average on Ampere and newer, instantaneous before.",
        [],
    ),
    "power_limit_watts": ("gauge", "Enforced power limit.", []),
    "energy_joules": ("counter", "Energy consumed since the driver was loaded (Volta and newer).", []),
    "clock_hertz": ("gauge", "Current clock frequency by clock (sm, memory).", ["clock"]),
    "clock_max_hertz": ("gauge", "Maximum clock frequency by clock (sm, memory).", ["clock"]),
    "clock_event_active": ("gauge", "Whether a clock event (throttle) reason is active (1) or not (0).", ["reason"]),
    "clock_throttle_seconds": (
        "counter",
        "Time the clocks were held below what was asked for, by reason (power, thermal, sync_boost, board_limit, "
        "low_utilization, reliability, app_clocks, base_clocks), from NVML violation status.",
        ["reason"],
    ),
    "fan_speed_ratio": ("gauge", "Fan speed as a fraction of the maximum (boards with fans only).", []),
    "performance_state": ("gauge", "Performance state (0 = P0, maximum performance .. 15).", []),
    "ecc_errors": (
        "counter",
        "ECC errors over the GPU's lifetime (aggregate counts, kept in the InfoROM across reboots), by type.",
        ["type"],
    ),
    "ecc_volatile_errors": (
        "counter",
        "ECC errors since the driver was last loaded (volatile counts), by type (corrected, uncorrected).",
        ["type"],
    ),
    "remapped_rows": ("gauge", "Rows remapped by the row remapper, by type (correctable, uncorrectable).", ["type"]),
    "remapped_rows_pending": ("gauge", "Whether a row remapping is pending (needs a GPU reset).", []),
    "remapped_rows_failure": ("gauge", "Whether a row remapping failed.", []),
    "retired_pages": (
        "gauge",
        "Memory pages retired for ECC errors, by cause (single_bit_ecc, double_bit_ecc): GPUs before Ampere.",
        ["cause"],
    ),
    "retired_pages_pending": ("gauge", "Whether a page retirement waits for a reboot (GPUs before Ampere).", []),
    "pcie_transmit_bytes": ("counter", "PCIe bytes sent by the GPU (NVML byte counter, R535+).", []),
    "pcie_receive_bytes": ("counter", "PCIe bytes received by the GPU (NVML byte counter, R535+).", []),
    "pcie_replay_errors": ("counter", "PCIe replays (link-level retransmissions): a rising count is a bad link.", []),
    "encoder_utilization_ratio": ("gauge", "Video encoder utilisation, 0..1.", []),
    "decoder_utilization_ratio": ("gauge", "Video decoder utilisation, 0..1.", []),
    "nvlink_links": ("gauge", "Number of NVLink links.", []),
    "nvlink_transmit_bytes": ("counter", "NVLink data sent, per link (a failing link pauses).", ["link"]),
    "nvlink_receive_bytes": ("counter", "NVLink data received, per link.", ["link"]),
    "nvlink_errors": (
        "counter",
        "NVLink errors summed over links, by type (crc_flit, crc_data, replay, recovery).",
        ["type"],
    ),
    "process_memory_used_bytes": (
        "gauge",
        "GPU memory used by the processes of one name in one container (gpu_instance set in MIG mode).",
        PROCESS_LABELS,
    ),
    "mig_mode": ("gauge", "Current MIG mode (1 enabled, 0 disabled).", []),
    "mig_mode_pending": ("gauge", "Pending MIG mode (applies after a GPU reset).", []),
    "mig_memory_total_bytes": ("gauge", "Memory of a MIG device.", MIG_LABELS),
    "mig_memory_used_bytes": ("gauge", "Used memory of a MIG device (total minus free).", MIG_LABELS),
    "query_unsupported": (
        "gauge",
        "1 for each NVML query this GPU, driver or caller refused as not supported (e.g. utilization in MIG mode, "
        "processes of a MIG GPU without privileges): what is missing, and why, instead of silence.",
        ["query"],
    ),
    "xid_errors": (
        "counter",
        "XID errors reported by NVML events, by XID code and GPU instance (MIG; empty otherwise).",
        ["xid", "gpu_instance"],
    ),
    "xid_last_code": ("gauge", "The last XID code NVML reported for the GPU since the exporter started (0: none).", []),
    "xid_events_watched": ("gauge", "Whether XID events of this GPU are being watched (1) or not (0).", []),
    "profiling_supported": ("gauge", "Whether NVML GPM profiling metrics are available for this GPU (1) or not.", []),
    **{
        name: ("gauge", f"{text}, {_RATIO}.", [])
        for name, text in (
            ("graphics_active_ratio", "Fraction of time the graphics or compute engine was active"),
            ("sm_active_ratio", "Fraction of SMs busy (averaged over SMs and time)"),
            ("sm_occupancy_ratio", "Resident warps relative to the maximum the SMs can hold"),
            ("tensor_active_ratio", "Fraction of time the tensor pipes were active"),
            ("dram_active_ratio", "Fraction of the memory bandwidth used"),
            ("fp64_active_ratio", "Fraction of time the FP64 pipes were active"),
            ("fp32_active_ratio", "Fraction of time the FP32 pipes were active"),
            ("fp16_active_ratio", "Fraction of time the FP16 pipes were active"),
        )
    },
}
# the GPM metrics per MIG GPU instance, same help
for _name in [n for n in METRICS if n.endswith("_active_ratio") or n == "sm_occupancy_ratio"]:
    METRICS["mig_" + _name] = ("gauge", METRICS[_name][1].replace("GPM", "GPM for this GPU instance"), MIG_LABELS)

#: families without GPU labels
GLOBAL_METRICS: dict[str, tuple[str, str, list[str]]] = {
    "info": ("gauge", "NVML driver information (always 1).", ["driver_version", "cuda_version"]),
    "devices": ("gauge", "Number of GPUs NVML reports.", []),
    "profiling_sample_seconds": (
        "gauge",
        "Time the last round of GPM samples and metric computations took, all GPUs and GPU instances.",
        [],
    ),
}


class Families:
    """Collects metric families lazily, in the table's order."""

    def __init__(self, label_names: dict[str, list[str]] | None = None) -> None:
        self._families: dict[str, Metric] = {}
        self._label_names = label_names or {}

    def add(self, name: str, labels: list[str], value: float) -> None:
        key = name.removesuffix("_total")
        fam = self._families.get(key)
        if fam is None:
            kind, doc, extra = METRICS.get(key) or GLOBAL_METRICS[key]
            if key in self._label_names:
                names = self._label_names[key]
            elif key in GLOBAL_METRICS:
                names = extra
            else:
                names = extra if extra and extra[0] == "gpu" else [*GPU_LABELS, *extra]
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fam = cls(PREFIX + key, doc, labels=names)
            self._families[key] = fam
        fam.add_metric(labels, value)  # type: ignore[attr-defined]

    def declare(self, name: str) -> None:
        """Serve the family even when empty (``up`` with no GPU left)."""
        if name not in self._families:
            _kind, doc, extra = METRICS[name]
            self._families[name] = GaugeMetricFamily(PREFIX + name, doc, labels=[*GPU_LABELS, *extra])

    def all(self) -> list[Metric]:
        return list(self._families.values())

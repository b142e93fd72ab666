"""What each GPU model and driver generation supports: one table for the simulation backend and the tests' NVML double.

The simulation (:mod:`llm_monitor_exporters.gpu.nvml_simulation`) refuses what a model or driver does not support
with the same NotSupported the real NVML gives, and the C test double (``tests/nvml_double``) is generated from this
table, so the simulation is never kinder than the double on the same profile. Figures are what NVML reports on these
boards (``nvidia-smi -q``): memory in MiB as NVML counts it, limits from the boards' datasheets.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuModel:
    name: str
    architecture: str  # pascal, volta, ampere, ada, hopper
    memory_mib: int
    reserved_mib: int
    power_limit_w: float
    idle_power_w: float
    sm_max_mhz: int
    sm_idle_mhz: int
    mem_max_mhz: int
    nvlink_links: int
    nvlink_gbps_per_link: float  # GB/s per direction
    pcie_gbps: float  # GB/s per direction
    fan: bool
    hbm: bool  # HBM boards report a memory temperature
    mig: bool
    gpm: bool  # GPU performance monitoring (Hopper and newer)
    energy_counter: bool  # nvmlDeviceGetTotalEnergyConsumption (Volta and newer)
    row_remapping: bool  # Ampere and newer; older boards retire pages instead
    encoders: bool
    temp_shutdown_c: int
    temp_slowdown_c: int
    temp_gpu_max_c: int
    temp_mem_max_c: int  # 0: not reported
    #: MIG layout when MIG mode is on: (slot, gpu instance id, profile, memory MiB); slots absent are empty
    mig_layout: tuple[tuple[int, int, str, int], ...] = ()
    max_mig_devices: int = 0


@dataclass(frozen=True)
class DriverGeneration:
    version: str
    cuda: int  # as nvmlSystemGetCudaDriverVersion reports it, e.g. 12040
    memory_v2: bool  # nvmlDeviceGetMemoryInfo_v2 (R510+); v1 "used" includes the reserved memory
    processes_v3: bool  # nvmlDevice*RunningProcesses_v3 (R510+)
    clock_event_reasons: bool  # nvmlDeviceGetCurrentClocksEventReasons (R535+); before: ...ThrottleReasons
    pcie_byte_counters: bool  # NVML_FI_DEV_PCIE_COUNT_TX/RX_BYTES field values (R535+)
    gpm: bool  # nvmlGpm* entry points (R520+)
    #: symbols the library of this generation does not export at all
    missing_symbols: tuple[str, ...] = field(default=())


MODELS: dict[str, GpuModel] = {
    m.name: m
    for m in (
        GpuModel(
            "NVIDIA H100 80GB HBM3", "hopper", 81559, 553, 700, 72, 1980, 345, 2619, 18, 25, 64,
            fan=False, hbm=True, mig=True, gpm=True, energy_counter=True, row_remapping=True, encoders=True,
            temp_shutdown_c=92, temp_slowdown_c=89, temp_gpu_max_c=87, temp_mem_max_c=95,
            mig_layout=((0, 1, "3g.40gb", 40448), (1, 2, "2g.20gb", 20096), (3, 5, "1g.10gb", 9856)),
            max_mig_devices=7,
        ),
        GpuModel(
            "NVIDIA H200", "hopper", 143771, 569, 700, 76, 1980, 345, 3201, 18, 25, 64,
            fan=False, hbm=True, mig=True, gpm=True, energy_counter=True, row_remapping=True, encoders=True,
            temp_shutdown_c=92, temp_slowdown_c=89, temp_gpu_max_c=87, temp_mem_max_c=95,
            mig_layout=((0, 1, "3g.71gb", 71424), (1, 2, "2g.35gb", 35584)),
            max_mig_devices=7,
        ),
        GpuModel(
            "NVIDIA A100-SXM4-80GB", "ampere", 81920, 491, 400, 56, 1410, 210, 1593, 12, 25, 32,
            fan=False, hbm=True, mig=True, gpm=False, energy_counter=True, row_remapping=True, encoders=False,
            temp_shutdown_c=92, temp_slowdown_c=89, temp_gpu_max_c=87, temp_mem_max_c=95,
            # slots 0, 2 and 5 used, the others empty: NVML answers NOT_FOUND for the gaps
            mig_layout=((0, 1, "3g.40gb", 40192), (2, 5, "2g.20gb", 19968), (5, 13, "1g.10gb", 9728)),
            max_mig_devices=7,
        ),
        GpuModel(
            "NVIDIA L40S", "ada", 46068, 491, 350, 36, 2520, 210, 9001, 0, 0, 32,
            fan=False, hbm=False, mig=False, gpm=False, energy_counter=True, row_remapping=True, encoders=True,
            temp_shutdown_c=98, temp_slowdown_c=95, temp_gpu_max_c=88, temp_mem_max_c=0,
        ),
        GpuModel(
            "NVIDIA RTX 6000 Ada Generation", "ada", 49140, 491, 300, 20, 2505, 210, 10001, 0, 0, 32,
            fan=True, hbm=False, mig=False, gpm=False, energy_counter=True, row_remapping=True, encoders=True,
            temp_shutdown_c=98, temp_slowdown_c=95, temp_gpu_max_c=88, temp_mem_max_c=0,
        ),
        GpuModel(
            "Tesla P100-PCIE-16GB", "pascal", 16280, 0, 250, 26, 1328, 405, 715, 0, 0, 16,
            fan=False, hbm=True, mig=False, gpm=False, energy_counter=False, row_remapping=False, encoders=False,
            temp_shutdown_c=85, temp_slowdown_c=82, temp_gpu_max_c=80, temp_mem_max_c=0,
        ),
    )
}  # fmt: skip

_CURRENT = DriverGeneration(
    "550.127.05", 12040, memory_v2=True, processes_v3=True, clock_event_reasons=True, pcie_byte_counters=True,
    gpm=True,
)  # fmt: skip
_R470 = DriverGeneration(
    "470.256.02", 11040, memory_v2=False, processes_v3=False, clock_event_reasons=False, pcie_byte_counters=False,
    gpm=False,
    missing_symbols=(
        "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleFree", "nvmlGpmSampleGet",
        "nvmlGpmMigSampleGet", "nvmlGpmMetricsGet",
    ),
)  # fmt: skip

DRIVERS: dict[str, DriverGeneration] = {d.version: d for d in (_CURRENT, _R470)}


@dataclass(frozen=True)
class Profile:
    """A host as the tests and the simulation see it: a GPU model on a driver, MIG on or off."""

    name: str
    model: str
    driver: str
    mig_enabled: bool = False
    description: str = ""


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("h200", "NVIDIA H200", "550.127.05", description="H200 on a recent driver, GPM, 18 NVLinks"),
        Profile("h100_nvlink", "NVIDIA H100 80GB HBM3", "550.127.05", description="H100 SXM with 18 NVLinks"),
        Profile("h100_mig", "NVIDIA H100 80GB HBM3", "550.127.05", mig_enabled=True,
                description="H100 in MIG mode: GPM per GPU instance"),
        Profile("a100_mig", "NVIDIA A100-SXM4-80GB", "550.127.05", mig_enabled=True,
                description="A100 in MIG mode with gaps in the MIG slots, no GPM"),
        Profile("l40s", "NVIDIA L40S", "550.127.05", description="L40S (PCIe, no NVLink, no MIG)"),
        Profile("pascal_470", "Tesla P100-PCIE-16GB", "470.256.02",
                description="Pascal on driver 470: no _v3 symbols, no v2 memory, no GPM, retired pages"),
    )
}  # fmt: skip


def resolve_model(name: str) -> GpuModel:
    """Exact model name, or a unique case-insensitive substring such as ``H100``, ``A100``, ``P100``."""
    if name in MODELS:
        return MODELS[name]
    matches = [m for key, m in MODELS.items() if name.lower() in key.lower()]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"unknown GPU model {name!r} (known: {', '.join(MODELS)})")


def resolve_driver(version: str) -> DriverGeneration:
    """A driver version of the table, or the generation a version belongs to (R510 and newer: current)."""
    if version in DRIVERS:
        return DRIVERS[version]
    try:
        major = int(version.split(".", maxsplit=1)[0])
    except ValueError:
        raise ValueError(f"unknown driver version {version!r} (known: {', '.join(DRIVERS)})") from None
    base = _CURRENT if major >= 510 else _R470
    return DriverGeneration(**{**base.__dict__, "version": version})

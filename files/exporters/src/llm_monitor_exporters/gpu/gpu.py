"""GPU exporter: NVML metrics per GPU (``llm_monitor_gpu_*``; the table is in :mod:`.metrics`).

Every ``interval`` the collector reads the fast queries of each GPU. Blocking or slow NVML work runs on helper
threads of the current NVML *session* and only publishes results: XID events (``nvmlEventSetWait`` with a timeout)
and GPM profiling samples. A session is one ``nvmlInit`` .. ``nvmlShutdown``: when NVML as a whole fails (driver
reloaded, UNKNOWN, UNINITIALIZED) or a GPU stays lost or needs a reset, the session is closed (helpers stopped, event
set and samples freed, NVML shut down) and a new one counts the devices again and takes fresh handles.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.core import Metric

from llm_monitor_exporters.core.collector import Collector, Snapshot
from llm_monitor_exporters.core.config import opt
from llm_monitor_exporters.core.procfs import process_container_id, process_name, sees_host_pids
from llm_monitor_exporters.gpu.metrics import PROCESS_LABELS, Families
from llm_monitor_exporters.gpu.nvml import (
    CLOCK_EVENT_REASONS,
    GPM_METRICS,
    TEMPERATURE_LIMITS,
    VIOLATION_POLICIES,
    NvmlBackend,
    NvmlDriverFailure,
    NvmlError,
    NvmlGpuUnavailable,
    NvmlLibraryNotFound,
    NvmlNotSupported,
    NvmlTimeout,
)
from llm_monitor_exporters.gpu.nvml_simulation import SCENARIOS

log = logging.getLogger(__name__)
#: XID codes pre-initialised at 0 per GPU so that increase() catches their first occurrence.
CRITICAL_XIDS = (48, 62, 64, 74, 79, 94, 95, 119, 120)
#: consecutive failed event waits after which a GPU's XID events count as not watched
XID_WAIT_FAILURES = 3
T = TypeVar("T")


@dataclass
class SimulationConfig:
    gpus: int = opt(8, minimum=1, help="number of simulated GPUs")
    model: str = opt("NVIDIA H100 80GB HBM3", help="H100, H200, A100, L40S, P100 or an exact model name")
    driver: str = opt("550.127.05", help="driver version; before 510, NVML lacks memory v2, processes v3 and GPM")
    scenario: str = opt("busy", choices=SCENARIOS, help="how the values evolve")
    mig_devices: int = opt(0, minimum=0, help="MIG devices per GPU from the model's MIG layout (0: MIG off)")


@dataclass
class GpuConfig:
    backend: str = opt("nvml", choices=("nvml", "simulation"), help="nvml (real) or simulation")
    xid_events: bool = opt(True, help="watch NVML XID critical error events")
    processes: bool = opt(True, help="GPU memory per process name and container")
    process_pid_label: bool = opt(False, help="also label process memory by pid (one series per process: unbounded)")
    nvlink: bool = opt(True, help="NVLink counters per link (field values)")
    mig: bool = opt(True, help="MIG mode, MIG devices, their memory and processes")
    profiling: bool = opt(True, help="GPM profiling metrics (SM, tensor, DRAM activity) on Hopper and newer")
    profiling_interval: float = opt(5.0, minimum=0.1, help="seconds between GPM samples (the metrics' window)")
    nvml_retry_interval: float = opt(60.0, minimum=1, help="most seconds between NVML init retries")
    proc_root: str = opt("/proc", help="procfs of the host's PID namespace (process names and container ids)")
    pcie_interval: float = opt(0.0, minimum=0, help="deprecated, ignored: PCIe comes from NVML's byte counters now")
    simulation: SimulationConfig = opt(factory=SimulationConfig, help="simulation backend settings")


@dataclass
class _Gpu:
    index: int
    handle: Any
    labels: list[str]  # gpu, uuid, name, pci_bus_id
    key: int = 0  # backend.handle_key(handle)


@dataclass
class _Session:
    """What one nvmlInit holds: handles, helper threads, and what the helpers publish."""

    gpus: list[_Gpu]
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: set by a helper thread that met a driver failure: the collector reopens NVML
    failed: str = ""
    xid_registered: set[int] = field(default_factory=set)
    xid_healthy: bool = True
    xid_failures: int = 0  # failed event waits; the collector reports the new ones each cycle
    xid_failures_reported: int = 0
    #: (gpu index, gpu instance or None) -> (metric id -> percent, monotonic time published)
    gpm: dict[tuple[int, int | None], tuple[dict[int, float], float]] = field(default_factory=dict)
    gpm_supported: dict[int, bool] = field(default_factory=dict)
    gpm_seconds: float | None = None
    #: gpu index -> MIG labels of each GPU instance (for the GPM series)
    mig_labels: dict[tuple[int, int], list[str]] = field(default_factory=dict)


class GpuCollector(Collector):
    name = "gpu"
    error_kinds = ("nvml_init", "nvml_query", "nvml_driver", "gpu_lost", "gpu_reset_required", "xid_wait")
    upstream_names = ("nvml",)

    def __init__(self, config: GpuConfig, backend: NvmlBackend | None = None) -> None:
        self.config = config
        self._backend = backend
        self._proc_root = Path(config.proc_root)
        self._session: _Session | None = None
        self._known: list[list[str]] = []  # labels of the GPUs last seen, served with up 0 while NVML is down
        self._down: dict[str, str] = {}  # uuid or index -> reason, for one log line per outage
        self._next_init = 0.0
        self._init_failures = 0
        self._reopen_at = 0.0
        self._driver = ""
        self._cuda = ""
        self._lock = threading.Lock()
        self._xids: dict[tuple[str, int, str], int] = {}  # (uuid, xid, gpu instance) -> count, across sessions
        self._xid_last: dict[str, int] = {}
        self._logged: set[str] = set()
        self._host_pids = sees_host_pids(self._proc_root)
        if self._host_pids is False:
            log.warning(
                "%s is the procfs of this exporter's own PID namespace, but NVML reports the host's PIDs: process "
                "names and container ids stay empty. Mount the host's /proc (e.g. at /host/proc) and set "
                "gpu.proc_root to it.",
                self._proc_root,
            )

    # --- sessions ------------------------------------------------------------------------------
    def _make_backend(self) -> NvmlBackend:
        if self._backend is None:
            from llm_monitor_exporters.gpu.nvml import PynvmlBackend  # noqa: PLC0415

            self._backend = PynvmlBackend()
        return self._backend

    def _log_once(self, key: str, level: int, msg: str, *args: object) -> None:
        """The first time at ``level``, after that at debug: a broken GPU must not flood the journal."""
        log.log(level if key not in self._logged else logging.DEBUG, msg, *args)
        self._logged.add(key)

    def _init_failed(self, errors: dict[str, int], exc: BaseException, initialised: bool) -> None:
        errors["nvml_init"] = errors.get("nvml_init", 0) + 1
        if initialised:
            try:
                self._make_backend().shutdown()  # the init counted: balance it, or every retry leaks one
            except NvmlError:
                pass
        self._init_failures += 1
        delay = min(self.config.nvml_retry_interval, 2.0 ** (self._init_failures - 1))
        self._next_init = time.monotonic() + delay
        if isinstance(exc, NvmlLibraryNotFound):
            what = "NVML library not found (%s): no NVIDIA driver on this host?"
        else:
            what = "NVML initialisation failed: %s."
        self._log_once(
            "init", logging.ERROR, what + ' Serving llm_monitor_exporter_up{upstream="nvml"} 0; retrying within %.0fs',
            exc, self.config.nvml_retry_interval,
        )  # fmt: skip

    def _open(self, errors: dict[str, int]) -> _Session | None:
        now = time.monotonic()
        if now < self._next_init:
            return None
        initialised = False
        try:
            backend = self._make_backend()
            backend.init()
            initialised = True
            self._driver = backend.driver_version()
            try:
                cuda = backend.cuda_driver_version()
                self._cuda = f"{cuda // 1000}.{cuda % 1000 // 10}"
            except NvmlNotSupported:
                self._cuda = ""
            count = backend.device_count()
            gpus = [self._describe(backend, index) for index in range(count)]
        except (NvmlError, ImportError) as exc:
            self._init_failed(errors, exc, initialised)
            return None
        except Exception as exc:  # a broken binding must not stop the exporter
            self._init_failed(errors, exc, initialised)
            return None
        self._init_failures = 0
        self._logged.discard("init")
        session = _Session(gpus=gpus)
        self._known = [g.labels for g in gpus]
        with self._lock:
            for gpu in gpus:
                if gpu.labels[1]:
                    self._xid_last.setdefault(gpu.labels[1], 0)
        log.info("NVML initialised: driver %s, CUDA %s, %d GPU(s)", self._driver, self._cuda or "?", count)
        self._session = session
        if self.config.xid_events:
            self._spawn(session, "gpu-xid", self._xid_loop)
        if self.config.profiling:
            self._spawn(session, "gpu-gpm", self._gpm_loop)
        return session

    def _describe(self, b: NvmlBackend, index: int) -> _Gpu:
        """Fetch the handle and static labels of one GPU (handles are expensive: kept for the session)."""
        labels = [str(index), "", "", ""]
        handle: Any = None
        try:
            handle = b.handle(index)
            labels = [str(index), b.uuid(handle), b.name(handle), b.pci_bus_id(handle)]
        except NvmlDriverFailure:
            raise
        except NvmlError as exc:
            self._log_once(f"identity-{index}", logging.WARNING, "GPU %d: cannot read identity: %s", index, exc)
            handle = handle if isinstance(exc, NvmlGpuUnavailable) else None
        key = b.handle_key(handle) if handle is not None else 0
        return _Gpu(index=index, handle=handle, labels=labels, key=key)

    def _spawn(self, session: _Session, name: str, target: Callable[[_Session], None]) -> None:
        thread = threading.Thread(target=target, args=(session,), name=name, daemon=True)
        thread.start()
        session.threads.append(thread)

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        session.stop.set()
        for thread in session.threads:
            thread.join(timeout=5)  # the helpers free their event set and samples on the way out
        try:
            self._make_backend().shutdown()
        except NvmlError as exc:
            log.debug("nvmlShutdown: %s", exc)

    def close(self) -> None:
        self._close_session()

    # --- helper threads ------------------------------------------------------------------------
    def _xid_loop(self, s: _Session) -> None:
        b = self._make_backend()
        try:
            event_set = b.xid_event_set()
        except NvmlError as exc:
            self._log_once("xid-set", logging.WARNING, "XID events unavailable: %s", exc)
            return
        try:
            for gpu in s.gpus:
                if gpu.handle is None:
                    continue
                try:
                    b.xid_register(event_set, gpu.handle)
                    s.xid_registered.add(gpu.index)
                except NvmlNotSupported:
                    continue
                except NvmlError as exc:  # this GPU only: the others are still watched
                    self._log_once(
                        f"xid-register-{gpu.labels[1]}", logging.WARNING, "GPU %d: XID events not watched: %s",
                        gpu.index, exc,
                    )  # fmt: skip
            if not s.xid_registered:
                return
            with self._lock:
                for gpu in s.gpus:
                    if gpu.index in s.xid_registered:
                        for xid in CRITICAL_XIDS:
                            self._xids.setdefault((gpu.labels[1], xid, ""), 0)
            by_key = {g.key: g for g in s.gpus if g.key}
            failures = 0
            while not s.stop.is_set():
                try:
                    event = b.xid_wait(event_set, 500)
                except NvmlTimeout:
                    failures, s.xid_healthy = 0, True
                    continue
                except NvmlDriverFailure as exc:
                    s.xid_healthy, s.failed = False, f"XID event wait: {exc}"
                    return
                except NvmlError as exc:
                    failures += 1
                    s.xid_failures += 1
                    if failures >= XID_WAIT_FAILURES:
                        s.xid_healthy = False
                        self._log_once("xid-wait", logging.ERROR, "XID event wait keeps failing: %s", exc)
                    s.stop.wait(1.0)
                    continue
                failures, s.xid_healthy = 0, True
                hit = by_key.get(event.device_key)
                if hit is None:
                    log.warning("XID %d for a device this session does not know", event.xid)
                    continue
                gi = "" if event.gpu_instance_id is None else str(event.gpu_instance_id)
                log.warning(
                    "GPU %d (%s): XID %d%s", hit.index, hit.labels[1], event.xid,
                    f" on GPU instance {gi}, compute instance {event.compute_instance_id}" if gi else "",
                )  # fmt: skip
                with self._lock:
                    key = (hit.labels[1], event.xid, gi)
                    self._xids[key] = self._xids.get(key, 0) + 1
                    self._xid_last[hit.labels[1]] = event.xid
        finally:
            try:
                b.free_event_set(event_set)
            except NvmlError:
                pass

    def _gpm_targets(self, b: NvmlBackend, s: _Session) -> list[tuple[_Gpu, int | None]]:
        targets: list[tuple[_Gpu, int | None]] = []
        for gpu in s.gpus:
            if gpu.handle is None:
                continue
            try:
                supported = b.gpm_supported(gpu.handle)
            except NvmlDriverFailure:
                raise
            except NvmlError:
                supported = False
            s.gpm_supported[gpu.index] = supported
            if not supported:
                continue
            targets.append((gpu, None))
            if not self.config.mig:
                continue
            try:
                if b.mig_mode(gpu.handle)[0]:
                    for slot, mh in b.mig_handles(gpu.handle):
                        try:
                            mig = b.mig_device(slot, mh)
                        except NvmlError:
                            continue
                        s.mig_labels[(gpu.index, mig.gpu_instance_id)] = [
                            gpu.labels[0], gpu.labels[1], mig.uuid, str(mig.gpu_instance_id),
                            str(mig.compute_instance_id), mig.profile,
                        ]  # fmt: skip
                        targets.append((gpu, mig.gpu_instance_id))
            except NvmlDriverFailure:
                raise
            except NvmlError:
                pass
        return targets

    def _gpm_loop(self, s: _Session) -> None:
        b = self._make_backend()
        previous: dict[tuple[int, int | None], Any] = {}
        ids = list(GPM_METRICS)
        try:
            targets = self._gpm_targets(b, s)
            while targets and not s.stop.is_set():
                t0 = time.perf_counter()
                for gpu, gi in targets:
                    key = (gpu.index, gi)
                    try:
                        sample = b.gpm_sample(gpu.handle, gi)
                    except NvmlDriverFailure as exc:
                        s.failed = f"GPM sample: {exc}"
                        return
                    except NvmlError as exc:
                        self._log_once(f"gpm-{key}", logging.WARNING, "GPU %d: GPM sample failed: %s", gpu.index, exc)
                        with s.lock:
                            s.gpm.pop(key, None)
                        continue
                    earlier = previous.pop(key, None)
                    previous[key] = sample
                    if earlier is None:
                        continue
                    try:
                        values = b.gpm_metrics(earlier, sample, ids)
                    except NvmlError as exc:
                        self._log_once(f"gpm-m-{key}", logging.WARNING, "GPU %d: GPM metrics: %s", gpu.index, exc)
                        values = {}
                    finally:
                        b.gpm_free(earlier)
                    with s.lock:
                        if values:
                            s.gpm[key] = (values, time.monotonic())
                        else:
                            s.gpm.pop(key, None)
                s.gpm_seconds = time.perf_counter() - t0
                s.stop.wait(self.config.profiling_interval)
        except NvmlDriverFailure as exc:
            s.failed = f"GPM: {exc}"
        finally:
            for sample in previous.values():
                b.gpm_free(sample)

    # --- collection ----------------------------------------------------------------------------
    def _down_snapshot(self, errors: dict[str, int]) -> Snapshot:
        f = Families()
        f.declare("up")
        for labels in self._known:
            f.add("up", labels, 0)
        return Snapshot(families=f.all(), upstreams={"nvml": False}, errors=errors)

    def collect_snapshot(self) -> Snapshot:
        errors: dict[str, int] = {}
        session = self._session
        if session is not None and session.failed:
            self._driver_failed(errors, session.failed)
            session = None
        if session is None:
            session = self._open(errors)
        if session is None:
            return self._down_snapshot(errors)
        try:
            families = self._collect(session, errors)
        except NvmlDriverFailure as exc:
            self._driver_failed(errors, str(exc))
            return self._down_snapshot(errors)
        return Snapshot(families=families, upstreams={"nvml": True}, errors=errors)

    def _driver_failed(self, errors: dict[str, int], why: str) -> None:
        errors["nvml_driver"] = errors.get("nvml_driver", 0) + 1
        self._log_once("driver", logging.ERROR, "NVML failed as a whole (%s): shutting it down, re-initialising", why)
        self._close_session()
        self._next_init = 0.0  # try again at once, then back off

    def _collect(self, s: _Session, errors: dict[str, int]) -> list[Metric]:
        b = self._make_backend()
        f = Families({"process_memory_used_bytes": [*PROCESS_LABELS, "pid"]} if self.config.process_pid_label else {})
        f.add("info", [self._driver, self._cuda], 1)
        f.add("devices", [], len(s.gpus))
        f.declare("up")
        down = 0
        for gpu in s.gpus:
            if gpu.handle is None or not gpu.labels[1]:
                refreshed = self._describe(b, gpu.index)  # identity never read: cheap to retry
                gpu.handle, gpu.labels, gpu.key = refreshed.handle, refreshed.labels, refreshed.key
            unsupported: list[str] = []
            try:
                if gpu.handle is None:
                    raise NvmlGpuUnavailable("no handle")
                self._collect_gpu(b, s, gpu, f, self._getter(errors, unsupported))
                f.add("up", gpu.labels, 1)
                if self._down.pop(gpu.labels[1] or gpu.labels[0], None) is not None:
                    log.info("GPU %d answers again", gpu.index)
            except NvmlGpuUnavailable as exc:
                down += 1
                f.add("up", gpu.labels, 0)
                kind = "gpu_reset_required" if exc.reason == "reset_required" else "gpu_lost"
                errors[kind] = errors.get(kind, 0) + 1
                key = gpu.labels[1] or gpu.labels[0]
                if key not in self._down:
                    log.error("GPU %d (%s) does not answer (%s): %s", gpu.index, gpu.labels[1], exc.reason, exc)
                    self._down[key] = exc.reason
                continue
            for query in unsupported:
                f.add("query_unsupported", [*gpu.labels, query], 1)
        self._add_helper_results(s, f)
        new_failures = s.xid_failures - s.xid_failures_reported
        if new_failures:
            errors["xid_wait"] = new_failures
            s.xid_failures_reported += new_failures
        # a GPU that stays lost or needs a reset comes back only with new handles: reopen NVML now and then
        now = time.monotonic()
        if down and self._reopen_at == 0.0:
            self._reopen_at = now + self.config.nvml_retry_interval
        elif not down:
            self._reopen_at = 0.0
        elif now >= self._reopen_at:
            log.info("%d GPU(s) still not answering: re-initialising NVML to count the devices again", down)
            self._reopen_at = 0.0
            self._close_session()
        return f.all()

    def _getter(self, errors: dict[str, int], unsupported: list[str]) -> Callable[[str, Callable[[], T]], T | None]:
        def get(query: str, fn: Callable[[], T]) -> T | None:
            try:
                return fn()
            except NvmlNotSupported:
                if query not in unsupported:
                    unsupported.append(query)
                return None
            except (NvmlGpuUnavailable, NvmlDriverFailure):
                raise
            except Exception as exc:  # one failing query never blanks the others
                errors["nvml_query"] = errors.get("nvml_query", 0) + 1
                self._log_once(f"query-{query}-{type(exc).__name__}", logging.WARNING, "NVML %s: %s", query, exc)
                return None

        return get

    def _add_helper_results(self, s: _Session, f: Families) -> None:
        with self._lock:
            xids = dict(self._xids)
            last = dict(self._xid_last)
        by_uuid = {g.labels[1]: g for g in s.gpus if g.labels[1]}
        for (uuid, code, gi), count in sorted(xids.items()):
            gpu = by_uuid.get(uuid)
            if gpu is not None:
                f.add("xid_errors_total", [*gpu.labels, str(code), gi], count)
        for gpu in s.gpus:
            if gpu.labels[1] in last:
                f.add("xid_last_code", gpu.labels, last[gpu.labels[1]])
            if self.config.xid_events:
                watched = gpu.index in s.xid_registered and s.xid_healthy and gpu.labels[1] not in self._down
                f.add("xid_events_watched", gpu.labels, 1 if watched else 0)
        if not self.config.profiling:
            return
        now = time.monotonic()
        fresh_for = 3 * self.config.profiling_interval + 1
        with s.lock:
            gpm = dict(s.gpm)
            supported = dict(s.gpm_supported)
        for gpu in s.gpus:
            if gpu.index in supported:
                f.add("profiling_supported", gpu.labels, 1 if supported[gpu.index] else 0)
        for (index, instance), (values, at) in sorted(gpm.items(), key=lambda kv: (kv[0][0], kv[0][1] or -1)):
            if now - at > fresh_for or index >= len(s.gpus) or s.gpus[index].labels[1] in self._down:
                continue  # stale: better no value than an old one
            labels = s.gpus[index].labels if instance is None else s.mig_labels.get((index, instance))
            if labels is None:
                continue
            for metric_id, percent in values.items():
                name = GPM_METRICS[metric_id]
                f.add(name if instance is None else "mig_" + name, labels, percent / 100)
        if s.gpm_seconds is not None:
            f.add("profiling_sample_seconds", [], s.gpm_seconds)

    def _collect_gpu(
        self, b: NvmlBackend, s: _Session, gpu: _Gpu, f: Families, get: Callable[[str, Callable[[], Any]], Any]
    ) -> None:
        h, lb = gpu.handle, gpu.labels
        util = get("utilization", lambda: b.utilization(h))
        if util is not None:
            f.add("utilization_ratio", lb, util[0] / 100)
            f.add("memory_controller_utilization_ratio", lb, util[1] / 100)
        mem = get("memory", lambda: b.memory_info(h))
        if mem is not None:
            f.add("memory_total_bytes", lb, mem.total)
            f.add("memory_used_bytes", lb, mem.used)
            f.add("memory_free_bytes", lb, mem.free)
            if mem.reserved is not None:
                f.add("memory_reserved_bytes", lb, mem.reserved)
        simple: tuple[tuple[str, str, Callable[[], float | None], float], ...] = (
            ("temperature", "temperature_celsius", lambda: b.temperature(h), 1),
            ("memory_temperature", "memory_temperature_celsius", lambda: b.memory_temperature(h), 1),
            ("power", "power_watts", lambda: b.power_usage_mw(h), 1000),
            ("power_limit", "power_limit_watts", lambda: b.power_limit_mw(h), 1000),
            ("energy", "energy_joules_total", lambda: b.total_energy_mj(h), 1000),
            ("fan_speed", "fan_speed_ratio", lambda: b.fan_speed_percent(h), 100),
            ("pcie_replay", "pcie_replay_errors_total", lambda: b.pcie_replay_errors(h), 1),
            ("encoder_utilization", "encoder_utilization_ratio", lambda: b.encoder_utilization(h), 100),
            ("decoder_utilization", "decoder_utilization_ratio", lambda: b.decoder_utilization(h), 100),
        )
        for query, metric, fn, divisor in simple:
            value = get(query, fn)
            if value is not None:
                f.add(metric, lb, value / divisor)
        for limit, kind in TEMPERATURE_LIMITS.items():
            value = get(f"temperature_limit_{limit}", partial(b.temperature_limit, h, kind))
            if value is not None and value > 0:
                f.add("temperature_limit_celsius", [*lb, limit], value)
        for clock, label in (("sm", "sm"), ("mem", "memory")):
            cur = get("clocks", partial(b.clock_mhz, h, clock))
            if cur is not None:
                f.add("clock_hertz", [*lb, label], cur * 1e6)
            top = get("clocks", partial(b.max_clock_mhz, h, clock))
            if top is not None:
                f.add("clock_max_hertz", [*lb, label], top * 1e6)
        reasons = get("clock_event_reasons", lambda: b.clock_event_reasons(h))
        if reasons is not None:
            for reason, bit in CLOCK_EVENT_REASONS.items():
                f.add("clock_event_active", [*lb, reason], 1 if reasons & bit else 0)
        for reason, policy in VIOLATION_POLICIES.items():
            ns = get(f"violation_{reason}", partial(b.violation_ns, h, policy))
            if ns is not None:
                f.add("clock_throttle_seconds_total", [*lb, reason], ns / 1e9)
        pstate = get("performance_state", lambda: b.pstate(h))
        if pstate is not None and pstate != 32:  # 32 = NVML_PSTATE_UNKNOWN
            f.add("performance_state", lb, pstate)
        for ecc_type, unc in (("corrected", False), ("uncorrected", True)):
            value = get("ecc", partial(b.ecc_total, h, unc))
            if value is not None:
                f.add("ecc_errors_total", [*lb, ecc_type], value)
            value = get("ecc_volatile", partial(b.ecc_total, h, unc, volatile=True))
            if value is not None:
                f.add("ecc_volatile_errors_total", [*lb, ecc_type], value)
        rows = get("remapped_rows", lambda: b.remapped_rows(h))
        if rows is not None:
            f.add("remapped_rows", [*lb, "correctable"], rows[0])
            f.add("remapped_rows", [*lb, "uncorrectable"], rows[1])
            f.add("remapped_rows_pending", lb, 1 if rows[2] else 0)
            f.add("remapped_rows_failure", lb, 1 if rows[3] else 0)
        else:  # GPUs before Ampere retire pages instead
            for cause, double in (("single_bit_ecc", False), ("double_bit_ecc", True)):
                pages = get("retired_pages", partial(b.retired_pages, h, double))
                if pages is not None:
                    f.add("retired_pages", [*lb, cause], pages)
            pending = get("retired_pages", lambda: b.retired_pages_pending(h))
            if pending is not None:
                f.add("retired_pages_pending", lb, 1 if pending else 0)
        pcie = get("pcie_bytes", lambda: b.pcie_bytes(h))
        if pcie is not None:
            f.add("pcie_transmit_bytes_total", lb, pcie[0])
            f.add("pcie_receive_bytes_total", lb, pcie[1])
        if self.config.nvlink:
            nv = get("nvlink", lambda: b.nvlink(h))
            if nv is not None:
                f.add("nvlink_links", lb, nv.links)
                for link, count in sorted(nv.tx_bytes.items()):
                    f.add("nvlink_transmit_bytes_total", [*lb, str(link)], count)
                for link, count in sorted(nv.rx_bytes.items()):
                    f.add("nvlink_receive_bytes_total", [*lb, str(link)], count)
                for kind, count in sorted(nv.errors.items()):
                    f.add("nvlink_errors_total", [*lb, kind], count)
        mig_on = False
        if self.config.mig:
            mode = get("mig_mode", lambda: b.mig_mode(h))
            if mode is not None:
                f.add("mig_mode", lb, mode[0])
                f.add("mig_mode_pending", lb, mode[1])
                mig_on = bool(mode[0])
        if mig_on:
            self._collect_mig(b, gpu, f, get)
        elif self.config.processes:
            self._add_processes(f, lb, "", get("processes", lambda: b.processes(h)))

    def _collect_mig(
        self, b: NvmlBackend, gpu: _Gpu, f: Families, get: Callable[[str, Callable[[], Any]], Any]
    ) -> None:
        """Each MIG device on its own: one failing device does not drop the others."""
        lb = gpu.labels
        for slot, mh in get("mig_devices", lambda: b.mig_handles(gpu.handle)) or []:
            mig = get("mig_device", partial(b.mig_device, slot, mh))
            if mig is None:
                continue
            ml = [lb[0], lb[1], mig.uuid, str(mig.gpu_instance_id), str(mig.compute_instance_id), mig.profile]
            f.add("mig_memory_total_bytes", ml, mig.memory.total)
            f.add("mig_memory_used_bytes", ml, mig.memory.used)
            if self.config.processes:
                # the parent GPU's process list needs privileges in MIG mode; each MIG device's does not
                procs = get("mig_processes", partial(b.processes, mh))
                self._add_processes(f, lb, str(mig.gpu_instance_id), procs)

    def _add_processes(self, f: Families, lb: list[str], gpu_instance: str, procs: list[Any] | None) -> None:
        totals: dict[tuple[str, ...], int] = {}
        for proc in procs or []:
            if proc.used_memory is None:
                continue
            gi = gpu_instance or ("" if proc.gpu_instance_id is None else str(proc.gpu_instance_id))
            if self._host_pids is False:
                name = container = ""
            else:
                name = process_name(self._proc_root, proc.pid)
                container = process_container_id(self._proc_root, proc.pid)
            key: tuple[str, ...] = (lb[0], lb[1], gi, name, container)
            if self.config.process_pid_label:
                key = (*key, str(proc.pid))
            totals[key] = totals.get(key, 0) + proc.used_memory
        for key, used in sorted(totals.items()):
            f.add("process_memory_used_bytes", list(key), used)

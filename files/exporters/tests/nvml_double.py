"""The C NVML double (tests/nvml_double): build it, load it under pynvml, steer it.

:func:`build` compiles ``nvml_double/nvml_double.c`` with the ``models.h`` that ``nvml_double/gen_models.py``
generates from :mod:`llm_monitor_exporters.gpu.models`, once per driver generation ("current" for driver 550,
"r470"), into ``files/exporters/.cache/nvml_double/<variant>-<hash>/libnvidia-ml.so.1``. The r470 library does
not export the symbols driver 470 lacks (``DRIVERS["470.256.02"].missing_symbols``).

:meth:`NvmlDouble.load` loads the library by its absolute path with RTLD_GLOBAL before pynvml loads anything:
pynvml's own ``CDLL("libnvidia-ml.so.1")`` then finds it by its soname, so the real pynvml runs against the
double. Subprocesses find it through the normal library search with :meth:`NvmlDouble.env`.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import ClassVar

HERE = Path(__file__).resolve().parent
SOURCE_DIR = HERE / "nvml_double"
C_SOURCE = SOURCE_DIR / "nvml_double.c"
GENERATOR = SOURCE_DIR / "gen_models.py"
CACHE_DIR = HERE.parent / ".cache" / "nvml_double"
LIBRARY_NAME = "libnvidia-ml.so.1"
UNSET_ID = 0xFFFFFFFF
#: what ``nvml_double_counter`` answers for a name it does not know
_UNKNOWN_COUNTER = 2**64 - 1

_build_lock = threading.Lock()
_generator: ModuleType | None = None


def _gen_models() -> ModuleType:
    """``nvml_double/gen_models.py`` as a module (a directory named like this module cannot be a package)."""
    global _generator
    if _generator is None:
        spec = importlib.util.spec_from_file_location("nvml_double_gen_models", GENERATOR)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {GENERATOR}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _generator = module
    return _generator


def variants() -> dict[str, str]:
    """Build variant -> driver version: ``{"current": "550.127.05", "r470": "470.256.02"}``."""
    table: dict[str, str] = dict(_gen_models().variants())
    return table


#: compiler flags besides the variant's -D, the include directory, the output and the source
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-pthread", "-fvisibility=hidden",
          f"-Wl,-soname,{LIBRARY_NAME}"]  # fmt: skip


def compile_command(variant: str, source: Path, include_dir: Path, output: Path) -> list[str]:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found: the NVML double is a C library built by the tests (apt-get install gcc)")
    return [
        gcc,
        *CFLAGS,
        f"-DND_VARIANT_{variant.upper()}",
        "-I",
        str(include_dir),
        "-o",
        str(output),
        str(source),
        "-lm",
    ]


def build(variant: str = "current") -> Path:
    """The double's library for a driver generation, compiled unless the cache holds it for these sources."""
    known = variants()
    if variant not in known:
        raise ValueError(f"unknown NVML double variant {variant!r} (known: {', '.join(known)})")
    header = str(_gen_models().render())
    source = C_SOURCE.read_bytes()
    digest = hashlib.sha256()
    for part in (source, header.encode(), variant.encode(), GENERATOR.read_bytes(), " ".join(CFLAGS).encode()):
        digest.update(hashlib.sha256(part).digest())
    target_dir = CACHE_DIR / f"{variant}-{digest.hexdigest()[:16]}"
    library = target_dir / LIBRARY_NAME
    if library.is_file():
        return library
    with _build_lock:
        if library.is_file():
            return library
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{variant}-", dir=CACHE_DIR))
        try:
            (work / "models.h").write_text(header)
            res = subprocess.run(
                compile_command(variant, C_SOURCE, work, work / LIBRARY_NAME),
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            if res.returncode != 0:
                raise RuntimeError(f"building the NVML double ({variant}) failed:\n{res.stderr}")
            try:
                work.rename(target_dir)  # atomic; a parallel build that finished first wins
            except OSError:
                if not library.is_file():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return library


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_uint, c_char_p, c_ull = ctypes.c_int, ctypes.c_uint, ctypes.c_char_p, ctypes.c_ulonglong
    signatures: dict[str, tuple[type | None, list[type]]] = {
        "nvml_double_reset": (c_int, [c_char_p, c_uint]),
        "nvml_double_fail": (None, [c_char_p, c_int, c_int, c_int]),
        "nvml_double_lose_gpu": (None, [c_int]),
        "nvml_double_restore_gpu": (None, [c_int]),
        "nvml_double_xid": (None, [c_int, c_ull, c_uint, c_uint, c_int]),
        "nvml_double_fail_nvlink": (None, [c_int, c_int, c_int]),
        "nvml_double_driver_reload": (None, [c_int]),
        "nvml_double_set_gpu_count": (None, [c_uint]),
        "nvml_double_set_processes": (None, [c_int, c_int, c_uint, ctypes.POINTER(c_uint), ctypes.POINTER(c_ull)]),
        "nvml_double_set_privileged": (None, [c_int]),
        "nvml_double_set_field_type": (None, [c_uint, c_int]),
        "nvml_double_advance": (None, [ctypes.c_double]),
        "nvml_double_counter": (c_ull, [c_char_p]),
        "nvml_double_variant": (c_char_p, []),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


class NvmlDouble:
    """The control API of one loaded double (``nvml_double_*`` in nvml_double.c)."""

    _loaded: ClassVar[dict[str, NvmlDouble]] = {}
    _load_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path | str, *, mode: int = ctypes.RTLD_LOCAL) -> None:
        self.path = Path(path).resolve()
        self.lib = ctypes.CDLL(str(self.path), mode=mode)
        _declare(self.lib)
        self.variant = self.lib.nvml_double_variant().decode()

    # --- loading ---------------------------------------------------------------------------------------
    @classmethod
    def load(cls, variant: str = "current") -> NvmlDouble:
        """Build and load the double where pynvml will find it; the same object for each call in a process.

        Raises RuntimeError when pynvml already loaded another libnvidia-ml.so.1 (or another variant is loaded:
        both have that soname, so pynvml can only ever use one of them per process).
        """
        with cls._load_lock:
            if variant in cls._loaded:
                return cls._loaded[variant]
            if cls._loaded:
                other = next(iter(cls._loaded))
                raise RuntimeError(f"NVML double {other!r} is loaded already; run {variant!r} in a subprocess (env())")
            import pynvml

            loaded = pynvml.nvmlLib
            double = cls(build(variant), mode=ctypes.RTLD_GLOBAL)
            if loaded is not None and getattr(loaded, "_handle", None) != double.lib._handle:
                raise RuntimeError(f"pynvml loaded another {LIBRARY_NAME} before the NVML double: {loaded!r}")
            cls._loaded[variant] = double
            return double

    @staticmethod
    def env(variant: str = "current", profile: str | None = None, gpus: int | None = None) -> dict[str, str]:
        """Environment for a subprocess that loads the double through the normal library search."""
        lib_dir = str(build(variant).parent)
        previous = os.environ.get("LD_LIBRARY_PATH", "")
        out = {"LD_LIBRARY_PATH": f"{lib_dir}:{previous}" if previous else lib_dir}
        if profile is not None:
            out["NVML_DOUBLE_PROFILE"] = profile
        if gpus is not None:
            out["NVML_DOUBLE_GPUS"] = str(gpus)
        return out

    # --- control ---------------------------------------------------------------------------------------
    def reset(self, profile: str = "h200", gpus: int = 8) -> None:
        """Forget all state (faults, events, counters, time, processes); select a profile with ``gpus`` GPUs."""
        rc = int(self.lib.nvml_double_reset(profile.encode(), gpus))
        if rc == -1:
            raise ValueError(f"unknown NVML double profile {profile!r}")
        if rc == -2:
            raise ValueError(f"profile {profile!r} needs another driver generation than this {self.variant!r} library")
        if rc != 0:
            raise ValueError(f"cannot reset the NVML double to {profile!r} with {gpus} GPUs (1..64)")

    def fail(self, function: str, gpu: int = -1, nvml_return: int = 999, times: int = -1) -> None:
        """The next ``times`` calls (-1: until cleared, 0: clear) of ``function`` ("*": all) on ``gpu`` (-1: any)."""
        self.lib.nvml_double_fail(function.encode(), gpu, nvml_return, times)

    def clear_fail(self, function: str, gpu: int = -1) -> None:
        self.fail(function, gpu, 999, 0)

    def lose_gpu(self, gpu: int) -> None:
        self.lib.nvml_double_lose_gpu(gpu)

    def restore_gpu(self, gpu: int) -> None:
        self.lib.nvml_double_restore_gpu(gpu)

    def xid(
        self,
        gpu: int,
        xid: int,
        gpu_instance: int | None = None,
        compute_instance: int | None = None,
        *,
        lose_gpu: bool = False,
    ) -> None:
        """Queue an XID event for the event sets watching ``gpu``; ``lose_gpu``: lost once the event is read."""
        gi = UNSET_ID if gpu_instance is None else gpu_instance
        ci = UNSET_ID if compute_instance is None else compute_instance
        self.lib.nvml_double_xid(gpu, xid, gi, ci, int(lose_gpu))

    def fail_nvlink(self, gpu: int, link: int, nvml_return: int) -> None:
        """That link's throughput fields answer ``nvml_return`` (0 clears)."""
        self.lib.nvml_double_fail_nvlink(gpu, link, nvml_return)

    def driver_reload(self, failing_inits: int = 0) -> None:
        """Old handles fail (UNKNOWN, then INVALID_ARGUMENT); ``failing_inits`` inits answer DRIVER_NOT_LOADED."""
        self.lib.nvml_double_driver_reload(failing_inits)

    def set_gpu_count(self, gpus: int) -> None:
        """The GPU count from the next successful init on."""
        self.lib.nvml_double_set_gpu_count(gpus)

    def set_processes(self, gpu: int, mig_slot: int, processes: Sequence[tuple[int, int]] | None) -> None:
        """The compute processes (pid, used bytes) of a GPU (``mig_slot`` -1) or MIG device; None: the default."""
        if processes is None:
            self.lib.nvml_double_set_processes(gpu, mig_slot, 0xFFFFFFFF, None, None)
            return
        n = len(processes)
        pids = (ctypes.c_uint * max(n, 1))(*(pid for pid, _ in processes))
        used = (ctypes.c_ulonglong * max(n, 1))(*(mem for _, mem in processes))
        self.lib.nvml_double_set_processes(gpu, mig_slot, n, pids, used)

    def set_privileged(self, privileged: bool = True) -> None:
        """Whether the caller may list the processes of a GPU in MIG mode (else NO_PERMISSION)."""
        self.lib.nvml_double_set_privileged(int(privileged))

    def set_field_type(self, field_id: int, value_type: int) -> None:
        """Answer ``field_id`` with this NVML_VALUE_TYPE_* (-1: the field's own type)."""
        self.lib.nvml_double_set_field_type(field_id, value_type)

    def advance(self, seconds: float) -> None:
        """Move the double's clock forward."""
        self.lib.nvml_double_advance(float(seconds))

    def counter(self, name: str) -> int:
        """init_calls, init_ok, shutdown_calls, refcount, event_sets_open, gpm_samples_open, calls,
        pcie_throughput_calls, gpm_sample_calls."""
        value = int(self.lib.nvml_double_counter(name.encode()))
        if value == _UNKNOWN_COUNTER:
            raise KeyError(name)
        return value


if __name__ == "__main__":
    for name in sys.argv[1:] or list(variants()):
        print(build(name))

"""The nvidia_toolkit role's modules: the PCI scan and the daemon.json merge."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "plugins" / "modules" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pci = _load("nvidia_pci_facts")
runtime = _load("nvidia_docker_runtime")


def _device(root: Path, address: str, vendor: str, pci_class: str, device: str = "0x2330") -> None:
    base = root / "bus" / "pci" / "devices" / address
    base.mkdir(parents=True)
    (base / "vendor").write_text(vendor + "\n")
    (base / "class").write_text(pci_class + "\n")
    (base / "device").write_text(device + "\n")


def test_scan_counts_nvidia_display_functions_only(tmp_path: Path) -> None:
    _device(tmp_path, "0000:1b:00.0", "0x10de", "0x030200")  # H100, 3D controller
    _device(tmp_path, "0000:17:00.0", "0x10de", "0x030000", "0x2684")  # VGA controller
    _device(tmp_path, "0000:17:00.1", "0x10de", "0x040300")  # the board's HDMI audio
    _device(tmp_path, "0000:05:00.0", "0x10de", "0x068000", "0x22a3")  # NVSwitch
    _device(tmp_path, "0000:00:02.0", "0x8086", "0x030000")  # Intel iGPU
    facts = pci.scan(str(tmp_path))
    assert facts["gpu_count"] == 2
    assert [g["address"] for g in facts["gpus"]] == ["0000:17:00.0", "0000:1b:00.0"]
    assert facts["gpus"][0] == {"address": "0000:17:00.0", "device": "0x2684", "class": "0x030000"}


def test_scan_of_a_tree_without_pci_bus_finds_nothing(tmp_path: Path) -> None:
    facts = pci.scan(str(tmp_path))
    assert facts["gpu_count"] == 0
    assert facts["secure_boot"] is None
    assert facts["nouveau_loaded"] is False
    assert facts["nvidia_module_version"] is None


@pytest.mark.parametrize(("value", "expected"), [(b"\x06\x00\x00\x00\x01", True), (b"\x06\x00\x00\x00\x00", False)])
def test_secure_boot_state(tmp_path: Path, value: bytes, expected: bool) -> None:
    efivars = tmp_path / "firmware" / "efi" / "efivars"
    efivars.mkdir(parents=True)
    (efivars / f"SecureBoot-{pci.SECURE_BOOT_GUID}").write_bytes(value)
    assert pci.secure_boot_state(str(tmp_path)) is expected


def test_module_state(tmp_path: Path) -> None:
    (tmp_path / "module" / "nouveau").mkdir(parents=True)
    (tmp_path / "module" / "nvidia").mkdir(parents=True)
    (tmp_path / "module" / "nvidia" / "version").write_text("580.82.07\n")
    facts = pci.scan(str(tmp_path))
    assert facts["nouveau_loaded"] is True
    assert facts["nvidia_module_version"] == "580.82.07"


SEEDED = {"log-driver": "json-file", "mtu": 1400, "registry-mirrors": ["https://mirror.example"]}


def test_merge_keeps_other_keys_and_their_order() -> None:
    merged = runtime.merge(SEEDED, "nvidia", "nvidia-container-runtime", False)
    assert list(merged) == ["log-driver", "mtu", "registry-mirrors", "runtimes"]
    assert merged["runtimes"] == {"nvidia": {"path": "nvidia-container-runtime", "args": []}}
    assert {k: merged[k] for k in SEEDED} == SEEDED
    assert "runtimes" not in SEEDED  # the input is not modified


def test_merge_is_idempotent_and_keeps_other_runtimes() -> None:
    seeded = {**SEEDED, "runtimes": {"runsc": {"path": "/usr/bin/runsc"}}}
    once = runtime.merge(seeded, "nvidia", "nvidia-container-runtime", True)
    twice = runtime.merge(once, "nvidia", "nvidia-container-runtime", True)
    assert once == twice
    assert runtime.render(once) == runtime.render(twice)
    assert once["runtimes"]["runsc"] == {"path": "/usr/bin/runsc"}
    assert once["default-runtime"] == "nvidia"


def test_merge_keeps_a_configured_entry_and_leaves_default_runtime_alone() -> None:
    seeded = {"default-runtime": "runc", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": ["-x"]}}}
    merged = runtime.merge(seeded, "nvidia", "nvidia-container-runtime", False)
    assert merged == seeded


@pytest.mark.parametrize("text", ["", "  \n"])
def test_parse_empty_file_is_an_empty_config(text: str) -> None:
    assert runtime.parse(text) == {}


@pytest.mark.parametrize("text", ["{", "[1, 2]", '"x"'])
def test_parse_refuses_what_is_not_a_json_object(text: str) -> None:
    with pytest.raises(runtime.DaemonJsonError):
        runtime.parse(text)


def test_render_is_deterministic() -> None:
    text = runtime.render(runtime.merge(SEEDED, "nvidia", "nvidia-container-runtime", False))
    assert json.loads(text)["mtu"] == 1400
    assert text.endswith("}\n")
    assert text == runtime.render(json.loads(text))

"""Read-only facts about NVIDIA GPUs: a PCI scan of sysfs, Secure Boot state and kernel module state."""

from __future__ import annotations

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: nvidia_pci_facts
short_description: Detect NVIDIA GPUs by a PCI scan of sysfs (read-only)
description:
  - Lists the PCI functions under C(<sysfs_root>/bus/pci/devices) whose vendor is C(0x10de) (NVIDIA) and whose
    class is a display controller (C(0x03xxxx)); NVSwitches, audio and USB functions of a GPU board are not GPUs.
  - Reads the Secure Boot state from C(<sysfs_root>/firmware/efi/efivars/SecureBoot-*), whether C(nouveau) is
    loaded and the version of a loaded C(nvidia) module.
  - Changes nothing; supports check mode.
version_added: "0.1.0"
options:
  sysfs_root:
    description: Where sysfs is mounted. Tests point it at a fixture tree.
    type: path
    default: /sys
author: llm_monitor.fleet developers
"""

EXAMPLES = r"""
- name: Detect NVIDIA GPUs
  llm_monitor.fleet.nvidia_pci_facts:
    sysfs_root: /sys
"""

RETURN = r"""
ansible_facts:
  description: C(nvidia_pci) with C(gpus) (list of address, device, class), C(gpu_count), C(secure_boot)
    (true, false or null when the machine has no EFI variables), C(nouveau_loaded) and C(nvidia_module_version)
    (null when the module is not loaded).
  returned: always
  type: dict
"""


NVIDIA_VENDOR = "0x10de"
SECURE_BOOT_GUID = "8be5f61c-52ca-11d2-9bf6-00e09893bd94"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def scan_gpus(sysfs_root: str) -> list[dict[str, str]]:
    """NVIDIA display-class PCI functions, sorted by address."""
    devices_dir = os.path.join(sysfs_root, "bus", "pci", "devices")
    try:
        addresses = sorted(os.listdir(devices_dir))
    except OSError:
        return []
    gpus = []
    for address in addresses:
        base = os.path.join(devices_dir, address)
        vendor = (_read(os.path.join(base, "vendor")) or "").lower()
        pci_class = (_read(os.path.join(base, "class")) or "").lower()
        if vendor == NVIDIA_VENDOR and pci_class.startswith("0x03"):
            gpus.append({"address": address, "device": _read(os.path.join(base, "device")) or "", "class": pci_class})
    return gpus


def secure_boot_state(sysfs_root: str) -> bool | None:
    """True/False from the SecureBoot EFI variable (4 attribute bytes, then the value), None without EFI."""
    path = os.path.join(sysfs_root, "firmware", "efi", "efivars", f"SecureBoot-{SECURE_BOOT_GUID}")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if len(data) < 5:
        return None
    return data[4] == 1


def scan(sysfs_root: str) -> dict[str, Any]:
    gpus = scan_gpus(sysfs_root)
    return {
        "gpus": gpus,
        "gpu_count": len(gpus),
        "secure_boot": secure_boot_state(sysfs_root),
        "nouveau_loaded": os.path.isdir(os.path.join(sysfs_root, "module", "nouveau")),
        "nvidia_module_version": _read(os.path.join(sysfs_root, "module", "nvidia", "version")),
        "sysfs_root": sysfs_root,
    }


def main() -> None:
    module = AnsibleModule(argument_spec={"sysfs_root": {"type": "path", "default": "/sys"}}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts={"nvidia_pci": scan(module.params["sysfs_root"])})


if __name__ == "__main__":
    main()

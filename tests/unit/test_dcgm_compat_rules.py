"""files/rules/gpu_dcgm_compat.rules.yml under promtool, on the GPU exporter's recorded output.

The fixtures are two scrapes of the exporter (H200 without and with MIG) as Prometheus would store them: each
sample becomes a constant input series of a promtool rule test, scraped from a host of the fleet. The expected
dcgm-exporter series are computed here from the same samples, with dcgm-exporter's units and labels.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "files/rules/gpu_dcgm_compat.rules.yml"
FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
HOSTS = {"gpu_exporter_h200.prom": "gpu-a", "gpu_exporter_h200_mig.prom": "gpu-b"}


def _samples() -> list[tuple[str, dict[str, str], float]]:
    out = []
    for fixture, host in HOSTS.items():
        for line in (FIXTURES / fixture).read_text().splitlines():
            m = SAMPLE.match(line)
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
            labels.update(instance=f"{host}.example.net:9835", job="gpu", host=host)
            out.append((m["name"], labels, float(m["value"])))
    return out


def _series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _dcgm_labels(labels: dict[str, str], info: dict[str, str]) -> dict[str, str]:
    return {
        "gpu": labels["gpu"], "UUID": labels["uuid"], "device": f"nvidia{labels['gpu']}",
        "modelName": info["name"], "pci_bus_id": info["pci_bus_id"], "Hostname": labels["host"],
        "DCGM_FI_DRIVER_VERSION": "550.127.05", "instance": labels["instance"], "job": "gpu", "host": labels["host"],
    }  # fmt: skip


def test_dcgm_names_units_and_labels_from_recorded_output(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make tools)")
    samples = _samples()
    by_gpu = {(lbl["host"], lbl["gpu"]): lbl for name, lbl, _ in samples if name == "llm_monitor_gpu_up"}

    def ours(name: str, host: str, gpu: str, **match: str) -> list[tuple[dict[str, str], float]]:
        return [
            (lbl, v) for n, lbl, v in samples
            if n == name and (lbl["host"], lbl["gpu"]) == (host, gpu) and all(lbl.get(k) == x for k, x in match.items())
        ]  # fmt: skip

    expected: dict[str, list[dict[str, object]]] = {}
    for (host, gpu), info in sorted(by_gpu.items()):
        base = _dcgm_labels(info, info)
        base["pci_bus_id"] = info["pci_bus_id"]

        def expect(record: str, value: float, extra: dict[str, str] | None = None, base: dict[str, str] = base) -> None:
            row = {"labels": _series(record, {**base, **(extra or {})}), "value": value}
            expected.setdefault(record, []).append(row)

        for _, v in ours("llm_monitor_gpu_utilization_ratio", host, gpu):
            expect("DCGM_FI_DEV_GPU_UTIL", round(v * 100, 6))
        ((_, total),) = ours("llm_monitor_gpu_memory_total_bytes", host, gpu)
        ((_, used),) = ours("llm_monitor_gpu_memory_used_bytes", host, gpu)
        ((_, reserved),) = ours("llm_monitor_gpu_memory_reserved_bytes", host, gpu)
        expect("DCGM_FI_DEV_FB_USED", (used - reserved) / 1048576)
        expect("DCGM_FI_DEV_FB_TOTAL", total / 1048576)
        ((_, slowdown),) = ours("llm_monitor_gpu_temperature_limit_celsius", host, gpu, limit="slowdown")
        expect("DCGM_FI_DEV_SLOWDOWN_TEMP", slowdown)
        ((_, sm_hz),) = ours("llm_monitor_gpu_clock_hertz", host, gpu, clock="sm")
        expect("DCGM_FI_DEV_SM_CLOCK", sm_hz / 1e6)
        ((_, joules),) = ours("llm_monitor_gpu_energy_joules_total", host, gpu)
        expect("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", joules * 1000)
        ((_, xid),) = ours("llm_monitor_gpu_xid_last_code", host, gpu)
        expect("DCGM_FI_DEV_XID_ERRORS", xid)
        for _, v in ours("llm_monitor_gpu_sm_active_ratio", host, gpu):
            expect("DCGM_FI_PROF_SM_ACTIVE", v)
        for lbl, v in ours("llm_monitor_gpu_mig_sm_active_ratio", host, gpu):
            expect("DCGM_FI_PROF_SM_ACTIVE", v, {"GPU_I_ID": lbl["gpu_instance"], "GPU_I_PROFILE": lbl["mig_profile"]})
    assert len(expected["DCGM_FI_DEV_GPU_UTIL"]) == 2, "utilisation only outside MIG mode"
    assert len(expected["DCGM_FI_PROF_SM_ACTIVE"]) == 2 * 2 + 2 * 2, "per GPU on both hosts, and per MIG GPU instance"

    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": _series(n, lbl), "values": f"{v!r}x5"} for n, lbl, v in samples],
            "promql_expr_test": [
                {"expr": record, "eval_time": "3m", "exp_samples": rows} for record, rows in sorted(expected.items())
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "dcgm_compat_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    res = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_rules_file_passes_promtool_check() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make tools)")
    res = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr

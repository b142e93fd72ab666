"""Per-model SLOs (fleet_slos) rendered as multi-window, multi-burn-rate rules, tested by promtool."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.llm_monitor.fleet.plugins.filter.alert_rules import slo_rules  # noqa: E402

RUNBOOK_BASE = "https://runbooks.example/docs/runbooks"
SLOS = [
    {
        "model": "llama-3-8b",
        "backend": "vllm",
        "availability": 0.99,
        "ttft": {"seconds": 0.5, "target": 0.99},
    }
]


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (make tools)")
    return path


def test_rules_pass_promtool_check_and_unit_tests(tmp_path: Path) -> None:
    promtool = _promtool()
    for name, doc in slo_rules(SLOS, "mon-1", RUNBOOK_BASE).items():
        (tmp_path / name).write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    shutil.copy(REPO / "tests/rules/slo.test.yml", tmp_path)
    res = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "llm_monitor_slo.rules.yml")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "slo.test.yml")], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_backend_and_objective_renders() -> None:
    slos = [
        {"model": "m", "backend": "vllm", "availability": 0.999, "ttft": {"seconds": 1, "target": 0.95},
         "latency": {"seconds": 10, "target": 0.9}, "window": "30d"},
        {"model": "m", "backend": "litellm", "availability": "0.99", "latency": {"seconds": "2.0", "target": 0.9}},
        {"model": 'q"x', "backend": "ollama", "availability": 0.9, "ttft": {"seconds": 2, "target": 0.9},
         "latency": {"seconds": 30, "target": 0.9}},
    ]  # fmt: skip
    doc = slo_rules(slos, "mon-1", RUNBOOK_BASE)["llm_monitor_slo.rules.yml"]
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == 2 * 8, "two alerts per objective"
    fast_30d = next(
        a for a in alerts if a["labels"]["slo"] == "m-vllm-availability" and a["labels"]["severity"] == "critical"
    )
    assert "> 0.0144 " in fast_30d["expr"] and "> 0.006 " in fast_30d["expr"], "14.4x and 6x of a 0.1 % budget"
    recorded = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    assert {"slo:sli_error:ratio_rate5m", "slo:sli_error:ratio_rate3d", "slo:sli_error:ratio_period",
            "slo:period_error_budget_remaining:ratio", "slo:objective:ratio"} <= recorded  # fmt: skip
    text = yaml.safe_dump(doc)
    assert 'le="10.0"' in text and 'le="2.0"' in text, "bucket bounds as the backends write them"
    assert 'model="q\\"x"' in yaml.safe_load(text)["groups"][0]["rules"][-1]["expr"] or 'q\\"x' in text
    assert slo_rules([], "mon-1", RUNBOOK_BASE) == {} and slo_rules(None, "mon-1", RUNBOOK_BASE) == {}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"model": "m", "backend": "vllm", "availability": 1.0}, "availability=1.0: the objective must be"),
        ({"model": "m", "backend": "vllm", "availability": 99.5}, "between 0 and 1"),
        ({"model": "m", "backend": "vllm", "availability": "high"}, "expected a ratio"),
        ({"model": "m", "backend": "vllm", "availability": 0.9, "window": "a month"}, "is not a duration"),
        ({"model": "m", "backend": "vllm", "availability": 0.9, "window": "1h"}, "of a day or more"),
        ({"model": "m", "backend": "tgi", "availability": 0.9}, r"backend='tgi': expected one of vllm"),
        ({"model": "", "backend": "vllm", "availability": 0.9}, r"\.model must be"),
        ({"model": "m", "backend": "vllm", "ttft": {"seconds": 0.3, "target": 0.9}},
         r"0.3: must be a bucket boundary of the vllm histogram \(0.001, "),
        ({"model": "m", "backend": "vllm", "ttft": 0.5}, r"ttft must be \{seconds"),
        ({"model": "m", "backend": "litellm", "ttft": {"seconds": 1, "target": 0.9}}, "has no ttft series"),
        ({"model": "m", "backend": "vllm"}, "give at least one of"),
        ({"model": "m", "backend": "vllm", "availabilty": 0.9}, "unknown keys availabilty"),
    ],
)  # fmt: skip
def test_bad_slos_are_refused_naming_host_entry_and_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=f"host 'mon-1': fleet_slos\\[0\\].*{message}"):
        slo_rules([entry], "mon-1", RUNBOOK_BASE)


def test_not_a_list_and_duplicates() -> None:
    with pytest.raises(AnsibleFilterError, match="fleet_slos must be a list"):
        slo_rules({"model": "m"}, "mon-1", RUNBOOK_BASE)
    with pytest.raises(AnsibleFilterError, match=r"fleet_slos\[1\]: a second availability objective"):
        slo_rules([{"model": "m", "backend": "vllm", "availability": 0.9}] * 2, "mon-1", RUNBOOK_BASE)

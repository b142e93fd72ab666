"""The nvidia_toolkit role's tables and documentation stay consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "nvidia_toolkit"


def _yaml(relative: str) -> Any:
    return yaml.safe_load((ROLE / relative).read_text())


def test_every_source_knows_every_supported_distribution() -> None:
    internal = _yaml("vars/main.yml")
    sources = _yaml("meta/argument_specs.yml")["argument_specs"]["main"]["options"]["nvidia_toolkit_driver_source"]
    assert sorted(sources["choices"]) == sorted(internal["_nvidia_toolkit_known_branches"])
    for source in sources["choices"]:
        table = internal["_nvidia_toolkit_known_branches"][source]
        assert sorted(table) == sorted(internal["_nvidia_toolkit_supported"]), source
        for dist, branches in table.items():
            assert branches, f"{source}/{dist} has no branch"
            assert all(isinstance(b, str) and b.isdigit() for b in branches), f"{source}/{dist}: {branches}"


def test_default_branch_is_known_for_the_default_source() -> None:
    defaults = _yaml("defaults/main.yml")
    table = _yaml("vars/main.yml")["_nvidia_toolkit_known_branches"][defaults["nvidia_toolkit_driver_source"]]
    assert all(defaults["nvidia_toolkit_driver_branch"] in branches for branches in table.values())


def test_defaults_are_safe() -> None:
    defaults = _yaml("defaults/main.yml")
    assert defaults["nvidia_toolkit_driver_install"] is False
    assert defaults["nvidia_toolkit_reboot_allowed"] is False
    assert defaults["nvidia_toolkit_verify_only"] is False
    assert defaults["nvidia_toolkit_verify_container_image"] == ""
    # No unverified checksums are shipped: the user pins them.
    assert defaults["nvidia_toolkit_repo_key_sha256"] == ""
    assert defaults["nvidia_toolkit_driver_cuda_repo_key_sha256"] == ""


def test_readme_documents_every_default() -> None:
    readme = (ROLE / "README.md").read_text()
    missing = [name for name in _yaml("defaults/main.yml") if f"| `{name}` |" not in readme]
    assert not missing, missing

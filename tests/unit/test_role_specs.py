"""Every role documents its variables in meta/argument_specs.yml, in step with defaults/main.yml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent for p in REPO.glob("roles/*/meta/main.yml"))
TYPES = {bool: "bool", int: "int", str: "str", list: "list", dict: "dict", float: "float"}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_argument_specs_match_defaults(role: Path) -> None:
    specs = _load(role / "meta" / "argument_specs.yml")
    assert specs, f"{role.name}: meta/argument_specs.yml is missing"
    defaults = _load(role / "defaults" / "main.yml") or {}
    options: dict[str, Any] = {}
    for entry in specs["argument_specs"].values():
        options.update(entry.get("options", {}))
    missing = sorted(set(defaults) - set(options))
    assert not missing, f"{role.name}: defaults without an argument spec: {missing}"
    for name, value in defaults.items():
        spec = options[name]
        assert spec.get("description"), f"{role.name}: {name} has no description"
        assert spec["type"] in (TYPES[type(value)], "path", "raw"), f"{role.name}: {name} type {spec['type']}"
        if "default" in spec:
            assert spec["default"] == value, f"{role.name}: {name} default differs from defaults/main.yml"
        else:
            assert isinstance(value, str) and "{{" in value, f"{role.name}: {name} lacks a documented default"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_public_variables_are_role_prefixed(role: Path) -> None:
    defaults = _load(role / "defaults" / "main.yml") or {}
    stray = [name for name in defaults if not name.startswith(f"{role.name}_")]
    assert not stray, f"{role.name}: public variables must start with '{role.name}_': {stray}"
    internal = _load(role / "vars" / "main.yml") or {}
    exposed = [name for name in internal if not name.startswith("_")]
    assert not exposed, f"{role.name}: vars/main.yml is for internal variables (prefix '_'): {exposed}"


def test_scrape_job_default_ports_match_the_exporter_roles() -> None:
    jobs = _load(REPO / "roles" / "prometheus" / "defaults" / "main.yml")["prometheus_scrape_jobs"]
    role_defaults: dict[str, Any] = {}
    for role in ROLES:
        role_defaults.update(_load(role / "defaults" / "main.yml") or {})
    for job in jobs:
        if job["port_var"] in role_defaults:
            assert job["default_port"] == role_defaults[job["port_var"]], job["name"]


SERVICE_ROLES = [r for r in ROLES if (r / "tasks" / "preflight.yml").exists() and r.name != "core"]


@pytest.mark.parametrize("role", SERVICE_ROLES, ids=lambda p: p.name)
def test_roles_whose_preflight_site_yml_includes_validate_it(role: Path) -> None:
    """site.yml runs `tasks_from: preflight`: an entry point of that name makes Ansible check the same variables."""
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    assert "preflight" in specs, f"{role.name}: no preflight entry point"
    assert specs["preflight"]["options"] == specs["main"]["options"]


def test_the_exporter_variables_are_documented_with_the_catalogs_defaults() -> None:
    from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_catalog import EXPORTERS

    options = _load(REPO / "roles" / "exporters" / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = _load(REPO / "roles" / "exporters" / "defaults" / "main.yml")
    for exporter in EXPORTERS:
        assert options[exporter.port_var]["default"] == exporter.default_port, exporter.name
        assert options[exporter.user_var]["default"] == exporter.default_user, exporter.name
        assert options[exporter.enabled_var]["type"] == "bool", exporter.name
        # decided by the catalog only: a role default would hide the catalog's decision
        assert not {exporter.port_var, exporter.user_var, exporter.enabled_var} & set(defaults), exporter.name


@pytest.mark.parametrize("role", [r for r in ROLES if (r / "README.md").exists()], ids=lambda p: p.name)
def test_readme_variable_table_is_the_argument_spec(role: Path) -> None:
    """`python tests/harness/role_docs.py` rewrites the tables; this says when one is out of step."""
    import role_docs

    readme = (role / "README.md").read_text()
    if role_docs.HEADER not in readme:
        return
    assert role_docs.rewrite(role / "README.md", role_docs.table(role)) == readme, (
        f"{role.name}: README's variable table differs from meta/argument_specs.yml; run tests/harness/role_docs.py"
    )


def test_the_exporter_catalog_and_the_packages_registry_name_the_same_exporters_and_ports() -> None:
    """Ansible's catalog and llm-monitor-exporter's subcommands: one list of names and default ports."""
    from ansible_collections.llm_monitor.fleet.plugins.module_utils.fleet_catalog import EXPORTERS
    from llm_monitor_exporters.registry import EXPORTERS as REGISTRY

    assert [(e.name, e.default_port) for e in EXPORTERS] == [(e.name, e.default_port) for e in REGISTRY]


def test_the_exporters_role_accepts_exactly_the_simulated_gpu_models() -> None:
    """The role's preflight list of simulated models names each model of the exporters' GPU table once."""
    from llm_monitor_exporters.gpu.models import MODELS, resolve_model

    short = yaml.safe_load((REPO / "roles/exporters/vars/main.yml").read_text())["_exporters_gpu_models"]
    assert sorted(resolve_model(name).name for name in short) == sorted(MODELS)

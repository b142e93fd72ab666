"""Read-only: which packages are installed (at the wanted version), and which apt's lists carry."""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: apt_package_state
short_description: Tell which packages are installed and which apt's lists can install (read-only)
description:
  - For each package (C(name) or C(name=version)), reports whether dpkg has it installed (at that version, when
    one is given) and whether apt's package lists carry it (that version, when one is given).
  - The roles use it to update apt's lists when they lack a wanted package, whatever the lists' age, instead of
    trusting a cache age; lists fetched a minute ago know nothing of a repository added since.
  - Changes nothing; supports check mode.
version_added: "0.1.0"
options:
  packages:
    description: Package names, each optionally C(=version).
    type: list
    elements: str
    required: true
author: llm_monitor.fleet developers
"""

EXAMPLES = r"""
- name: Look for the container toolkit in dpkg and in apt's lists
  llm_monitor.fleet.apt_package_state:
    packages: [nvidia-container-toolkit=1.17.8-1]
  register: _state
"""

RETURN = r"""
installed:
  description: The requested packages dpkg has installed (at the requested version).
  returned: always
  type: list
  elements: str
missing:
  description: The requested packages that are not installed (or not at the requested version).
  returned: always
  type: list
  elements: str
not_in_lists:
  description: The missing packages apt's lists do not carry (at the requested version); updating the lists is
    needed before they can be installed.
  returned: always
  type: list
  elements: str
"""


def _run(module: AnsibleModule, *argv: str) -> tuple[int, str]:
    rc, out, _err = module.run_command(list(argv), environ_update={"LC_ALL": "C"})
    return int(rc), str(out)


def _installed_version(module: AnsibleModule, name: str) -> str | None:
    rc, out = _run(module, "dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", name)
    status, _, version = out.strip().partition(" ")
    return version if rc == 0 and status == "installed" else None


def _in_lists(module: AnsibleModule, spec: str) -> bool:
    # `apt-cache show name=version` fails (rc 100) when no list carries that version; without a version, any.
    rc, out = _run(module, "apt-cache", "show", "--no-all-versions", spec)
    return rc == 0 and "Package:" in out


def main() -> None:
    module = AnsibleModule(
        argument_spec={"packages": {"type": "list", "elements": "str", "required": True}},
        supports_check_mode=True,
    )
    installed: list[str] = []
    missing: list[str] = []
    not_in_lists: list[str] = []
    for spec in module.params["packages"]:
        name, _, version = spec.partition("=")
        have = _installed_version(module, name)
        if have is not None and (not version or have == version):
            installed.append(spec)
            continue
        missing.append(spec)
        if not _in_lists(module, spec):
            not_in_lists.append(spec)
    result: dict[str, Any] = {"changed": False, "installed": installed, "missing": missing}
    result["not_in_lists"] = not_in_lists
    module.exit_json(**result)


if __name__ == "__main__":
    main()

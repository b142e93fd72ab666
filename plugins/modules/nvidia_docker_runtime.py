"""Register the NVIDIA runtime in Docker's daemon.json, keeping every other key."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: nvidia_docker_runtime
short_description: Add the NVIDIA runtime to Docker's daemon.json without dropping other keys
description:
  - Sets C(runtimes.<name>) in Docker's daemon.json to an object with C(path) (the runtime binary) and C(args)
    (empty), the entry that C(nvidia-ctk runtime configure --runtime=docker) writes, and optionally
    C(default-runtime).
  - Every other key, and the order of the keys, is kept. The file is only written when its parsed content
    changes, so a file that already carries the runtime is left byte for byte as it is.
  - A file that is not a JSON object is refused, never overwritten.
  - Supports check mode and diff mode.
version_added: "0.1.0"
options:
  path:
    description: Docker's daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  runtime_name:
    description: Key under C(runtimes).
    type: str
    default: nvidia
  runtime_path:
    description: The runtime binary.
    type: str
    default: nvidia-container-runtime
  set_default:
    description: Also make it Docker's C(default-runtime). When false, C(default-runtime) is left as it is.
    type: bool
    default: false
author: llm_monitor.fleet developers
"""

EXAMPLES = r"""
- name: Register the NVIDIA runtime with Docker
  llm_monitor.fleet.nvidia_docker_runtime:
    path: /etc/docker/daemon.json
  notify: Restart Docker
"""

RETURN = r"""
config:
  description: The daemon configuration after the change.
  returned: always
  type: dict
"""


class DaemonJsonError(ValueError):
    """daemon.json exists but is not a JSON object."""


def parse(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DaemonJsonError(f"is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DaemonJsonError("is not a JSON object")
    return data


def merge(data: dict[str, Any], runtime_name: str, runtime_path: str, set_default: bool) -> dict[str, Any]:
    """A copy of data with the runtime registered; other keys and their order are kept."""
    result = copy.deepcopy(data)
    runtimes = result.get("runtimes")
    if not isinstance(runtimes, dict):
        runtimes = {}
    entry = runtimes.get(runtime_name)
    entry = dict(entry) if isinstance(entry, dict) else {}
    entry["path"] = runtime_path
    entry.setdefault("args", [])
    runtimes[runtime_name] = entry
    result["runtimes"] = runtimes
    if set_default:
        result["default-runtime"] = runtime_name
    return result


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=4) + "\n"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "runtime_name": {"type": "str", "default": "nvidia"},
            "runtime_path": {"type": "str", "default": "nvidia-container-runtime"},
            "set_default": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    before_text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            before_text = handle.read()
    try:
        before = parse(before_text)
    except DaemonJsonError as exc:
        module.fail_json(msg=f"{path} {exc}; fix or remove it, it was not changed")
    after = merge(before, module.params["runtime_name"], module.params["runtime_path"], module.params["set_default"])
    changed = after != before or not os.path.exists(path)
    result: dict[str, Any] = {"changed": changed, "config": after, "path": path}
    if changed and module._diff:
        result["diff"] = {"before": before_text, "after": render(after), "before_header": path, "after_header": path}
    if changed and not module.check_mode:
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o755)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".daemon.json.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render(after))
        os.chmod(tmp, 0o644)
        module.atomic_move(tmp, path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

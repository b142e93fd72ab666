"""What a user of llm_monitor.fleet.nvidia_toolkit notices on each host of the scenario.

nvt-gpu12 (2 GPUs on its fixture PCI bus) and nvt-gpu13 (in gpu_hosts) are GPU hosts; nvt-plain must be left
untouched. The packages are TEST DOUBLES served by nvt-repo (see molecule.yml).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("nvt_hosts")
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
GPU_HOSTS = {"nvt-gpu12": 2, "nvt-gpu13": 1}
TOOLKIT = [
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
]
SEEDED = {"log-driver": "json-file", "mtu": 1400, "registry-mirrors": ["https://mirror.invalid"]}


def _name(host) -> str:
    return host.backend.get_hostname()


def _gpu_host(host) -> bool:
    return _name(host) in GPU_HOSTS


def _version(host, package: str) -> str | None:
    out = host.run(f"dpkg-query -W -f '${{Version}} ${{db:Status-Abbrev}}' {package}")
    fields = out.stdout.split()
    # db:Status-Abbrev: wanted state (i install, h hold), then current state (i installed).
    if out.rc != 0 or len(fields) < 2 or fields[-1][1:2] != "i":
        return None
    return fields[0]


def _daemon_json(host) -> dict:
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def test_untouched_host_has_nothing(host):
    if _gpu_host(host):
        pytest.skip("GPU host")
    for package in [*TOOLKIT, "cuda-drivers-580"]:
        assert _version(host, package) is None, package
    for path in [
        "/etc/apt/sources.list.d/nvidia-container-toolkit.sources",
        "/etc/apt/sources.list.d/nvidia-cuda.sources",
        "/etc/apt/keyrings/nvidia-container-toolkit.asc",
        "/etc/apt/preferences.d/nvidia-container-toolkit.pref",
        "/etc/docker/daemon.json",
        "/etc/cdi/nvidia.yaml",
        "/etc/modprobe.d/blacklist-nouveau.conf",
        "/etc/ansible/facts.d/nvidia_toolkit.fact",
    ]:
        assert not host.file(path).exists, path
    assert host.run("apt-mark showhold").stdout.strip() == ""


def test_gpus_detected_and_verified(host):
    if not _gpu_host(host):
        pytest.skip("no GPU")
    fact = json.loads(host.file("/etc/ansible/facts.d/nvidia_toolkit.fact").content_string)
    assert fact == {
        "ready": True,
        "gpu_count": GPU_HOSTS[_name(host)],
        "driver_branch": "580",
        "container_toolkit_version": "1.17.8-1",
        "cdi_spec": "/etc/cdi/nvidia.yaml",
    }


def test_repository_is_signed_by_the_pinned_key(host):
    if not _gpu_host(host):
        pytest.skip("no GPU")
    source = host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").content_string
    assert "URIs: http://nvt-repo:8080/nvidia-container-toolkit/stable/deb/amd64" in source
    assert "Signed-By: /etc/apt/keyrings/nvidia-container-toolkit.asc" in source
    key_sha = (EPHEMERAL / "nvt-repo.yml").read_text().split()[1]
    assert host.file("/etc/apt/keyrings/nvidia-container-toolkit.asc").sha256sum == key_sha
    assert (
        "Signed-By: /etc/apt/keyrings/nvidia-cuda.asc"
        in host.file("/etc/apt/sources.list.d/nvidia-cuda.sources").content_string
    )


def test_toolkit_installed_at_the_pinned_version(host):
    if not _gpu_host(host):
        pytest.skip("no GPU")
    for package in TOOLKIT:
        assert _version(host, package) == "1.17.8-1", package
    # The repository carries a newer 1.18.0-1: only the pin keeps the toolkit where it is.
    policy = host.check_output("apt-cache policy nvidia-container-toolkit")
    assert "1.18.0-1" in policy
    assert "Candidate: 1.17.8-1" in policy
    assert "TEST DOUBLE" in host.check_output("dpkg-query -W -f '${Description}' nvidia-container-toolkit")
    assert "1.17.8" in host.check_output("nvidia-ctk --version")


def test_driver_branch_installed_and_held(host):
    if not _gpu_host(host):
        pytest.skip("no GPU")
    assert _version(host, "cuda-drivers-580") == "580.82.07-1"
    assert _version(host, "cuda-drivers-575") is None
    assert host.check_output("apt-mark showhold").split() == ["cuda-drivers-580"]
    assert "blacklist nouveau" in host.file("/etc/modprobe.d/blacklist-nouveau.conf").content_string
    persistenced = host.service("nvidia-persistenced")
    assert persistenced.is_enabled
    assert persistenced.is_running


def test_daemon_json_has_the_runtime_and_keeps_other_keys(host):
    if not _gpu_host(host):
        pytest.skip("no GPU")
    config = _daemon_json(host)
    assert config["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "args": []}
    assert "default-runtime" not in config
    if _name(host) == "nvt-gpu12":
        assert {key: config[key] for key in SEEDED} == SEEDED
        assert list(config) == [*SEEDED, "runtimes"]
    else:
        assert list(config) == ["runtimes"]


def test_daemon_json_is_what_nvidia_ctk_would_write(host):
    """nvidia-ctk runtime configure on the role's result changes nothing (the double edits like the real one)."""
    if not _gpu_host(host):
        pytest.skip("no GPU")
    host.check_output("cp /etc/docker/daemon.json /tmp/daemon.copy.json")
    host.check_output("nvidia-ctk runtime configure --runtime=docker --config=/tmp/daemon.copy.json")
    assert json.loads(host.file("/tmp/daemon.copy.json").content_string) == _daemon_json(host)


def test_cdi_spec_generated(host):
    if not _gpu_host(host):
        pytest.skip("no GPU")
    spec = host.file("/etc/cdi/nvidia.yaml")
    assert spec.exists
    assert "kind: nvidia.com/gpu" in spec.content_string
    assert spec.content_string.count("deviceNodes") == GPU_HOSTS[_name(host)]


def _side_effect(name: str) -> dict:
    return json.loads((EPHEMERAL / f"nvt-side-effect-{name}.json").read_text())


BAD_INPUTS = {
    # refused by meta/argument_specs.yml (the failure is nvt-gpu12's own), naming the variable and the value
    "target_source": ["nvidia_toolkit_target_hosts_from", "pci, group", "dmi"],
    "distribution": ["nvt-gpu12", "unsupported distribution centos9"],
    "branch_unknown": ["nvt-gpu12", "nvidia_toolkit_driver_branch=999", "known: 535, 550"],
    "branch_not_in_repo": ["nvt-gpu12", "nvidia_toolkit_driver_branch=570", "cuda-drivers-570 has no installation"],
    "secure_boot": ["nvt-gpu12", "Secure Boot", "nvidia_toolkit_secure_boot_mok_key"],
    "key_checksum": ["nvt-gpu12", "nvidia-container-toolkit", "did not match", "nvidia_toolkit_repo_key_sha256"],
    "gpu_count": ["nvt-gpu12", "nvidia-smi sees 2 GPU(s)", "nvidia_toolkit_expected_gpu_count=3"],
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_refused_with_host_and_variable(host, case):
    if _name(host) != "nvt-gpu12":
        pytest.skip("the bad inputs run on nvt-gpu12")
    message = _side_effect("nvt-gpu12")[case]
    for part in BAD_INPUTS[case]:
        assert part in message, message


def test_bad_inputs_changed_nothing(host):
    if _name(host) != "nvt-gpu12":
        pytest.skip("the bad inputs run on nvt-gpu12")
    result = _side_effect("nvt-gpu12")
    assert result["state_before"] == result["state_after"]


def test_verify_only_mode_reads_and_reports(host):
    if _name(host) != "nvt-gpu12":
        pytest.skip("the read-only run is on nvt-gpu12")
    assert _side_effect("nvt-gpu12")["verify_only"] == {"ready": True, "gpu_count": 2}


def test_controller_is_never_rebooted(host):
    if _name(host) != "nvt-gpu12":
        pytest.skip("once")
    message = _side_effect("controller")["controller_reboot"]
    assert "host 'localhost' is the controller" in message
    assert "nvidia_toolkit_reboot_allowed" in message


def test_a_run_after_an_interrupted_one_installs_the_toolkit(host):
    """The repository's source file was in place, apt's lists young and without it: the lists are read anyway."""
    if _name(host) != "nvt-gpu12":
        pytest.skip("the interrupted run is replayed on nvt-gpu12")
    result = json.loads((EPHEMERAL / "nvt-interrupted.json").read_text())
    assert result["toolkit"].split() == ["1.17.8-1", "ii"]


def test_branch_change_moves_the_hold(host):
    if _name(host) != "nvt-gpu12":
        pytest.skip("the branch change runs on nvt-gpu12")
    lines = json.loads((EPHEMERAL / "nvt-branch-change.json").read_text())["on_575"]
    held = lines[lines.index("HELD") + 1 :]
    installed = [line.split()[0] for line in lines[: lines.index("HELD")] if line.split()[-1] == "hi"]
    assert installed == ["cuda-drivers-575"]
    assert held == ["cuda-drivers-575"]


def _run_role(*args: str) -> tuple[int, str]:
    """ansible-playbook of cli_role.yml (the role on nvt_hosts) with these options, as a user would run it."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(EPHEMERAL / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    playbook = Path(__file__).resolve().parents[1] / "cli_role.yml"
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        *("-i", os.environ["MOLECULE_INVENTORY_FILE"], *args, str(playbook)),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    return result.returncode, result.stdout + result.stderr


def test_verify_tag_checks_without_installing(host):
    """`--tags nvidia_toolkit_verify` runs detection and the nvidia-smi check, and no install phase."""
    if _name(host) != "nvt-gpu12":
        pytest.skip("once, on nvt-gpu12")
    rc, output = _run_role(
        "-l", "nvt-gpu12", "--tags", "nvidia_toolkit_verify", "-e", "nvidia_toolkit_expected_gpu_count=5"
    )
    assert rc != 0, output
    assert "nvidia-smi sees 2 GPU(s) but nvidia_toolkit_expected_gpu_count=5" in output
    assert "Install the container toolkit" not in output
    assert "Install the driver" not in output


def test_check_mode_on_a_fresh_host_changes_nothing(host):
    """--check on a host with nothing yet (made a 2-GPU host by its sysfs root): every phase runs simulated
    up to the verification, which fails for want of nvidia-smi, and the host is left as it was."""
    if _name(host) != "nvt-plain":
        pytest.skip("on the untouched host")
    rc, output = _run_role("-l", "nvt-plain", "--check", "-e", "nvidia_toolkit_sysfs_root=/opt/nvt-sys/sys-2gpu")
    assert rc != 0, output
    assert "host 'nvt-plain': nvidia-smi failed" in output, output
    test_untouched_host_has_nothing(host)

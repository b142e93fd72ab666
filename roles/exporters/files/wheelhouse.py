#!/usr/bin/env python3
"""Build the exporters' wheelhouse on the controller (run by llm_monitor.fleet.exporters, once per run).

    wheelhouse.py --source DIR --requirements FILE --dest DIR --target 3.11:x86_64 [--target 3.13:aarch64 ...]

For each target (Python version and machine) it fills DEST/py<version>-<machine>/ with
  * the llm_monitor_exporters wheel, built from the source shipped in the collection (files/exporters) once
    per source digest and kept in DEST/_package/<digest>/;
  * requirements.txt (every dependency pinned with its sha256);
  * the dependency wheels for that Python and platform (pip download --only-binary=:all: --require-hashes).

A wheelhouse that already holds everything (built earlier, or copied in by hand for an air-gapped site) is
used as is: pip is first asked to resolve from the wheelhouse alone (--no-index), and only what is missing is
downloaded. Prints one JSON object: {"changed": bool, "version": str, "targets": {name: {dir, digest, wheel}}}.
The digest covers every file a target installs, so the role reinstalls only when it changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm_monitor_exporters"
PLATFORMS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64"],
    "aarch64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64"],
}
SOURCE_IGNORE = shutil.ignore_patterns("tests", "*.egg-info", "__pycache__", "*.pyc", "build", "dist", ".*")


REASONS: list[str] = []


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_digest(source: Path) -> str:
    digest = hashlib.sha256()
    files = [source / "pyproject.toml", source / "README.md"]
    files += sorted(
        p
        for p in (source / "src").rglob("*")
        if p.is_file() and "egg-info" not in str(p) and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args], text=True, capture_output=True, check=False
    )


def package_wheel(source: Path, dest: Path) -> tuple[Path, bool]:
    """The package's wheel for this source, built only when no wheel of this source digest exists."""
    home = dest / "_package" / source_digest(source)
    existing = sorted(home.glob(f"{PACKAGE}-*.whl"))
    if existing:
        return existing[-1], False
    if not (source / "pyproject.toml").exists():
        sys.exit(f"wheelhouse: no {PACKAGE} wheel in {home} and no package source at {source}")
    REASONS.append(f"built the {PACKAGE} wheel for source digest {home.name}")
    with tempfile.TemporaryDirectory() as tmp:
        # Build from a copy: the collection's tree stays untouched (it may be read-only).
        src = Path(tmp) / "src"
        out = Path(tmp) / "out"
        shutil.copytree(source, src, ignore=SOURCE_IGNORE)
        os.environ.setdefault("SOURCE_DATE_EPOCH", "315532800")
        result = pip("wheel", "--no-deps", "-q", "-w", str(out), str(src))
        if result.returncode != 0:  # no index reachable: build with the controller's own setuptools
            result = pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src))
        if result.returncode != 0:
            sys.exit(f"wheelhouse: building the {PACKAGE} wheel failed:\n{result.stdout}{result.stderr}")
        wheel = next(out.glob(f"{PACKAGE}-*.whl"))
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheel, home / wheel.name)
    return home / wheel.name, True


def check_pins(wheel: Path, requirements: Path) -> None:
    """Every Requires-Dist of the package must be pinned in requirements.txt at the same version."""
    pins = {}
    for line in requirements.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [
            line.split(":", 1)[1].strip()
            for line in zf.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    problems = []
    for req in requires:
        if "extra ==" in req:
            continue
        match = re.match(r"^([A-Za-z0-9._-]+)\s*(?:\(?\s*==\s*([^\s);,]+))?", req)
        if not match:
            continue
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        if pins.get(name) is None or (match.group(2) and pins[name] != match.group(2)):
            problems.append(f"{req} (requirements.txt: {name}=={pins.get(name, 'missing')})")
    if problems:
        sys.exit(
            f"wheelhouse: {requirements} does not pin what {wheel.name} requires: {'; '.join(problems)}. "
            "Add the dependency and its sha256 hashes for every target Python and machine."
        )


def copy_if_different(src: Path, dst: Path) -> bool:
    if dst.exists() and sha256(dst) == sha256(src):
        return False
    shutil.copyfile(src, dst)
    REASONS.append(f"copied {dst}")
    return True


def fill_target(dest: Path, name: str, version: str, machine: str, wheel: Path, requirements: Path) -> bool:
    tdir = dest / name
    tdir.mkdir(parents=True, exist_ok=True)
    changed = False
    for stale in tdir.glob(f"{PACKAGE}-*.whl"):
        if stale.name != wheel.name:
            stale.unlink()
            REASONS.append(f"removed {stale}")
            changed = True
    changed |= copy_if_different(wheel, tdir / wheel.name)
    changed |= copy_if_different(requirements, tdir / "requirements.txt")
    args = [
        "download",
        "-q",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        version,
        "--require-hashes",
        "-r",
        str(tdir / "requirements.txt"),
        "-d",
        str(tdir),
    ]
    for platform in PLATFORMS[machine]:
        args += ["--platform", platform]
    if pip(*args, "--no-index", "--find-links", str(tdir)).returncode == 0:
        return changed
    REASONS.append(f"downloaded dependencies for Python {version} {machine}")
    result = pip(*args)
    if result.returncode != 0:
        sys.exit(
            f"wheelhouse: pip download for Python {version} {machine} failed (no index reachable? "
            f"pre-fill {tdir} for an offline controller):\n{result.stdout}{result.stderr}"
        )
    return True


def digest_of(tdir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in tdir.iterdir() if p.is_file()):
        digest.update(f"{path.name} {sha256(path)}\n".encode())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--requirements", type=Path, required=True)
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--target", action="append", default=[], help="PYTHON_VERSION:MACHINE, e.g. 3.11:x86_64")
    ns = parser.parse_args()
    ns.dest.mkdir(parents=True, exist_ok=True)
    wheel, changed = package_wheel(ns.source, ns.dest)
    check_pins(wheel, ns.requirements)
    targets = {}
    for target in sorted(set(ns.target)):
        version, _, machine = target.partition(":")
        if machine not in PLATFORMS:
            sys.exit(f"wheelhouse: machine {machine!r} is not supported (supported: {', '.join(PLATFORMS)})")
        name = f"py{version}-{machine}"
        changed |= fill_target(ns.dest, name, version, machine, wheel, ns.requirements)
        targets[name] = {"dir": str(ns.dest / name), "digest": digest_of(ns.dest / name), "wheel": wheel.name}
    print(json.dumps({"changed": changed, "reasons": REASONS, "version": wheel.name.split("-")[1], "targets": targets}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

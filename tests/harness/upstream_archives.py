#!/usr/bin/env python3
"""Build release archives in upstream's layout from Debian's binaries, and serve them as a local mirror.

GitHub is unreachable here, so the archive install path is exercised with real binaries repackaged the
way upstream ships them (``node_exporter-<v>.linux-amd64/node_exporter``), their real sha256, and a
mirror on 127.0.0.1 that keeps upstream's URL layout (``<base>/v<version>/<file>``).

    upstream_archives.py build [--out DIR] [--vars FILE]  # writes DIR/mirror/... and the Ansible vars
    upstream_archives.py serve [--out DIR] [--port N]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".cache" / "upstream-archives"

# Debian package -> (upstream name, files to take from the package as (path in .deb, name in archive)).
COMPONENTS = {
    "prometheus-node-exporter": ("node_exporter", [("usr/bin/prometheus-node-exporter", "node_exporter")]),
    "prometheus": ("prometheus", [("usr/bin/prometheus", "prometheus"), ("usr/bin/promtool", "promtool")]),
    "prometheus-alertmanager": (
        "alertmanager",
        [("usr/bin/prometheus-alertmanager", "alertmanager"), ("usr/bin/amtool", "amtool")],
    ),
}


def _upstream_version(deb: Path) -> str:
    match = re.match(r"^[^_]+_(\d+\.\d+\.\d+)", deb.name)
    if not match:
        raise SystemExit(f"cannot read a version from {deb.name}")
    return match.group(1)


def _download(package: str, debs: Path) -> Path:
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", "-q", package], cwd=debs, check=True, capture_output=True)
        found = sorted(debs.glob(f"{package}_*.deb"))
    return found[-1]


def _tar_gz(files: dict[str, bytes], top: str) -> bytes:
    """A reproducible .tar.gz: fixed order, owners and times, so its checksum is stable."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        directory = tarfile.TarInfo(top)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name in sorted(files):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(files[name]), 0o755
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build(out: Path) -> dict[str, dict[str, str]]:
    debs = out / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    built: dict[str, dict[str, str]] = {}
    for package, (name, members) in COMPONENTS.items():
        deb = _download(package, debs)
        version = _upstream_version(deb)
        top = f"{name}-{version}.linux-amd64"
        path = out / "mirror" / name / f"v{version}" / f"{top}.tar.gz"
        # The archive is deterministic: rebuilt only when its .deb changed (a rebuild takes seconds).
        stamp = path.with_name(path.name + ".built-from")
        if path.exists() and stamp.exists() and stamp.read_text() == deb.name:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            built[name] = {"version": version, "file": path.name, "sha256": digest}
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            files = {target: (Path(tmp) / source).read_bytes() for source, target in members}
        data = _tar_gz(files, top)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic, so a mirror serving this file from another run never sees half of it.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(path)
        stamp.write_text(deb.name)
        built[name] = {"version": version, "file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
    return built


# Debian's Alertmanager reads its notification templates from this directory (upstream's binary embeds them): a
# host running the rebuilt archive needs them there, so the build leaves them in OUT/alertmanager-templates.
DEBIAN_ALERTMANAGER_TEMPLATES = "usr/share/prometheus/alertmanager"


def alertmanager_templates(out: Path) -> Path:
    target = out / "alertmanager-templates"
    if not (target / "default.tmpl").exists():
        deb = _download("prometheus-alertmanager", out / "debs")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            target.mkdir(parents=True, exist_ok=True)
            for tmpl in (Path(tmp) / DEBIAN_ALERTMANAGER_TEMPLATES).glob("*.tmpl"):
                (target / tmpl.name).write_bytes(tmpl.read_bytes())
    return target


def vars_yaml(built: dict[str, dict[str, str]], base_url: str) -> str:
    lines = ["---", "# Written by tests/harness/upstream_archives.py: archives rebuilt from Debian's binaries."]
    for name, info in built.items():
        lines += [
            f'{name}_version: "{info["version"]}"',
            f"{name}_checksums:",
            f'  amd64: "sha256:{info["sha256"]}"',
            f"{name}_download_base_url: {base_url}/{name}",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "serve"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument("--port", type=int, default=18081, help="mirror port on 127.0.0.1 (default: %(default)s)")
    parser.add_argument("--vars", type=Path, help="where build writes the Ansible vars (default: OUT/vars.yml)")
    args = parser.parse_args(argv)

    if args.command == "build":
        built = build(args.out)
        alertmanager_templates(args.out)
        (args.vars or args.out / "vars.yml").write_text(vars_yaml(built, f"http://127.0.0.1:{args.port}"))
        for name, info in built.items():
            print(f"{name} {info['version']} {info['file']} sha256:{info['sha256']}")
        return 0

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(args.out / "mirror"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print(f"serving {args.out / 'mirror'} on http://127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

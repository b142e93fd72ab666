#!/usr/bin/env bash
# Builds the test's apt repositories in $1 (run inside the nvt-repo container): TEST DOUBLE packages
# built with dpkg-deb, indexed with apt-ftparchive and signed (InRelease, Release.gpg) with a key generated
# here, in NVIDIA's layouts: <root>/nvidia-container-toolkit/stable/deb/amd64 (flat) and
# <root>/cuda/repos/debian1{2,3}/x86_64 (flat).
set -euo pipefail
root=$1
doubles=$(cd "$(dirname "$0")" && pwd)/doubles
work=$(mktemp -d)
export GNUPGHOME=$work/gnupg
rm -rf "$root"
ctk=$root/nvidia-container-toolkit/stable/deb/amd64
cuda=$root/cuda/pool
mkdir -p "$ctk" "$cuda" "$root/keys" "$root/cuda/repos/debian12" "$root/cuda/repos/debian13" "$GNUPGHOME"
chmod 700 "$GNUPGHOME"
ln -s ../../pool "$root/cuda/repos/debian12/x86_64"
ln -s ../../pool "$root/cuda/repos/debian13/x86_64"

# build OUTDIR NAME VERSION DEPENDS CONFLICTS [SRC:DEST ...]
build() {
  local out=$1 name=$2 version=$3 depends=$4 conflicts=$5
  shift 5
  local dir=$work/$name-$version
  mkdir -p "$dir/DEBIAN"
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: all"
    echo "Maintainer: llm_monitor.fleet tests <tests@invalid>"
    [ -n "$depends" ] && echo "Depends: $depends"
    [ -n "$conflicts" ] && echo "Conflicts: $conflicts" && echo "Replaces: $conflicts"
    echo "Description: TEST DOUBLE of $name, built by molecule/nvidia_toolkit"
    echo " Not NVIDIA software: fake commands for tests on machines without GPUs."
  } >"$dir/DEBIAN/control"
  local spec src dest
  for spec in "$@"; do
    src=${spec%%:*}
    dest=$dir/${spec#*:}
    mkdir -p "$(dirname "$dest")"
    sed -e "s/@VERSION@/${version%-*}/" -e "s/@DRIVER_VERSION@/${version%-*}/" "$doubles/$src" >"$dest"
    case $dest in *.service) chmod 644 "$dest" ;; *) chmod 755 "$dest" ;; esac
  done
  dpkg-deb --root-owner-group --build "$dir" "$out/${name}_${version}_all.deb" >/dev/null
}

for v in 1.17.8-1 1.18.0-1; do
  build "$ctk" libnvidia-container1 "$v" "" ""
  build "$ctk" libnvidia-container-tools "$v" "libnvidia-container1 (= $v)" ""
  build "$ctk" nvidia-container-toolkit-base "$v" "python3" "" \
    nvidia-ctk:usr/bin/nvidia-ctk nvidia-container-runtime:usr/bin/nvidia-container-runtime
  build "$ctk" nvidia-container-toolkit "$v" \
    "nvidia-container-toolkit-base (= $v), libnvidia-container-tools (= $v)" ""
done
build "$cuda" cuda-drivers-580 580.82.07-1 "" "cuda-drivers-575" \
  nvidia-smi:usr/bin/nvidia-smi nvidia-persistenced.service:lib/systemd/system/nvidia-persistenced.service
build "$cuda" cuda-drivers-575 575.57.08-1 "" "cuda-drivers-580" \
  nvidia-smi:usr/bin/nvidia-smi nvidia-persistenced.service:lib/systemd/system/nvidia-persistenced.service

gpg --batch --passphrase '' --quick-gen-key 'llm_monitor.fleet TEST repository key <tests@invalid>' ed25519 sign never 2>/dev/null
gpg --batch --armor --export >"$root/keys/test-repo.asc"
for repo in "$ctk" "$cuda"; do
  (
    cd "$repo"
    apt-ftparchive packages . >Packages
    apt-ftparchive release . >Release
    gpg --batch --yes --clearsign -o InRelease Release
    gpg --batch --yes --armor --detach-sign -o Release.gpg Release
  )
done
rm -rf "$work"
sha256sum "$root/keys/test-repo.asc" | cut -d' ' -f1

#!/usr/bin/env bash
# Idempotent setup of the ksnoop VM test bed:
#   - Debian's guest kernels (linux-image-amd64: 6.1; linux-image-6.12-amd64: 6.12,
#     with kprobe-multi and trampolines that carry stack arguments) and qemu-system-x86
#   - virtme-ng (PyPI) in the virtualenv .venv-vng at the repo root
# Fast and quiet when everything is already in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

log() { echo "tests/vm/setup.sh: $*" >&2; }

# --- Debian packages -------------------------------------------------------
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
# busybox-static: virtme-ng builds an initramfs around it for distro kernels (9p as a module)
for p in linux-image-amd64 linux-image-6.12-amd64 qemu-system-x86 busybox-static kmod; do
    pkg_ok "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        log "need root to apt-get install ${missing[*]}"; exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" >/dev/null || {
        apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
fi

# --- virtme-ng in .venv-vng ------------------------------------------------
VENV="$ROOT/.venv-vng"
if [ ! -x "$VENV/bin/vng" ]; then
    log "installing virtme-ng into $VENV"
    PY=/usr/bin/python3
    "$PY" -c 'import venv, ensurepip' 2>/dev/null || PY=python3
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check virtme-ng
    "$VENV/bin/vng" --version >/dev/null 2>&1 || { log "vng not usable after install"; exit 1; }
fi
exit 0

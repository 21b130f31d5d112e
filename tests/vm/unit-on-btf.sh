#!/usr/bin/env bash
# Run the unit tier on this host at native speed, but with another kernel's
# BTF in place of the running kernel's: the BTF of a guest kernel in /boot
# (default: the newest Debian 6.1 one, as tests/vm/run.sh picks) is extracted
# from its bzImage and bind-mounted over /sys/kernel/btf/vmlinux in a private
# mount namespace (nothing outside this command sees it).
#
#   tests/vm/unit-on-btf.sh [PYTEST ARGS...]      (root; KSNOOP_VM_KERNEL=<ver> to choose)
#
# The whole unit tier, unless an argument names tests (tests/unit/test_x.py,
# tests/unit/test_x.py::test_y): then only those.
#
# A quick way to find unit tests that assume the host kernel's functions and
# types (minutes instead of a TCG boot).  Only the BTF changes: /proc/kallsyms
# and everything else are still the host's, so the real proof stays the unit
# tier inside the guest (tests/vm/guest-suite.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ME="tests/vm/unit-on-btf.sh"
[ "$(id -u)" -eq 0 ] || { echo "$ME: needs root (mount namespace, bind mount)" >&2; exit 2; }

KVER="${KSNOOP_VM_KERNEL:-}"
if [ -z "$KVER" ]; then
    KVER="$(for f in /boot/vmlinuz-6.1.*-amd64; do
                [ -e "$f" ] && [ "${f#/boot/vmlinuz-}" != "$(uname -r)" ] && echo "${f#/boot/vmlinuz-}"
            done | sort -V | tail -n1)"
fi
[ -n "$KVER" ] && [ -e "/boot/vmlinuz-$KVER" ] || {
    echo "$ME: no guest kernel in /boot (run tests/vm/setup.sh)" >&2; exit 1; }

WORK="${TMPDIR:-/tmp}/ksnoop-btf-$KVER"
BTF="$WORK/vmlinux.btf"
if [ ! -s "$BTF" ]; then
    mkdir -p "$WORK"
    # the bzImage carries the kernel ELF compressed: xz for Debian's 6.1,
    # zstd for its 6.12 (zstd(1) decompresses that one: Python has no zstd)
    /usr/bin/python3 - "/boot/vmlinuz-$KVER" "$WORK/vmlinux" <<'EOF'
import lzma, shutil, subprocess, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
xz, zst = data.find(b"\xfd7zXZ\x00"), data.find(b"\x28\xb5\x2f\xfd")
if xz >= 0 and (zst < 0 or xz < zst):
    elf = lzma.LZMADecompressor().decompress(data[xz:])
elif zst >= 0:
    if not shutil.which("zstd"):
        sys.exit(f"{src}: zstd-compressed kernel and no zstd(1) to decompress it (apt-get install zstd)")
    # the frame is followed by the bzImage's trailer: zstd complains about it
    # after writing the whole frame, so judge by the output, not the status
    elf = subprocess.run(["zstd", "-dcq"], input=data[zst:], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, check=False).stdout
else:
    sys.exit(f"{src}: no xz- or zstd-compressed kernel inside")
if not elf.startswith(b"\x7fELF"):
    sys.exit(f"{src}: the compressed payload is not an ELF kernel")
open(dst, "wb").write(elf)
EOF
    objcopy -O binary --only-section=.BTF "$WORK/vmlinux" "$BTF.tmp"
    rm -f "$WORK/vmlinux"
    [ -s "$BTF.tmp" ] || { echo "$ME: /boot/vmlinuz-$KVER has no .BTF section" >&2; exit 1; }
    mv "$BTF.tmp" "$BTF"
fi

echo "$ME: unit tier with the BTF of $KVER" >&2
cd "$ROOT"
export HOME="$WORK/home" KSNOOP_STRICT="${KSNOOP_STRICT:-1}"
mkdir -p "$HOME"
WHAT=(tests/unit)
for a in "$@"; do
    case "$a" in tests/*) WHAT=() ;; esac
done
exec unshare -m bash -c 'mount --bind "$1" /sys/kernel/btf/vmlinux && shift &&
    exec "$0" -m pytest -p no:cacheprovider "$@"' "$ROOT/.venv/bin/python" "$BTF" ${WHAT[@]+"${WHAT[@]}"} "$@"

#!/usr/bin/env bash
# Run the unit tier on this host at native speed, but with another kernel's
# BTF in place of the running kernel's: the BTF of a guest kernel in /boot
# (default: the newest Debian 6.1 one, as tests/vm/run.sh picks) is extracted
# from its bzImage and bind-mounted over /sys/kernel/btf/vmlinux in a private
# mount namespace (nothing outside this command sees it).
#
#   tests/vm/unit-on-btf.sh [PYTEST ARGS...]      (root; KSNOOP_VM_KERNEL=<ver> to choose)
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
    # the bzImage carries the kernel ELF compressed (xz for Debian's 6.1)
    /usr/bin/python3 - "/boot/vmlinuz-$KVER" "$WORK/vmlinux" <<'EOF'
import lzma, sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"\xfd7zXZ\x00")
if at < 0:
    sys.exit(f"{sys.argv[1]}: no xz-compressed kernel inside")
elf = lzma.LZMADecompressor().decompress(data[at:])
if not elf.startswith(b"\x7fELF"):
    sys.exit(f"{sys.argv[1]}: the xz payload is not an ELF kernel")
open(sys.argv[2], "wb").write(elf)
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
exec unshare -m bash -c 'mount --bind "$1" /sys/kernel/btf/vmlinux && shift &&
    exec "$0" -m pytest -p no:cacheprovider "$@"' "$ROOT/.venv/bin/python" "$BTF" tests/unit "$@"

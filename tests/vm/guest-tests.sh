#!/usr/bin/env bash
# Boot the VM test bed (Debian 6.1, then 6.12, under TCG) and run the guest
# tier (tests/guest) in each boot, after the unit tier on the guest's kernel
# in the 6.1 boot, and kernel lockdown at the end of the 6.12 boot: see
# tests/vm/guest-suite.sh.
# Exit 0 only if all passed.
# Extra arguments go to both pytest runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${KSNOOP_VM_OUT:-$ROOT/vmout}"
rm -rf "$OUT" && mkdir -p "$OUT"
# One boot per guest kernel (tests/vm/kernels.sh: Debian 6.1 and 6.12), each
# with its own OUT/<version>; all run even if one fails.
. "$ROOT/tests/vm/kernels.sh"
mapfile -t KERNELS < <(guest_kernels)
[ ${#KERNELS[@]} -eq 2 ] || [ -n "${KSNOOP_VM_KERNELS:-}" ] || {
    echo "tests/vm/guest-tests.sh: FAIL: want the 6.1 and 6.12 guest kernels, found: ${KERNELS[*]:-none}" >&2
    exit 125; }
rc=0
for k in "${KERNELS[@]}"; do
    mkdir -p "$OUT/$k"
    KSNOOP_VM_KERNEL="$k" bash "$ROOT/tests/vm/run.sh" --timeout "${KSNOOP_VM_TIMEOUT:-1800}" \
        "$OUT/$k" -- bash "$ROOT/tests/vm/guest-suite.sh" "$@" || rc=$?
done
# Kernel lockdown is checked at the end of the 6.12 boot (guest-suite.sh
# raises it there).  KSNOOP_VM_LOCKDOWN_BOOT=1 adds a boot of 6.12 with
# lockdown=confidentiality on its command line, for the same tests.
if [ "${KSNOOP_VM_LOCKDOWN_BOOT:-0}" = 1 ]; then
    lk="$(printf '%s\n' "${KERNELS[@]}" | grep '^6\.12\.' | tail -n1 || true)"
    lk="${lk:-${KERNELS[${#KERNELS[@]}-1]}}"
    mkdir -p "$OUT/$lk-lockdown"
    KSNOOP_VM_KERNEL="$lk" bash "$ROOT/tests/vm/run.sh" --timeout 900 \
        --append lockdown=confidentiality "$OUT/$lk-lockdown" -- \
        env KSNOOP_GUEST_LOCKDOWN=confidentiality KSNOOP_STRICT="${KSNOOP_STRICT:-1}" \
        "$ROOT/.venv/bin/python" -m pytest -v -p no:cacheprovider --durations=10 \
        "$ROOT/tests/guest/test_hostile_guest.py" || rc=$?
fi
exit "$rc"

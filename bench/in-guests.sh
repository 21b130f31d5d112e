#!/usr/bin/env bash
# Boot the VM test bed once per guest kernel (Debian 6.1 and 6.12, or the
# versions in $KSNOOP_BENCH_KERNELS) and run COMMAND inside each, from the
# source tree.  Used by run-backends.sh and run-filters.sh.
#   bench/in-guests.sh OUTDIR COMMAND [ARGS...]
# Each guest's log: OUTDIR/<version>/guest.log; exit status 1 if COMMAND
# failed in any guest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 2 ] || { echo "usage: bench/in-guests.sh OUTDIR COMMAND [ARGS...]" >&2; exit 2; }
OUT="$1"; shift
. "$ROOT/tests/vm/kernels.sh"
# shellcheck disable=SC2206  # versions: words on purpose
KERNELS=(${KSNOOP_BENCH_KERNELS:-})
[ ${#KERNELS[@]} -gt 0 ] || mapfile -t KERNELS < <(guest_kernels)
rc=0
for k in "${KERNELS[@]}"; do
    rm -rf "${OUT:?}/$k" && mkdir -p "$OUT/$k"
    KSNOOP_VM_KERNEL="$k" bash "$ROOT/tests/vm/run.sh" --timeout "${KSNOOP_VM_TIMEOUT:-3600}" \
        "$OUT/$k" -- "$@" || rc=1
done
exit "$rc"

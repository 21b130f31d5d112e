#!/usr/bin/env bash
# Boot the VM test bed once per kernel (Debian 6.1 and 6.12) and run the
# backend benchmarks inside: bench/backend_cost.py (fentry vs the reference)
# and bench/attach_time.py (every tcp_* function vs bpftrace's kprobe:tcp_*).
#   bench/run-backends.sh [KERNEL_VERSION...]
# Results: each guest's log in $KSNOOP_BENCH_OUT/<version>/guest.log (default
# ./vmout-backends); exit status 1 if a target was missed in any guest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${KSNOOP_BENCH_OUT:-$ROOT/vmout-backends}"
. "$ROOT/tests/vm/kernels.sh"
KERNELS=("$@")
[ ${#KERNELS[@]} -gt 0 ] || mapfile -t KERNELS < <(guest_kernels)
rc=0
for k in "${KERNELS[@]}"; do
    rm -rf "${OUT:?}/$k" && mkdir -p "$OUT/$k"
    KSNOOP_VM_KERNEL="$k" bash "$ROOT/tests/vm/run.sh" --timeout "${KSNOOP_VM_TIMEOUT:-3600}" \
        "$OUT/$k" -- bash -c '"$0" bench/backend_cost.py; a=$?; "$0" bench/attach_time.py; b=$?
                              [ $a -ne 1 ] && [ $b -eq 0 ]' \
        "$ROOT/.venv/bin/python" || rc=1
done
exit "$rc"

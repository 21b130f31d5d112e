#!/usr/bin/env bash
# Boot the VM test bed once per kernel (Debian 6.1 and 6.12) and run the
# backend benchmarks inside: bench/backend_cost.py (fentry vs the reference)
# and bench/attach_time.py (every tcp_* function vs bpftrace's kprobe:tcp_*).
#   bench/run-backends.sh [KERNEL_VERSION...]
# Results: each guest's log in $KSNOOP_BENCH_OUT/<version>/guest.log (default
# ./vmout-backends); exit status 1 if a target was missed in any guest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KSNOOP_BENCH_KERNELS="${*:-${KSNOOP_BENCH_KERNELS:-}}" exec bash "$ROOT/bench/in-guests.sh" \
    "${KSNOOP_BENCH_OUT:-$ROOT/vmout-backends}" \
    bash -c '"$0" bench/backend_cost.py; a=$?; "$0" bench/attach_time.py; b=$?
             [ $a -ne 1 ] && [ $b -eq 0 ]' "$ROOT/.venv/bin/python"

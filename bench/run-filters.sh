#!/usr/bin/env bash
# Boot the VM test bed once per kernel (Debian 6.1 and 6.12) and run
# bench/filter_cost.py inside (a rejecting condition of three comparisons
# against one, -c/--cgroup against -p, by the kernel's own per-program time).
#   bench/run-filters.sh [KERNEL_VERSION...]
# Under TCG a compile costs far more than a run: each variant's tracer is
# started once and measured over several workload runs (filter_cost.py
# --rounds/--runs/--calls; override with KSNOOP_FILTER_ARGS).
# Results: each guest's log in $KSNOOP_BENCH_OUT/<version>/guest.log (default
# ./vmout-filters); exit status 1 if a target was missed in any guest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2086  # the arguments: words on purpose
KSNOOP_BENCH_KERNELS="${*:-${KSNOOP_BENCH_KERNELS:-}}" exec bash "$ROOT/bench/in-guests.sh" \
    "${KSNOOP_BENCH_OUT:-$ROOT/vmout-filters}" \
    "$ROOT/.venv/bin/python" "$ROOT/bench/filter_cost.py" \
    ${KSNOOP_FILTER_ARGS:---rounds 1 --runs 5 --calls 300000}

#!/usr/bin/env bash
# Boot the VM test bed once and run bench/guest_cost.py inside it (root, kprobes).
#   bench/run-guest.sh [guest_cost.py args...]
# Results: the table on stdout; the guest's log in $KSNOOP_BENCH_OUT (default
# ./vmout-bench).  Exit status: guest_cost.py's (1 = a target missed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${KSNOOP_BENCH_OUT:-$ROOT/vmout-bench}"
rm -rf "$OUT" && mkdir -p "$OUT"
exec bash "$ROOT/tests/vm/run.sh" --timeout "${KSNOOP_VM_TIMEOUT:-1500}" "$OUT" -- \
    "$ROOT/.venv/bin/python" "$ROOT/bench/guest_cost.py" "$@"

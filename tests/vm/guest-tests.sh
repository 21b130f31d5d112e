#!/usr/bin/env bash
# Boot the VM test bed once (Debian 6.1 under TCG) and run, in that one boot,
# the unit tier on the guest's kernel and then the guest tier (tests/guest):
# see tests/vm/guest-suite.sh.  Exit 0 only if both passed.
# Extra arguments go to both pytest runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${KSNOOP_VM_OUT:-$ROOT/vmout}"
rm -rf "$OUT" && mkdir -p "$OUT"
exec bash "$ROOT/tests/vm/run.sh" --timeout "${KSNOOP_VM_TIMEOUT:-1800}" "$OUT" -- \
    bash "$ROOT/tests/vm/guest-suite.sh" "$@"

#!/usr/bin/env bash
# Boot the VM test bed once and run the guest test tier (tests/guest) inside it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${KSNOOP_VM_OUT:-$ROOT/vmout}"
rm -rf "$OUT" && mkdir -p "$OUT"
exec bash "$ROOT/tests/vm/run.sh" --timeout "${KSNOOP_VM_TIMEOUT:-1500}" "$OUT" -- \
    "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/tests/guest" "$@"

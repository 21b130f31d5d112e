#!/usr/bin/env bash
# Inside the guest (run by tests/vm/guest-tests.sh through run.sh): the unit
# tier on the guest's own kernel (Debian 6.1: another BTF than the host's), then
# the guest tier (real kprobe traces).  Both run even if the first fails, so one
# boot reports everything; the exit status is 0 only if both passed.
#
# Strict mode (KSNOOP_STRICT=1): a skipped test counts as a failure here too.
# Under TCG everything is 10-30x slower, so the unit tier's sampled tests run
# smaller samples here (the same checks, on this kernel): the `info`
# comparison with the reference ksnoop (KSNOOP_INFO_SAMPLE functions) and the
# fuzzers (KSNOOP_FUZZ_SPECS specs, KSNOOP_FUZZ_FILES BTF files,
# KSNOOP_FUZZ_TYPES kernel types; their seeds are printed for reruns).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 125
export KSNOOP_STRICT="${KSNOOP_STRICT:-1}"
export KSNOOP_INFO_SAMPLE="${KSNOOP_INFO_SAMPLE:-200}"
export KSNOOP_FUZZ_SPECS="${KSNOOP_FUZZ_SPECS:-1000}"
export KSNOOP_FUZZ_FILES="${KSNOOP_FUZZ_FILES:-50}"
export KSNOOP_FUZZ_TYPES="${KSNOOP_FUZZ_TYPES:-60}"
# hang guards (tests/unit/clirun.py deadline) sized for native speed: x30 here
export KSNOOP_TIME_SCALE="${KSNOOP_TIME_SCALE:-30}"
export PYTHONUNBUFFERED=1  # guest.log shows progress as it happens
PY="$ROOT/.venv/bin/python"
# -v and the slowest tests: the log is all there is to see of a guest run; a
# test stuck for 10 minutes gets its stack dumped (faulthandler) to the log.
PYTEST=(-v -p no:cacheprovider --durations=15 -o faulthandler_timeout=600)

echo "guest kernel: $(uname -r)"
tier() {
    local name="$1"; shift
    local t0 t1 rc
    t0=$(date +%s.%N)
    "$PY" -m pytest "${PYTEST[@]}" "$@"
    rc=$?
    t1=$(date +%s.%N)
    awk -v n="$name" -v a="$t0" -v b="$t1" -v rc="$rc" \
        'BEGIN { printf "guest-suite: %s tier: exit %d, %.1f s\n", n, rc, b - a }'
    return "$rc"
}

# The unit tier runs inside the guest too, to prove it passes on a kernel
# other than the host's (issue 7): in the 6.1 boot by default (the kernel
# least like the host's 6.18; about 8.5 minutes with two workers under TCG),
# not in the 6.12 boot (CI's 40-minute budget).  KSNOOP_GUEST_UNIT=all runs
# it in any boot, =only runs it alone, =none leaves it out.
# tests/vm/unit-on-btf.sh runs it natively against a guest kernel's BTF, the
# quick way to find tests that assume the host's kernel.
case "$(uname -r)" in
    6.1.*) KSNOOP_GUEST_UNIT="${KSNOOP_GUEST_UNIT:-all}" ;;
    *) KSNOOP_GUEST_UNIT="${KSNOOP_GUEST_UNIT:-none}" ;;
esac
UNIT=0
if [ "${KSNOOP_GUEST_UNIT:-}" = all ] || [ "${KSNOOP_GUEST_UNIT:-}" = only ]; then
    # two pytest workers (pytest-xdist): the guest has two vCPUs, and QEMU
    # runs each on its own host thread
    tier unit -n "${KSNOOP_GUEST_UNIT_WORKERS:-2}" "$ROOT/tests/unit" "$@"; UNIT=$?
    [ "$KSNOOP_GUEST_UNIT" = only ] && exit "$UNIT"
fi
# The tests that trace with several tracers at once (trace, aggregation,
# questions) run under one backend per kernel: the default (auto: fentry/fexit)
# on 6.1, where the reference ksnoop can be compared with, and --backend kprobe
# on 6.12 when they run there (KSNOOP_GUEST_SUITES, KSNOOP_GUEST_QUESTIONS
# below); the backend tests (test_backends_guest.py) run every backend on
# both.  Every test under both backends on both kernels is over the CI's
# 40-minute budget under TCG: KSNOOP_GUEST_BACKENDS=auto,kprobe
# KSNOOP_GUEST_SUITES=1 KSNOOP_GUEST_QUESTIONS=1 runs that (tests/vm/README.md).
case "$(uname -r)" in
    6.1.*) export KSNOOP_GUEST_BACKENDS="${KSNOOP_GUEST_BACKENDS:-auto}" ;;
    *) export KSNOOP_GUEST_BACKENDS="${KSNOOP_GUEST_BACKENDS:-kprobe}" ;;
esac
# The questions of issue 9 (tests/guest/test_questions_guest.py: conditions,
# strings, filters, latency, stacks on real traffic) run in the 6.1 boot
# (fentry/fexit, the backend users get by default), about 3 minutes; the 6.12
# boot leaves them out for the CI's budget (the unit tier in the 6.1 boot
# took their place there).  KSNOOP_GUEST_QUESTIONS=1 runs them in any boot,
# =0 in none.
case "$(uname -r)" in
    6.1.*) KSNOOP_GUEST_QUESTIONS="${KSNOOP_GUEST_QUESTIONS:-1}" ;;
    *) KSNOOP_GUEST_QUESTIONS="${KSNOOP_GUEST_QUESTIONS:-0}" ;;
esac
SKIP=()
[ "$KSNOOP_GUEST_QUESTIONS" = 1 ] || SKIP=(--ignore "$ROOT/tests/guest/test_questions_guest.py")
# The trace and aggregation suites (several tracers each, side by side with
# the reference ksnoop where it can trace) run in the 6.1 boot by default;
# the 6.12 boot keeps the backend tests (every backend, real traffic), the
# hostile settings and lockdown, for the CI's budget.  KSNOOP_GUEST_SUITES=1
# runs them in any boot (under KSNOOP_GUEST_BACKENDS), =0 in none.
case "$(uname -r)" in
    6.1.*) KSNOOP_GUEST_SUITES="${KSNOOP_GUEST_SUITES:-1}" ;;
    *) KSNOOP_GUEST_SUITES="${KSNOOP_GUEST_SUITES:-0}" ;;
esac
[ "$KSNOOP_GUEST_SUITES" = 1 ] || SKIP+=(--ignore "$ROOT/tests/guest/test_trace_guest.py"
                                        --ignore "$ROOT/tests/guest/test_aggregate_guest.py")
tier guest "$ROOT/tests/guest" "${SKIP[@]}" "$@"; GUEST=$?
# Last, kernel lockdown (tests/guest/test_hostile_guest.py's lockdown part):
# raised to confidentiality for the rest of the boot through securityfs, as
# root can (never lowered again: nothing may run after it).  Kprobes, BPF
# reads of kernel memory and tracefs are checked when used, so a lockdown
# raised now refuses them as one set on the command line would.  In the 6.12
# boot by default; KSNOOP_GUEST_LOCKDOWN_AT_END=1 or =0 chooses for any boot.
case "$(uname -r)" in
    6.12.*) KSNOOP_GUEST_LOCKDOWN_AT_END="${KSNOOP_GUEST_LOCKDOWN_AT_END:-1}" ;;
    *) KSNOOP_GUEST_LOCKDOWN_AT_END="${KSNOOP_GUEST_LOCKDOWN_AT_END:-0}" ;;
esac
LOCKED=0
if [ "$KSNOOP_GUEST_LOCKDOWN_AT_END" = 1 ]; then
    LK=/sys/kernel/security/lockdown
    mountpoint -q /sys/kernel/security || mount -t securityfs securityfs /sys/kernel/security
    if echo confidentiality > "$LK" && grep -q '\[confidentiality\]' "$LK"; then
        KSNOOP_GUEST_LOCKDOWN=confidentiality tier lockdown \
            "$ROOT/tests/guest/test_hostile_guest.py" "$@"; LOCKED=$?
    else
        echo "guest-suite: FAIL: cannot raise lockdown to confidentiality ($LK: $(cat "$LK" 2>&1))"
        LOCKED=1
    fi
fi
[ "$UNIT" -eq 0 ] && [ "$GUEST" -eq 0 ] && [ "$LOCKED" -eq 0 ]

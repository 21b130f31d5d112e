#!/usr/bin/env bash
# Run a command as root inside a Debian 6.1 guest kernel (kprobes, BTF, modules)
# under qemu TCG via virtme-ng, and bring back its exit status.
#
#   tests/vm/run.sh [--timeout SECS] [--append OPTS] OUTDIR -- COMMAND [ARGS...]
#
# --append OPTS (or $KSNOOP_VM_APPEND) adds options to the guest kernel's
# command line, e.g. --append lockdown=confidentiality (both are passed on).
#
# OUTDIR (created if needed) is the only writable, host-shared directory in the
# guest.  After the run it holds:
#   guest.log    COMMAND's stdout+stderr (also printed here after the VM exits)
#   exit_status  COMMAND's exit status, written from inside the guest
#   console.log  the raw VM console (kernel + virtme-ng messages)
#   timing       host wall times (boot-to-command, total)
# The guest sees the host root filesystem read-only; /tmp in the guest is a
# writable overlay (changes are not visible on the host).  cwd is the repo root.
# Exit status: COMMAND's, or 124 on timeout / 125 if the VM did not run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ME="tests/vm/run.sh"
TIMEOUT=900

usage() { echo "usage: $ME [--timeout SECS] [--append OPTS] OUTDIR -- COMMAND [ARGS...]" >&2; exit 2; }
APPEND=()
[ -z "${KSNOOP_VM_APPEND:-}" ] || APPEND+=(--append "$KSNOOP_VM_APPEND")

while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) [ $# -ge 2 ] || usage; TIMEOUT="$2"; shift 2 ;;
        --timeout=*) TIMEOUT="${1#*=}"; shift ;;
        --append) [ $# -ge 2 ] && [ -n "$2" ] || usage; APPEND+=(--append "$2"); shift 2 ;;
        --append=*) [ -n "${1#*=}" ] || usage; APPEND+=(--append "${1#*=}"); shift ;;
        -h|--help) usage ;;
        --) usage ;;
        *) break ;;
    esac
done
[ $# -ge 3 ] && [ "$2" = "--" ] || usage
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || usage
OUTDIR="$1"; shift 2

mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
case "$OUTDIR" in
    /|/tmp|"$ROOT") echo "$ME: OUTDIR must be a dedicated directory, not $OUTDIR" >&2; exit 2 ;;
esac

"$ROOT/tests/vm/setup.sh"
HOSTPATH="$PATH"
export PATH="$ROOT/.venv-vng/bin:$PATH"

# Guest kernel: newest Debian 6.1 kernel in /boot with modules, never the host's.
KVER="${KSNOOP_VM_KERNEL:-}"
if [ -z "$KVER" ]; then
    KVER="$(for f in /boot/vmlinuz-6.1.*-amd64; do
                [ -e "$f" ] || continue
                v="${f#/boot/vmlinuz-}"
                [ "$v" != "$(uname -r)" ] && [ -d "/lib/modules/$v" ] && echo "$v"
            done | sort -V | tail -n1)"
fi
if [ -z "$KVER" ] || [ ! -e "/boot/vmlinuz-$KVER" ]; then
    echo "$ME: FAIL: no Debian 6.1 guest kernel in /boot (run tests/vm/setup.sh)" >&2
    exit 125
fi

rm -f "$OUTDIR/guest.log" "$OUTDIR/exit_status" "$OUTDIR/console.log" \
      "$OUTDIR/timing" "$OUTDIR/.started"

# The guest-side wrapper: environment setup, then COMMAND with its output and
# exit status captured in OUTDIR.
GUEST="$OUTDIR/.guest-run.sh"
{
    echo '#!/bin/bash'
    printf 'OUTDIR=%q\nROOT=%q\nHOSTPATH=%q\n' "$OUTDIR" "$ROOT" "$HOSTPATH"
    cat <<'GEOF'
date +%s.%N > "$OUTDIR/.started"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$HOSTPATH"
export PYTHONDONTWRITEBYTECODE=1
export KSNOOP_VM=1  # tests may rely on being in the test bed (kprobes): see tests/guest
export HOME=/tmp/home; mkdir -p "$HOME"
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
mountpoint -q /sys/kernel/debug   || mount -t debugfs nodev /sys/kernel/debug 2>/dev/null
mountpoint -q /sys/fs/bpf         || mount -t bpf bpf /sys/fs/bpf 2>/dev/null
ip link set lo up
cd "$ROOT" || exit 125
GEOF
    printf '%q ' "$@"
    echo '> "$OUTDIR/guest.log" 2>&1 < /dev/null'
    echo 'echo $? > "$OUTDIR/exit_status"'
    echo 'sync'
} > "$GUEST"

T0=$(date +%s.%N)
set +e
timeout -k 15 "$TIMEOUT" vng --run "$KVER" --disable-kvm --memory 2G --cpus 2 \
    --rwdir "$OUTDIR" ${APPEND[@]+"${APPEND[@]}"} --exec "bash $(printf %q "$GUEST")" \
    < /dev/null > "$OUTDIR/console.log" 2>&1
VRC=$?
set -e
T1=$(date +%s.%N)

if [ -e "$OUTDIR/.started" ]; then
    awk -v a="$T0" -v b="$(cat "$OUTDIR/.started")" -v c="$T1" 'BEGIN {
        printf "boot_to_command_s %.1f\ntotal_s %.1f\n", b - a, c - a }' > "$OUTDIR/timing"
else
    awk -v a="$T0" -v c="$T1" 'BEGIN { printf "total_s %.1f\n", c - a }' > "$OUTDIR/timing"
fi

if [ -f "$OUTDIR/guest.log" ]; then
    echo "----- guest.log ($KVER) -----"
    cat "$OUTDIR/guest.log"
    echo "----- end guest.log -----"
fi

if [ "$VRC" -eq 124 ] || [ "$VRC" -eq 137 ]; then
    echo "$ME: FAIL: VM timed out after ${TIMEOUT}s (console: $OUTDIR/console.log)" >&2
    exit 124
fi
if [ ! -s "$OUTDIR/exit_status" ]; then
    tail -n 20 "$OUTDIR/console.log" >&2
    echo "$ME: FAIL: VM did not run the command (vng exit $VRC; console: $OUTDIR/console.log)" >&2
    exit 125
fi
RC="$(cat "$OUTDIR/exit_status")"
echo "$ME: exit status $RC, $(tr '\n' ' ' < "$OUTDIR/timing")" >&2
exit "$RC"

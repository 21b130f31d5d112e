# Sourced by tests/vm/guest-tests.sh and bench/run-backends.sh.
# guest_kernels: the kernels the VM test bed boots, one version per line: the
# newest Debian 6.1 and 6.12 kernels in /boot that have their modules (never
# the host's own).  $KSNOOP_VM_KERNELS (space-separated versions) overrides.
guest_kernels() {
    if [ -n "${KSNOOP_VM_KERNELS:-}" ]; then
        printf '%s\n' $KSNOOP_VM_KERNELS
        return
    fi
    local series f v
    for series in 6.1 6.12; do
        for f in /boot/vmlinuz-"$series".*-amd64; do
            [ -e "$f" ] || continue
            v="${f#/boot/vmlinuz-}"
            [ "$v" != "$(uname -r)" ] && [ -d "/lib/modules/$v" ] && echo "$v"
        done | sort -V | tail -n1
    done
}

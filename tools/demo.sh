#!/usr/bin/env bash
# `make demo`: show ksnoop's main job on real kernel activity.
# Traces live on this machine when it can attach kprobes; otherwise boots the
# VM test bed (a Debian 6.1 kernel with kprobes) and runs the same demo there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
K=("$ROOT/.venv/bin/python" -m ksnoop)

if [ "${1:-}" != "--here" ] && ! "$ROOT/.venv/bin/python" -c \
        'import sys; from ksnoop.kernel.features import kprobes_available; sys.exit(0 if kprobes_available()[0] else 1)'; then
    echo "== ksnoop info (this machine)"
    "${K[@]}" info ip_send_skb do_sys_openat2 SEQ_printf
    echo "== this kernel cannot attach kprobes: running the trace demo in the VM test bed"
    bash tests/vm/setup.sh
    out="$ROOT/vmout-demo"
    rm -rf "$out"
    exec bash tests/vm/run.sh --timeout 900 "$out" -- bash tools/demo.sh --here
fi

echo "== ksnoop info ip_send_skb"
"${K[@]}" info ip_send_skb
echo '== ksnoop "ip_send_skb(skb->len == 84, skb)" while 2 UDP datagrams go to 127.0.0.1'
err=$(mktemp)
"${K[@]}" "ip_send_skb(skb->len == 84, skb)" "do_sys_openat2(filename, return < 0)" -o text \
    > /tmp/ksnoop-demo.out 2> "$err" &
pid=$!
for _ in $(seq 600); do grep -q "ksnoop: tracing" "$err" && break; sleep 0.5; done
python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(2):
    s.sendto(b"k" * 56, ("127.0.0.1", 9999))
try:
    open("/nonexistent/ksnoop-demo")
except OSError:
    pass
PY
sleep 2
kill -INT "$pid"; wait "$pid" || true
head -1 /tmp/ksnoop-demo.out
# one event of each function (events are blocks ending in ");")
for f in ip_send_skb do_sys_openat2; do
    awk -v f=" $f\\(" '$0 ~ f {p=1} p {print; n++} /^\);/ {if (p) exit} n > 40 {print "  ..."; exit}' \
        /tmp/ksnoop-demo.out
done
cat "$err"
echo '== the same, one JSON object per line: ksnoop -o json "ip_send_skb(skb->len, return)"'
"${K[@]}" -o json -n 2 "ip_send_skb(skb->len, return)" 2> "$err" &
pid=$!
for _ in $(seq 600); do grep -q "ksnoop: tracing" "$err" && break; sleep 0.5; done
python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"k" * 56, ("127.0.0.1", 9999))'
wait "$pid" || true
cat "$err"

#!/usr/bin/env bash
# Soak test of a real vhostd (issue 15):
#   scripts/soak.sh MINUTES [soak flags...]     (as root; CI: scripts/soak.sh 1)
# Builds vhostd and qemu-tests/soak, makes a network namespace of its own,
# and runs two vhostd processes there (one listening, one --client), each on
# its own TAP, with traffic both ways while cycling reconnects, stop/cont,
# memory-table changes, dirty logging and malformed messages. Prints a
# table every minute and a verdict; exits non-zero if frames stall or
# arrive damaged, or vhostd's fds, mappings, threads or RSS grow.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:?usage: scripts/soak.sh MINUTES [soak flags]}"
shift
[ "$(id -u)" -eq 0 ] || { echo "soak: run as root (TAPs, a network namespace)" >&2; exit 2; }
work="$(mktemp -d -t vhostd-soak.XXXXXX)"
ns="vhsoak-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cleanup() {
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/vhostd" ./cmd/vhostd
go build -o "$work/soak" ./qemu-tests/soak
ip netns add "$ns"
# No IPv6 chatter on the TAPs: the guest only counts its own frames anyway.
ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
start=$(date +%s)
status=0
ip netns exec "$ns" "$work/soak" -minutes "$minutes" -vhostd "$work/vhostd" -dir "$work" "$@" || status=$?
echo "soak: ${minutes} min run took $(( $(date +%s) - start )) s, exit status $status"
if [ "$status" -ne 0 ]; then
  keep="$(mktemp -d -t vhostd-soak-logs.XXXXXX)"
  cp "$work"/*.log "$keep"/ 2>/dev/null || true
  echo "soak: vhostd logs kept in $keep"
fi
exit "$status"

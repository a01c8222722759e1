#!/usr/bin/env bash
# The main job, end to end: installs QEMU and a guest kernel if needed, builds
# vhostd, starts it on a fresh TAP, boots a small guest whose NIC vhostd
# serves, pings both ways, prints vhostd's counters and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: run as root (it creates a TAP and boots a guest)" >&2
  exit 1
fi
qemu-tests/setup.sh
exec go run ./qemu-tests/demo

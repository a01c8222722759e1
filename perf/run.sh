#!/bin/sh
# perf/run.sh [--smoke] [vperf run flags...]
#
# The one command of issue 7: installs what the harness needs (DPDK's
# testpmd from Debian's dpdk-dev), builds vhostd and the harness, runs the
# scenario matrix and writes perf/RESULTS.md, perf/results.json and
# perf/plots/*.png. --smoke runs each scenario once, briefly, into a
# temporary directory (CI). Needs root (TAPs, AF_PACKET) and 2 CPUs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

if [ "$(id -u)" != 0 ]; then
	echo "perf/run.sh: run as root (TAP devices, AF_PACKET, DPDK)" >&2
	exit 1
fi
need=""
command -v dpdk-testpmd >/dev/null 2>&1 || need="$need dpdk-dev"
command -v taskset >/dev/null 2>&1 || need="$need util-linux"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
if [ -n "$need" ]; then
	echo "perf/run.sh: installing$need" >&2
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null
fi
modprobe tun 2>/dev/null || true

bin=$(mktemp -d /tmp/vperf-bin-XXXXXX)
trap 'rm -rf "$bin"' EXIT
(cd "$root" && go build -o "$bin/vhostd" ./cmd/vhostd)
(cd "$here" && go build -o "$bin/vperf" ./cmd/vperf)

VPERF_COMMAND="perf/run.sh${*:+ $*}"
export VPERF_COMMAND
out="$here"
for a in "$@"; do
	case "$a" in --smoke) out="" ;; esac
done
cd "$root"
if [ -n "$out" ]; then
	"$bin/vperf" run --vhostd "$bin/vhostd" --out "$out" "$@"
else
	"$bin/vperf" run --vhostd "$bin/vhostd" "$@"
fi

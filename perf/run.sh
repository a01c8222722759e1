#!/bin/sh
# perf/run.sh [--smoke] [--before REV] [vperf run flags...]
#
# The one command of issue 7: installs what the harness needs (DPDK's
# testpmd from Debian's dpdk-dev), builds vhostd and the harness, runs the
# scenario matrix and writes perf/RESULTS.md, perf/results.json and
# perf/plots/*.png. --smoke runs each scenario once, briefly, into a
# temporary directory (CI). --before REV also builds vhostd at git
# revision REV and measures it as the vhostd-before subject, interleaved
# with the rest: a change's before and after in one run. Needs root (TAPs,
# AF_PACKET) and 2 CPUs.
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

VPERF_COMMAND="perf/run.sh${*:+ $*}"
export VPERF_COMMAND
# Take --before REV out of the arguments vperf gets.
before=""
n=$#
while [ "$n" -gt 0 ]; do
	a=$1
	shift
	n=$((n - 1))
	if [ "$a" = --before ]; then
		[ "$n" -gt 0 ] || { echo "perf/run.sh: --before needs a git revision" >&2; exit 2; }
		before=$1
		shift
		n=$((n - 1))
		continue
	fi
	set -- "$@" "$a"
done

bin=$(mktemp -d /tmp/vperf-bin-XXXXXX)
trap 'rm -rf "$bin"' EXIT
(cd "$root" && go build -o "$bin/vhostd" ./cmd/vhostd)
(cd "$here" && go build -o "$bin/vperf" ./cmd/vperf)
if [ -n "$before" ]; then
	rev=$(git -C "$root" rev-parse --short --verify "$before^{commit}") ||
		{ echo "perf/run.sh: --before $before: not a revision of this repository" >&2; exit 2; }
	mkdir "$bin/before"
	git -C "$root" archive "$rev" | tar -x -C "$bin/before"
	(cd "$bin/before" && go build -o "$bin/vhostd-before" ./cmd/vhostd)
	set -- --vhostd-before "$bin/vhostd-before" --vhostd-before-at "$rev" "$@"
fi
out="$here"
for a in "$@"; do
	case "$a" in --smoke) out="" ;; esac
done
cd "$root"
if [ -n "$out" ]; then
	"$bin/vperf" run --vhostd "$bin/vhostd" --out "$out" "$@"
else
	# --smoke: the results go to the build directory, removed on exit
	# (what each run measured is in the output above).
	"$bin/vperf" run --vhostd "$bin/vhostd" --out "$bin/smoke" "$@"
fi

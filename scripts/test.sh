#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the privileged and QEMU
# tests need (QEMU 10, busybox, the guest kernel), then gofmt, go vet and
# go test -race over every package, with privileged tests made mandatory.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: run as root: the suite creates TAPs and network namespaces and boots guests" >&2
  exit 1
fi

echo "== setup"
qemu-tests/setup.sh
# clang and libbpf headers, to check that the committed XDP objects match
# their C source (xdptap TestGenerated and regen-check.sh).
sh xdptap/regen-check.sh --install

# promtool, Prometheus's own checker, for internal/control's exposition
# test: extracted from Debian's package, without installing the server.
promtool_dir="${XDG_CACHE_HOME:-$HOME/.cache}/vhostd/promtool"
if [ ! -x "$promtool_dir/usr/bin/promtool" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q prometheus)
  dpkg-deb -x "$tmp"/prometheus_*.deb "$promtool_dir"
  rm -rf "$tmp"
fi
export PROMTOOL="$promtool_dir/usr/bin/promtool"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...
for mod in $(git ls-files '*/go.mod'); do
  (cd "$(dirname "$mod")" && go vet ./...)
done

# The perf harness, one short run of every scenario, so it keeps working
# (installs dpdk-dev for the testpmd peer).
echo "== perf smoke"
perf/run.sh --smoke

export VHOSTD_TEST_PRIVILEGED=1

# Without -race: the zero-allocation guards and the full-size loops that
# the race detector shortens (testutil.Race) run only here. QEMU guests are
# left to the -race pass below.
echo "== go test (no -race)"
go test -count=1 -timeout 10m "$@" $(go list ./... | grep -v /qemu-tests)

# Every fuzz target, briefly: they keep building and their seeds pass, and
# a short run now and then finds what the seeds do not.
echo "== fuzz"
scripts/fuzz.sh "${VHOSTD_FUZZ_SECONDS:-10}"

echo "== go test -race"
go test -race -timeout 25m "$@" ./...

# A minute of the soak: two real vhostds under traffic both ways while
# reconnects, stop/cont, memory-table changes, dirty logging and malformed
# messages cycle; fails if fds, mappings, threads or RSS grow.
echo "== soak (1 minute)"
scripts/soak.sh 1

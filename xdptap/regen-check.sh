#!/bin/sh
# regen-check.sh [--install]: check that the committed BPF objects and bpf2go bindings
# (xdp_bpfel.go, xdp_bpfel.o, testdata/*.o) are exactly what gen.sh makes from the
# committed C. With --install, first install what gen.sh needs from Debian (clang, llvm,
# libbpf-dev, linux-libc-dev; run as root) when clang is missing. Exit status 1 on a
# difference, with the names of the files that differ. CI runs it from scripts/test.sh.
set -eu
cd "$(dirname "$0")"
if [ "${1:-}" = --install ] && ! command -v clang >/dev/null 2>&1; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang llvm libbpf-dev linux-libc-dev >/dev/null
fi
for tool in clang llvm-strip go; do
	command -v "$tool" >/dev/null 2>&1 || { echo "regen-check: $tool not found (try --install)" >&2; exit 2; }
done
want=$(cat CLANG_VERSION)
have=$(clang -dumpversion)
[ "$have" = "$want" ] || echo "regen-check: clang $have, objects were made with $want: differences may be the compiler's" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sh gen.sh "$tmp"
status=0
for f in xdp_bpfel.go xdp_bpfel.o testdata/*.o; do
	if ! cmp -s "$f" "$tmp/$f"; then
		echo "regen-check: xdptap/$f differs from what gen.sh makes: run 'go generate ./xdptap' and commit" >&2
		status=1
	fi
done
[ $status -eq 0 ] && echo "regen-check: xdptap's generated files match their sources"
exit $status

#!/bin/sh
# gen.sh [OUTDIR]: compile xdptap's BPF C (bpf/xdptap.c) into the committed object and Go
# bindings (xdp_bpfel.o, xdp_bpfel.go) with bpf2go, and the test objects
# (testdata/*.c -> testdata/*.o) with the same flags. OUTDIR defaults to this directory;
# regen-check.sh generates into a temporary one and compares. Run by `go generate ./xdptap`.
#
# Needs clang and llvm-strip (Debian 12: clang 14, llvm 14), the kernel UAPI and libbpf
# headers (linux-libc-dev, libbpf-dev), and the Go module proxy (or a module cache holding
# github.com/cilium/ebpf at go.mod's version and its dependencies) for bpf2go. The objects
# depend on the clang version: regenerate with the version named in CLANG_VERSION.
set -eu
cd "$(dirname "$0")"
out=$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)
cc=${BPF2GO_CC:-clang}
strip=${BPF2GO_STRIP:-llvm-strip}
multiarch=$("$cc" -print-multiarch 2>/dev/null || true)
[ -n "$multiarch" ] || multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
cflags="-Wall -Werror -I/usr/include/$multiarch"

want=$(cat CLANG_VERSION)
have=$("$cc" -dumpversion)
if [ "$have" != "$want" ]; then
	echo "gen.sh: warning: clang $have, the committed objects came from clang $want; output may differ" >&2
fi

# bpf2go at the version of cilium/ebpf that go.mod requires, so the bindings match the
# library they are built against (go run pkg@version leaves go.mod and go.sum alone).
ebpf=$(go list -m -f '{{.Version}}' github.com/cilium/ebpf)
GOPACKAGE=xdptap BPF2GO_CC="$cc" BPF2GO_STRIP="$strip" \
	go run "github.com/cilium/ebpf/cmd/bpf2go@$ebpf" -target bpfel -output-dir "$out" \
	-cflags "$cflags" xdp bpf/xdptap.c

mkdir -p "$out/testdata"
for src in testdata/*.c; do
	obj="$out/testdata/$(basename "$src" .c).o"
	# The flags bpf2go uses (cmd/bpf2go/gen/compile.go), so the objects are reproducible.
	"$cc" -O2 -mcpu=v1 $cflags -target bpfel -c "$src" -o "$obj" -fno-ident \
		-fdebug-prefix-map="$PWD=." -fdebug-compilation-dir . -g
	"$strip" -g "$obj"
done

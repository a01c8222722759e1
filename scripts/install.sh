#!/bin/sh
# Builds vhostd and installs it where a system keeps each kind of file:
#
#   [DESTDIR=DIR] [PREFIX=/usr/local] scripts/install.sh [--bin PATH]
#   [DESTDIR=DIR] [PREFIX=/usr/local] scripts/install.sh --uninstall
#
#   PREFIX/bin/vhostd                          the program (static, -trimpath, -buildvcs=auto)
#   PREFIX/share/man/man8/vhostd.8.gz          the manual page
#   SYSTEMDUNITDIR/vhostd@.service, .socket    /usr/lib/systemd/system for PREFIX=/usr,
#                                              PREFIX/lib/systemd/system otherwise
#   VHOSTUSERDIR/50-vhostd.json                QEMU's vhost-user discovery file,
#                                              default PREFIX/share/qemu/vhost-user
#   PREFIX/share/doc/vhostd/                   README.md, LICENSE, examples/libvirt/
#
# The units' ExecStart and the discovery file's "binary" name
# PREFIX/bin/vhostd. DESTDIR is prepended to every path written (a staging
# root, as scripts/package.sh uses it) and never appears in a file.
# --bin PATH installs that binary instead of building one; GO names the go
# command (default: go). --uninstall, given the same variables, removes
# exactly the files an install puts there.
set -eu
umask 022

me=install.sh
die() {
	echo "$me: $*" >&2
	exit 1
}

bin=
uninstall=0
while [ $# -gt 0 ]; do
	case $1 in
	--bin)
		[ $# -ge 2 ] || die "--bin needs the path of a vhostd binary"
		bin=$2
		shift 2
		;;
	--bin=*)
		bin=${1#--bin=}
		shift
		;;
	--uninstall)
		uninstall=1
		shift
		;;
	-h | --help)
		sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done

top=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
case $DESTDIR in
"" | /*) ;;
*) DESTDIR=$(pwd)/$DESTDIR ;;
esac
# One absolute path without spaces or quotes: it goes into ExecStart= and
# a JSON string as it is.
checkpath() {
	case $2 in
	/*) ;;
	*) die "$1 must be an absolute path, not '$2'" ;;
	esac
	case $2 in
	*[!A-Za-z0-9._/+-]*) die "$1 '$2' has a character other than letters, digits and . _ / + - (it goes into unit files and JSON as it is)" ;;
	esac
}
checkpath PREFIX "$PREFIX"
while [ "$PREFIX" != / ] && [ "${PREFIX%/}" != "$PREFIX" ]; do PREFIX=${PREFIX%/}; done
[ "$PREFIX" != / ] || PREFIX=
if [ -z "${SYSTEMDUNITDIR:-}" ]; then
	if [ "$PREFIX" = /usr ]; then
		SYSTEMDUNITDIR=/usr/lib/systemd/system
	else
		SYSTEMDUNITDIR=$PREFIX/lib/systemd/system
	fi
fi
VHOSTUSERDIR=${VHOSTUSERDIR:-$PREFIX/share/qemu/vhost-user}
checkpath SYSTEMDUNITDIR "$SYSTEMDUNITDIR"
checkpath VHOSTUSERDIR "$VHOSTUSERDIR"
bindir=$PREFIX/bin
docdir=$PREFIX/share/doc/vhostd
dist=cmd/vhostd/dist

# The installed files, one a line: how, source in the repository, and
# destination. bin: the binary; man: gzipped; path: /usr/bin/vhostd
# replaced by the installed binary; copy: as it is. --uninstall reads the
# same list.
files() {
	echo "bin - $bindir/vhostd"
	echo "man $dist/vhostd.8 $PREFIX/share/man/man8/vhostd.8.gz"
	echo "path $dist/50-vhostd.json $VHOSTUSERDIR/50-vhostd.json"
	echo "path $dist/vhostd@.service $SYSTEMDUNITDIR/vhostd@.service"
	echo "path $dist/vhostd@.socket $SYSTEMDUNITDIR/vhostd@.socket"
	echo "copy LICENSE $docdir/LICENSE"
	echo "copy README.md $docdir/README.md"
	for x in "$top/$dist"/libvirt/*.xml; do
		[ -f "$x" ] || die "no libvirt examples in $dist/libvirt"
		echo "copy $dist/libvirt/${x##*/} $docdir/examples/libvirt/${x##*/}"
	done
}

if [ "$uninstall" = 1 ]; then
	files | while read -r how src dest; do
		if [ -e "$DESTDIR$dest" ] || [ -L "$DESTDIR$dest" ]; then
			rm -f "$DESTDIR$dest"
			echo "removed $DESTDIR$dest"
		fi
	done
	# vhostd's own directories, if nothing else is left in them.
	for d in "$docdir/examples/libvirt" "$docdir/examples" "$docdir"; do
		rmdir "$DESTDIR$d" 2>/dev/null || true
	done
	exit 0
fi

# Check everything before writing anything.
if [ -n "$DESTDIR" ] && [ -e "$DESTDIR" ] && [ ! -d "$DESTDIR" ]; then
	die "DESTDIR $DESTDIR is not a directory"
fi
files >/dev/null
for x in $(files | cut -d' ' -f2 | grep -v '^-$'); do
	[ -r "$top/$x" ] || die "$top/$x is missing: run from a vhostd source tree"
done
files | while read -r how src dest; do
	# The nearest existing ancestor of each destination must be a
	# directory we may write to.
	d=$(dirname "$DESTDIR$dest")
	while [ ! -e "$d" ]; do d=$(dirname "$d"); done
	[ -d "$d" ] || die "cannot install $DESTDIR$dest: $d is not a directory"
	[ -w "$d" ] || die "cannot install $DESTDIR$dest: $d is not writable (run as root, or set DESTDIR or PREFIX)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vhostd-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
if [ -n "$bin" ]; then
	if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then die "--bin $bin: not an executable file"; fi
else
	command -v "$GO" >/dev/null 2>&1 ||
		die "$GO: command not found: install Go (https://go.dev/dl/), set GO to the go command, or give --bin PATH of a built vhostd"
	bin=$tmp/vhostd
	# Static (no cgo) and without this machine's paths. --version reads the
	# build info (cmd/vhostd/version.go): -buildvcs=auto stamps the commit
	# into it in a git checkout whatever GOFLAGS says, and builds without
	# it elsewhere (a tarball, a linked worktree).
	(cd "$top" && CGO_ENABLED=0 "$GO" build -trimpath -buildvcs=auto -o "$bin" ./cmd/vhostd) ||
		die "go build ./cmd/vhostd failed"
fi

# The binary path as a sed replacement (PREFIX holds no | & or \).
target=$bindir/vhostd
files | while read -r how src dest; do
	out=$DESTDIR$dest
	mkdir -p "$(dirname "$out")"
	case $how in
	bin) cp "$bin" "$out.tmp$$" ;;
	man) gzip -9nc "$top/$src" >"$out.tmp$$" ;;
	path) sed "s|/usr/bin/vhostd|$target|g" "$top/$src" >"$out.tmp$$" ;;
	copy) cp "$top/$src" "$out.tmp$$" ;;
	esac
	if [ "$how" = bin ]; then chmod 0755 "$out.tmp$$"; else chmod 0644 "$out.tmp$$"; fi
	mv -f "$out.tmp$$" "$out"
	echo "installed $out"
done
case $VHOSTUSERDIR in
/usr/share/* | /etc/*) ;;
*) echo "note: libvirt looks for vhost-user descriptors in /usr/share/qemu/vhost-user and /etc/qemu/vhost-user (QEMU's interop convention), not in $VHOSTUSERDIR; VHOSTUSERDIR=/etc/qemu/vhost-user puts 50-vhostd.json there" ;;
esac

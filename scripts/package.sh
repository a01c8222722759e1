#!/bin/sh
# Builds a Debian package of vhostd and prints its path:
#
#   scripts/package.sh [--out DIR] [--bin PATH]
#
# scripts/install.sh installs into a staging root with PREFIX=/usr
# (building the binary, or taking --bin's: other arguments go to it); this
# adds DEBIAN/control, conffiles (if anything lands in /etc) and md5sums,
# and runs dpkg-deb --build --root-owner-group. The package is DIR/vhostd_VERSION_ARCH.deb
# (DIR default: the current directory). VERSION is the git tag's
# (git describe: v1.2.3 -> 1.2.3, 1.2.3+4.gHASH after it), else
# 0.0.0+gitHASH, +dirty with uncommitted changes; set VERSION to override.
# ARCH is dpkg --print-architecture's. MAINTAINER sets the Maintainer field
# (default: a placeholder address).
set -eu
umask 022

me=package.sh
die() {
	echo "$me: $*" >&2
	exit 1
}

out=.
# --out and --help are ours; the rest (--bin PATH) goes to install.sh.
n=$#
while [ "$n" -gt 0 ]; do
	case $1 in
	--out)
		[ "$n" -ge 2 ] || die "--out needs a directory"
		out=$2
		shift 2
		n=$((n - 2))
		;;
	--out=*)
		out=${1#--out=}
		shift
		n=$((n - 1))
		;;
	-h | --help)
		sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		set -- "$@" "$1"
		shift
		n=$((n - 1))
		;;
	esac
done

top=$(cd "$(dirname "$0")/.." && pwd)

version=${VERSION:-}
if [ -z "$version" ]; then
	if d=$(git -C "$top" describe --tags --match 'v[0-9]*' 2>/dev/null); then
		version=$(echo "${d#v}" | sed 's/-/+/; s/-/./g')
	elif h=$(git -C "$top" rev-parse --short HEAD 2>/dev/null); then
		version=0.0.0+git$h
	else
		die "cannot tell the version: $top is not a git checkout; set VERSION"
	fi
	# Dirty as the go command stamps it (vcs.modified): any change,
	# untracked files included.
	[ -z "$(git -C "$top" status --porcelain)" ] || version=$version+dirty
fi
# Debian's upstream version: a digit first, then letters, digits and . + ~
case $version in
[0-9]*) ;;
*) die "version '$version' must start with a digit" ;;
esac
case $version in
*[!A-Za-z0-9.+~]*) die "version '$version' may hold only letters, digits and . + ~" ;;
esac
for c in dpkg dpkg-deb; do
	command -v $c >/dev/null 2>&1 || die "$c: command not found (Debian package dpkg)"
done
arch=$(dpkg --print-architecture)

mkdir -p "$out" || die "cannot create --out $out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d "${TMPDIR:-/tmp}/vhostd-package.XXXXXX")
trap 'rm -rf "$stage"' EXIT
trap 'exit 130' INT TERM
root=$stage/root

DESTDIR=$root PREFIX=/usr SYSTEMDUNITDIR='' VHOSTUSERDIR='' "$top/scripts/install.sh" "$@" >/dev/null

# CGO_ENABLED=0 makes a static binary that needs nothing; a dynamic one
# (a --bin built with cgo) needs the C library.
depends=
if ldd "$root/usr/bin/vhostd" >/dev/null 2>&1; then
	depends="Depends: libc6"
fi

mkdir -p "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
{
	echo "Package: vhostd"
	echo "Version: $version"
	echo "Architecture: $arch"
	echo "Maintainer: ${MAINTAINER:-The vhostd authors <noreply@vhostd.invalid>}"
	echo "Installed-Size: $size"
	[ -z "$depends" ] || echo "$depends"
	echo "Section: net"
	echo "Priority: optional"
	echo "Homepage: https://github.com/vhostd/vhostd"
	echo "Description: vhost-user virtio-net back-end"
	echo " vhostd serves a guest NIC's virtio-net queues to QEMU (or libvirt, or any"
	echo " vhost-user front-end) over a unix socket and moves the frames between"
	echo " them and a host TAP or macvtap device, multiqueue, with the virtio-net"
	echo " offloads passed through. It ships systemd units for one instance per"
	echo " guest NIC with socket activation, a QEMU vhost-user discovery file, a"
	echo " manual page and libvirt domain examples."
} >"$root/DEBIAN/control"
(
	cd "$root"
	if [ -d etc ]; then
		find etc -type f | sort | sed 's|^|/|' >DEBIAN/conffiles
	fi
	find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
		while read -r f; do md5sum "$f"; done >DEBIAN/md5sums
)
deb=$out/vhostd_${version}_${arch}.deb
dpkg-deb --build --root-owner-group "$root" "$deb" >/dev/null
echo "$deb"

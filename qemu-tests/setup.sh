#!/bin/sh
# setup.sh: install what the QEMU end-to-end tests need, on a Debian 12 machine, as root.
#
#   sudo qemu-tests/setup.sh
#
# - QEMU 10 (qemu-system-x86) from <codename>-backports. The backports apt source is written
#   with the URI of the machine's own Debian source; no mirror is named here.
# - busybox-static, iproute2, iputils-ping, ethtool, kmod, cpio for the guest initramfs and host helpers.
# - libvirt (libvirt-daemon-system, libvirt-daemon-driver-qemu, libvirt-clients; libxml2-utils
#   for virt-xml-validate) for libvirt_test.go; without recommends, so no QEMU 7.2 comes along.
# - Debian's cloud kernel, downloaded (not installed) and unpacked into
#   ${VHOSTD_CACHE:-$HOME/.cache/vhostd}/guest: vmlinuz, modules/*.ko (decompressed), VERSION.
#
# Idempotent: a second run checks and returns in a couple of seconds. Exits non-zero with a
# message on any failure.
set -eu

CACHE=${VHOSTD_CACHE:-${HOME:-/root}/.cache/vhostd}
GUEST=$CACHE/guest
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net"
PKGS="busybox-static iproute2 iputils-ping ethtool kmod cpio xz-utils zstd"
PKGS="$PKGS libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libxml2-utils"
# systemd-analyze checks the unit files (cmd/vhostd TestSystemdUnits); no systemd need run.
PKGS="$PKGS systemd"

say() { echo "setup.sh: $*"; }
die() { echo "setup.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (try: sudo $0)"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian only"
export DEBIAN_FRONTEND=noninteractive

. /etc/os-release
CODENAME=${VERSION_CODENAME:-}
[ -n "$CODENAME" ] || die "no VERSION_CODENAME in /etc/os-release"
BPO=$CODENAME-backports

# --- backports apt source -------------------------------------------------------------------
# debian_uri prints the URI of the machine's main Debian source (the one carrying $CODENAME,
# not -security), from deb822 sources first, then one-line sources.list.
debian_uri() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v c="$CODENAME" '
			function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " c " ") && uri != "" && !done) { print uri; done = 1 } types = ""; suites = ""; uri = "" }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]*#/ { next }
			tolower($1) == "types:" { $1 = ""; types = $0 }
			tolower($1) == "suites:" { $1 = ""; suites = $0 }
			tolower($1) == "uris:" { uri = $2 }
			END { flush() }' "$f"
	done | head -n 1 | grep . && return 0
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v c="$CODENAME" '$1 == "deb" {
			i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i+1) == c) { print $i; exit } }' "$f"
	done | head -n 1 | grep .
}

# has_bpo_source: an active apt source (not a comment, not a disabled file) names $BPO.
has_bpo_source() {
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		grep -v '^[[:space:]]*#' "$f" | grep -q -- "$BPO" && return 0
	done
	return 1
}

SRC=/etc/apt/sources.list.d/vhostd-backports.sources
if has_bpo_source; then
	say "apt source for $BPO already configured"
else
	URI=$(debian_uri) || die "cannot find the Debian source URI in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
	KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
	{
		echo "# written by vhostd qemu-tests/setup.sh"
		echo "Types: deb"
		echo "URIs: $URI"
		echo "Suites: $BPO"
		echo "Components: main"
		[ -f "$KEYRING" ] && echo "Signed-By: $KEYRING"
	} >"$SRC"
	say "wrote $SRC (URI $URI, suite $BPO)"
fi

# --- packages -------------------------------------------------------------------------------
UPDATED=0
apt_update() {
	[ "$UPDATED" = 1 ] && return 0
	say "apt-get update"
	apt-get update -q >/tmp/vhostd-setup-apt.$$ 2>&1 || { cat /tmp/vhostd-setup-apt.$$ >&2; rm -f /tmp/vhostd-setup-apt.$$; die "apt-get update failed"; }
	rm -f /tmp/vhostd-setup-apt.$$
	UPDATED=1
}
# lists_have PKG SUITE: the local package lists know PKG in SUITE.
lists_have() {
	apt-cache policy "$1" 2>/dev/null | grep -q -- "$2"
}
installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
# apt_install ARGS...: apt-get install, and once more after apt-get update if the local lists
# were stale (a fresh machine's lists can point at files the mirror no longer has).
apt_install() {
	log=/tmp/vhostd-setup-apt.$$
	if apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then rm -f "$log"; return 0; fi
	if [ "$UPDATED" = 0 ]; then
		apt_update
		if apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then rm -f "$log"; return 0; fi
	fi
	cat "$log" >&2; rm -f "$log"
	die "apt-get install $* failed"
}
qemu_major() {
	qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p'
}

MISSING=""
for p in $PKGS; do installed "$p" || MISSING="$MISSING $p"; done
if [ -n "$MISSING" ]; then
	lists_have busybox-static "$CODENAME" || apt_update
	say "installing$MISSING"
	apt_install $MISSING
else
	say "packages present: $PKGS"
fi

QV=$(qemu_major || true)
if [ -n "$QV" ] && [ "$QV" -ge 10 ]; then
	say "QEMU $(qemu-system-x86_64 --version | head -n 1 | sed 's/^QEMU emulator version //') present"
else
	lists_have qemu-system-x86 "$BPO" || apt_update
	lists_have qemu-system-x86 "$BPO" || die "qemu-system-x86 not found in $BPO after apt-get update"
	say "installing qemu-system-x86 from $BPO (found ${QV:-none})"
	apt_install -t "$BPO" qemu-system-x86
	QV=$(qemu_major || true)
	[ -n "$QV" ] && [ "$QV" -ge 10 ] || die "installed QEMU is version ${QV:-unknown}, want 10 or later"
	say "installed $(qemu-system-x86_64 --version | head -n 1)"
fi

# --- guest kernel ---------------------------------------------------------------------------
# The version is the one linux-image-cloud-amd64 depends on in the default (stable) suite.
guest_ok() {
	[ -s "$GUEST/vmlinuz" ] && [ -s "$GUEST/VERSION" ] || return 1
	for m in $MODULES; do [ -s "$GUEST/modules/$m.ko" ] || return 1; done
}
kernel_pkg() {
	apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\).*/\1/p' | head -n 1
}

if guest_ok; then
	say "guest kernel present: $(cat "$GUEST/VERSION") in $GUEST"
else
	PKG=$(kernel_pkg)
	if [ -z "$PKG" ]; then apt_update; PKG=$(kernel_pkg); fi
	[ -n "$PKG" ] || die "cannot find the package linux-image-cloud-amd64 depends on (apt-cache depends linux-image-cloud-amd64)"
	KVER=${PKG#linux-image-}
	say "downloading $PKG"
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/vhostd-setup.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT INT TERM
	chmod 755 "$TMP" # apt's _apt user writes the download here
	(cd "$TMP" && apt-get download -q "$PKG" >apt.log 2>&1) || {
		apt_update
		(cd "$TMP" && apt-get download -q "$PKG" >apt.log 2>&1) || { cat "$TMP/apt.log" >&2; die "apt-get download $PKG failed"; }
	}
	DEB=$(ls "$TMP"/*.deb 2>/dev/null | head -n 1)
	[ -n "$DEB" ] || die "apt-get download $PKG left no .deb"
	dpkg-deb -x "$DEB" "$TMP/x" || die "dpkg-deb -x $DEB failed"
	STAGE=$TMP/guest
	mkdir -p "$STAGE/modules"
	cp "$TMP/x/boot/vmlinuz-$KVER" "$STAGE/vmlinuz" || die "no boot/vmlinuz-$KVER in $PKG"
	MDIR=$TMP/x/lib/modules/$KVER
	[ -d "$MDIR" ] || MDIR=$TMP/x/usr/lib/modules/$KVER
	[ -d "$MDIR" ] || die "no modules directory for $KVER in $PKG"
	for m in $MODULES; do
		f=$(find "$MDIR" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n 1)
		[ -n "$f" ] || die "module $m not found in $PKG"
		case $f in
		*.ko) cp "$f" "$STAGE/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$f" >"$STAGE/modules/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$STAGE/modules/$m.ko" ;;
		*.ko.gz) gzip -dc "$f" >"$STAGE/modules/$m.ko" ;;
		esac || die "cannot unpack $f"
		say "module $m: $(basename "$f")"
	done
	echo "$KVER" >"$STAGE/VERSION"
	mkdir -p "$CACHE"
	rm -rf "$GUEST.old"
	[ -e "$GUEST" ] && mv "$GUEST" "$GUEST.old"
	mv "$STAGE" "$GUEST" || die "cannot move the guest kernel into $GUEST"
	rm -rf "$GUEST.old"
	say "guest kernel $KVER unpacked into $GUEST"
fi

say "ok: qemu $(command -v qemu-system-x86_64), guest $GUEST"

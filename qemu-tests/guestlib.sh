# /etc/vhq.sh: shell functions for the scenario scripts (busybox sh), sourced first by every
# script that StartBed boots. Every fact the host checks is one line "TAG key=value ...".
HIP=$(cat /etc/hip)   # the host's end: the TAP's address (or the netns peer's for macvtap)
GIP=$(cat /etc/gip)   # the guest's own address on eth0

# pingcheck [ping options] IP: ping until a first reply (ARP and the back-end's set-up can
# take a few seconds), then 3 more times. Prints "PING first_ok=0|1 tries=N rcv=N".
pingcheck() {
	k=0 ok=0
	while [ $k -lt 60 ]; do
		k=$((k + 1))
		ping -c 1 -W 1 "$@" >/dev/null 2>&1 && { ok=1; break; }
	done
	ping -c 3 -i 0.3 -W 2 "$@" >/tmp/p 2>&1
	cat /tmp/p
	echo "PING first_ok=$ok tries=$k rcv=$(awk '/packets received/{print $4}' /tmp/p)"
	[ $ok = 1 ]
}

# waithost PORT: block until the host connects to PORT and closes (the host's "go on").
waithost() {
	echo "WAIT port=$1"
	nc -l -p "$1" </dev/null >/dev/null
}

# mkdata NAME MIB: MIB MiB of random data in /tmp/NAME.
mkdata() {
	dd if=/dev/urandom of="/tmp/$1" bs=1M count="$2" 2>/dev/null
}

# send NAME PORT: send /tmp/NAME to $HIP:PORT (retrying while the host does not listen yet),
# then remove it. Prints "XFER sent port=.. sha=.. bytes=.. tries=..".
send() {
	s=$(sha256sum "/tmp/$1" | cut -d' ' -f1)
	b=$(wc -c <"/tmp/$1")
	k=0
	until nc "$HIP" "$2" <"/tmp/$1" >/dev/null; do
		k=$((k + 1))
		[ $k -ge 30 ] && break
		sleep 1
	done
	rm -f "/tmp/$1"
	echo "XFER sent port=$2 sha=$s bytes=$b tries=$k"
}

# recv NAME PORT: accept one connection on PORT, store what arrives in /tmp/NAME until the
# host closes, then remove it. Prints "XFER listen port=.." and "XFER received port=.. sha=..
# bytes=..".
recv() {
	echo "XFER listen port=$2"
	nc -l -p "$2" </dev/null >"/tmp/$1"
	rc=$?
	echo "XFER received port=$2 sha=$(sha256sum "/tmp/$1" | cut -d' ' -f1) bytes=$(wc -c <"/tmp/$1") rc=$rc"
	rm -f "/tmp/$1"
}

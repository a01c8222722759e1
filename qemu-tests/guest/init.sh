#!/bin/busybox sh
# /init of the vhostd test guest. Generated configuration is in /etc/vhostd-guest.conf;
# the test's own script is /test.sh. Every line the harness looks for starts with "VHOSTD: ".
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
say() { echo "VHOSTD: $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
NET=0 GUEST_IP= MODULES=
. /etc/vhostd-guest.conf
say "INIT kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) t=$(up)"
for m in $MODULES; do
	insmod /lib/modules/$m.ko || say "MODULE-FAILED $m"
done
ip link set lo up
if [ "$NET" = 1 ]; then
	i=0
	while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
	if [ -e /sys/class/net/eth0 ]; then
		ip link set eth0 up
		[ -n "$GUEST_IP" ] && ip addr add "$GUEST_IP" dev eth0
		i=0
		while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
		say "NET eth0 mac=$(cat /sys/class/net/eth0/address) mtu=$(cat /sys/class/net/eth0/mtu) carrier=$(cat /sys/class/net/eth0/carrier 2>/dev/null) rxqs=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l) t=$(up)"
	else
		say "NET eth0 missing t=$(up)"
	fi
fi
say "SCRIPT BEGIN t=$(up)"
sh /test.sh
say "SCRIPT END rc=$? t=$(up)"
say "POWEROFF t=$(up)"
poweroff -f
sleep 10

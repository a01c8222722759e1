package qemutests

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// TestReconnect: QEMU is vhostd's client with reconnect-ms=1000 and the guest pings the host
// five times a second. vhostd is SIGKILLed (its TAP goes with it) and started again on the
// same socket and TAP name; the host address goes back on the new TAP. QEMU must reconnect
// and the guest's pings resume within 60 s; the time from the restart to the first reply is
// logged ("reconnect: first ping ..."). The guest's kernel log must be clean
// (AssertGuestKernelClean). TestLifecycleUnderLoad does the same under load.
func TestReconnect(t *testing.T) {
	script := pingScript + `echo "LOOP start"
(waithost 5000; touch /tmp/stop) &
while [ ! -e /tmp/stop ]; do
	ping -c 5 -i 0.2 -W 1 $HIP
	s=/sys/class/net/eth0
	echo "LOOP t=$(cut -d' ' -f1 /proc/uptime) carrier=$(cat $s/carrier) rx_packets=$(cat $s/statistics/rx_packets) rx_errors=$(cat $s/statistics/rx_errors) rx_dropped=$(cat $s/statistics/rx_dropped) tx_packets=$(cat $s/statistics/tx_packets) irqs=$(awk '/virtio0-input/{print $2}' /proc/interrupts)"
done
echo "LOOP end"
`
	b := StartBed(t, BedConfig{NIC: guest.NIC{ReconnectMS: 1000}, Guest: guestOpts(script)})
	b.GuestPinged(0)
	reply := `bytes from ` + regexp.QuoteMeta(b.Net.HostIP()) + `: seq=\d+`
	b.WaitLine(`LOOP start\n(?s:.*?`+reply+`){5}`, 0)

	b.Kill()
	time.Sleep(time.Second) // QEMU sees the connection go and starts retrying
	from := len(b.Guest.Log())
	start := b.Restart()
	ctx, cancel := context.WithTimeout(b.Ctx, 60*time.Second)
	defer cancel()
	if _, err := b.Vhostd.WaitFor(ctx, regexp.MustCompile(`front-end connected`)); err != nil {
		t.Fatalf("QEMU did not reconnect to the restarted vhostd: %v", err)
	}
	connected := time.Since(start)
	if _, err := b.Guest.WaitForFrom(ctx, regexp.MustCompile(reply), from); err != nil {
		t.Fatalf("no ping reply within 60 s of the restart (QEMU reconnected after %.1f s): %v", connected.Seconds(), err)
	}
	t.Logf("reconnect: first ping %.1f s after restart (QEMU reconnected after %.1f s)", time.Since(start).Seconds(), connected.Seconds())
	b.Release(5000)
	b.WaitExit()
	b.AssertGuestKernelClean("reconnect")
}

// TestGuestReboot: the guest pings, reboots ("reboot -f", QEMU without -no-reboot), and its
// second boot's driver re-initialises the device on the same vhost-user connection; pings go
// both ways again. The script tells its boots apart the way shared/traces recorded it: once
// the first boot says REBOOT, the host adds .3 to the TAP, and a boot that can ping .3 is the
// second one. The guest's kernel log must be clean (AssertGuestKernelClean).
func TestGuestReboot(t *testing.T) {
	script := `pingcheck $HIP || exit 1
if ping -c 3 -W 1 ${HIP%.1}.3 >/dev/null 2>&1; then
	echo "REBOOT boot=2"
	` + PingBothWays + `	exit 0
fi
echo "REBOOT boot=1"
reboot -f
sleep 60
`
	b := StartBed(t, BedConfig{Guest: guest.Options{Reboot: true, Script: script}})
	b.GuestPinged(0)
	from := len(b.WaitLine(`(?s).*REBOOT boot=1\n`, 0)[0])
	HostAddr(t, b.Tap, b.Net.IP(3)+"/24")
	b.WaitLine(`REBOOT boot=2\n`, from)
	if n := strings.Count(b.Guest.Log(), guest.Marker+"INIT "); n != 2 {
		t.Errorf("%d boots in the serial log, want 2", n)
	}
	b.CheckPingBothWays(from)
	b.WaitExit()
	if n := strings.Count(b.Vhostd.Log(), "front-end connected"); n != 1 {
		t.Logf("note: QEMU connected %d times (the recorded trace used one connection)", n)
	}
	b.AssertGuestKernelClean("reboot")
}

// TestSIGTERM: while the guest pings, vhostd gets SIGTERM: it exits 0 within 2 s and removes
// its socket and its TAP; the guest's pings then fail, it reads eth0's carrier, and powers
// off, and QEMU exits 0 within 60 s. The guest's kernel log must be clean.
func TestSIGTERM(t *testing.T) {
	script := pingScript + `echo "TERM pinging"
f=0 n=0
while [ $f -lt 3 ] && [ $n -lt 300 ]; do
	n=$((n + 1))
	if ping -c 1 -W 1 $HIP >/dev/null 2>&1; then f=0; else f=$((f + 1)); fi
done
echo "TERM lost n=$n carrier=$(cat /sys/class/net/eth0/carrier)"
ip link show eth0
`
	b := StartBed(t, BedConfig{Guest: guestOpts(script)})
	b.GuestPinged(0)
	b.WaitLine(`TERM pinging\n`, 0)
	time.Sleep(time.Second) // pings in flight
	start := time.Now()
	if err := b.Vhostd.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	err := waitExit(b.Vhostd, 2*time.Second)
	took := time.Since(start)
	b.checkTermExit(t, err, took)
	ctx, cancel := context.WithTimeout(b.Ctx, 60*time.Second)
	defer cancel()
	m, err := b.Guest.WaitFor(ctx, regexp.MustCompile(`TERM lost n=(\d+) carrier=(\d*)\n`))
	if err != nil {
		t.Fatalf("the guest did not notice vhostd was gone within 60 s: %v", err)
	}
	t.Logf("guest: pings failing after %s tries; eth0 carrier=%s", m[1], m[2])
	if m[2] != "0" {
		// QEMU takes the NIC's link down when its vhost-user back-end goes.
		t.Errorf("the guest's eth0 carrier is %q after vhostd exited, want 0 (link down)", m[2])
	}
	if rc, err := b.Guest.WaitScript(ctx); err != nil || rc != 0 {
		t.Errorf("guest script: rc=%d %v", rc, err)
	}
	if err := b.Guest.Wait(ctx); err != nil {
		t.Errorf("QEMU did not exit cleanly within 60 s: %v", err)
	}
	b.AssertGuestKernelClean("SIGTERM")
}

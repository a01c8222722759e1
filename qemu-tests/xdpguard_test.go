package qemutests

import (
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// guardScript pings the host from the guest's own address (allowed), then
// from an address the guard does not allow: those frames must not get
// through. "SPOOF rcv=N" reports the spoofed replies.
const guardScript = `pingcheck $HIP || exit 1
SPOOF=${HIP%.*}.99
ip addr add $SPOOF/32 dev eth0
ping -c 3 -i 0.3 -W 1 -I $SPOOF $HIP >/tmp/s 2>&1
echo "SPOOF rcv=$(awk '/packets received/{print $4}' /tmp/s)"
`

// TestXDPGuard: vhostd with --xdp guard on its TAP. The guest's normal
// traffic flows; a source address it does not own is dropped in XDP and
// counted.
func TestXDPGuard(t *testing.T) {
	mac := guest.RandomMAC()
	sn := Subnet(t)
	b := StartBed(t, BedConfig{
		NIC:        guest.NIC{MAC: mac},
		Net:        &sn,
		VhostdArgs: []string{"--mac", mac, "--xdp", "guard", "--xdp-guard-addrs", sn.GuestIP()},
		Guest:      guestOpts(guardScript),
	})
	b.GuestPinged(0)
	m := b.WaitLine(`SPOOF rcv=(\d*)\n`, 0)
	if rcv, _ := strconv.Atoi(m[1]); rcv != 0 {
		t.Errorf("%d replies to pings from a spoofed source: the guard let them through", rcv)
	}
	b.WaitExit()
	from := len(b.Vhostd.Log())
	b.Vhostd.Signal(syscall.SIGUSR1)
	re := regexp.MustCompile(`xdp:.* xdp_guard_drop_src_ipv4=(\d+).* xdp_guard_pass=(\d+)`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(b.Vhostd.Log()[from:]); m != nil {
			drops, _ := strconv.Atoi(m[1])
			pass, _ := strconv.Atoi(m[2])
			t.Logf("guard counters: drop_src_ipv4=%d pass=%d", drops, pass)
			if drops < 3 {
				t.Errorf("xdp_guard_drop_src_ipv4=%d, want at least the 3 spoofed pings", drops)
			}
			if pass == 0 {
				t.Errorf("xdp_guard_pass=0: the guest's own traffic did not pass the guard")
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no xdp counters in vhostd's log after SIGUSR1")
}

package qemutests

import (
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// pingScript pings the host end of the TAP ($1 in the guest's environment: HIP), first until
// one reply comes (ARP and TAP set-up can take a few seconds), then 3 more times.
const pingScript = `
HIP=$(cat /etc/hip)
k=0; ok=0
while [ $k -lt 30 ]; do k=$((k+1)); ping -c 1 -W 1 $HIP >/dev/null 2>&1 && { ok=1; break; }; done
ping -c 3 -i 0.3 -W 2 $HIP > /tmp/p 2>&1
cat /tmp/p
echo "PING first_ok=$ok tries=$k rcv=$(awk '/packets received/{print $4}' /tmp/p)"
`

// TestPing: the guest pings the host's address on vhostd's TAP.
func TestPing(t *testing.T) {
	q := Gate(t)
	ctx := Context(t, 3*guest.BootTimeout)
	sn := Subnet(t)
	sock := filepath.Join(TempDir(t), "vu.sock")
	tap := TapName()
	vd := StartVhostd(t, "--socket-path", sock, "--tap", tap, "--queues", "1", "--log-level", "debug")
	if err := guest.WaitFile(ctx, sock, vd); err != nil {
		t.Fatalf("vhostd socket: %v", err)
	}
	g := StartGuest(t, guest.Options{
		QEMU:    q,
		NIC:     &guest.NIC{SocketPath: sock},
		GuestIP: sn.GuestCIDR(),
		Files:   map[string][]byte{"etc/hip": []byte(sn.HostIP() + "\n")},
		Script:  pingScript,
	})
	// vhostd may create its TAP at start or when QEMU connects: wait while the guest boots.
	if err := guest.WaitFile(ctx, "/sys/class/net/"+tap, vd); err != nil {
		t.Fatalf("vhostd's TAP %s: %v", tap, err)
	}
	HostAddr(t, tap, sn.HostCIDR())
	t.Logf("host %s on %s, guest %s", sn.HostCIDR(), tap, sn.GuestCIDR())

	m, err := g.WaitFor(ctx, regexp.MustCompile(`PING first_ok=(\d) tries=(\d+) rcv=(\d*)\n`))
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if m[1] != "1" {
		t.Fatalf("the guest got no reply from %s in %s tries", sn.HostIP(), m[2])
	}
	if rcv, _ := strconv.Atoi(m[3]); rcv != 3 {
		t.Errorf("%s/3 replies after the first one", m[3])
	}
	if err := g.Wait(ctx); err != nil {
		t.Errorf("qemu exit: %v", err)
	}
}

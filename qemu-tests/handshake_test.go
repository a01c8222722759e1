package qemutests

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// Virtio feature bits (virtio 1.x section 5.1.3, 6; include/uapi/linux/virtio_net.h).
const (
	featMrgRxbuf = 15 // VIRTIO_NET_F_MRG_RXBUF
	featVersion1 = 32 // VIRTIO_F_VERSION_1
)

// handshakeScript prints what the guest's virtio_net driver made of the device.
const handshakeScript = `
echo "HS ifaces=$(ls /sys/class/net | tr '\n' ' ')"
echo "HS mac=$(cat /sys/class/net/eth0/address)"
echo "HS driver=$(basename "$(readlink /sys/class/net/eth0/device/driver)")"
echo "HS features=$(cat /sys/class/net/eth0/device/features)"
`

// TestHandshake is issue 2's acceptance: vhostd serves the socket, QEMU connects as client,
// and the guest's virtio_net driver binds to the device with VERSION_1 and MRG_RXBUF.
func TestHandshake(t *testing.T) {
	q := Gate(t)
	ctx := Context(t, 3*guest.BootTimeout)
	sock := filepath.Join(TempDir(t), "vu.sock")
	tap := TapName()
	vd := StartVhostd(t, "--socket-path", sock, "--tap", tap, "--queues", "1", "--log-level", "debug")
	if err := guest.WaitFile(ctx, sock, vd); err != nil {
		t.Fatalf("vhostd socket: %v", err)
	}
	mac := guest.RandomMAC()
	g := StartGuest(t, guest.Options{QEMU: q, NIC: &guest.NIC{SocketPath: sock, MAC: mac}, Script: handshakeScript})

	if rest, err := g.WaitMarker(ctx, "NET eth0 "); err != nil {
		t.Fatalf("eth0: %v", err)
	} else if strings.HasPrefix(rest, "missing") {
		t.Fatalf("the guest has no eth0: virtio_net did not bind")
	}
	if _, err := g.WaitScript(ctx); err != nil {
		t.Fatalf("script: %v", err)
	}
	hs := fields(g.Log(), "HS ")
	if got := strings.Fields(hs["ifaces"]); !contains(got, "eth0") {
		t.Errorf("guest interfaces %q: no eth0", got)
	}
	if hs["mac"] != mac {
		t.Errorf("eth0 MAC %q, want %q (given to QEMU)", hs["mac"], mac)
	}
	if hs["driver"] != "virtio_net" {
		t.Errorf("eth0 driver %q, want virtio_net", hs["driver"])
	}
	feat := hs["features"]
	t.Logf("negotiated features: %s", feat)
	for _, b := range []struct {
		bit  int
		name string
	}{{featVersion1, "VERSION_1"}, {featMrgRxbuf, "MRG_RXBUF"}} {
		if !featureSet(feat, b.bit) {
			t.Errorf("feature %s (bit %d) not negotiated: features=%q", b.name, b.bit, feat)
		}
	}
	if err := g.Wait(ctx); err != nil {
		t.Errorf("qemu exit: %v", err)
	}
	if err := vd.Stop(VhostdStopGrace); err != nil {
		t.Errorf("vhostd on SIGTERM: %v (want exit status 0)", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vhostd left its socket %s behind after SIGTERM (stat: %v)", sock, err)
	}
}

// fields collects "PREFIXkey=value" lines of the log into a map (the last one wins).
func fields(log, prefix string) map[string]string {
	m := map[string]string{}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `(\w+)=(.*)$`)
	for _, l := range re.FindAllStringSubmatch(log, -1) {
		m[l[1]] = strings.TrimSpace(l[2])
	}
	return m
}

// featureSet reads bit from /sys/bus/virtio/devices/*/features: one '0' or '1' per bit,
// bit 0 first.
func featureSet(features string, bit int) bool {
	return bit < len(features) && features[bit] == '1'
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

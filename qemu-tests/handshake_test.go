package qemutests

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// TestHandshake is issue 2's acceptance: the guest's virtio_net driver binds to vhostd's
// device with the MAC given to QEMU and VERSION_1 and MRG_RXBUF negotiated, and vhostd exits 0
// on SIGTERM and removes its socket.
//   - server: vhostd listens on the socket (--socket-path), QEMU connects as client.
//   - client: QEMU listens (server=on,wait=on) and vhostd connects (--client).
func TestHandshake(t *testing.T) {
	t.Run("server", func(t *testing.T) { testHandshake(t, false) })
	t.Run("client", func(t *testing.T) { testHandshake(t, true) })
}

func testHandshake(t *testing.T, vhostdClient bool) {
	q := Gate(t)
	ctx := Context(t, 3*guest.BootTimeout)
	sock := filepath.Join(TempDir(t), "vu.sock")
	tap := TapName()
	args := []string{"--socket-path", sock, "--tap", tap, "--queues", "1", "--log-level", "debug"}
	mac := guest.RandomMAC()
	o := guest.Options{QEMU: q, NIC: &guest.NIC{SocketPath: sock, MAC: mac}, Script: handshakeScript}
	var vd *guest.Process
	var g *guest.Guest
	if vhostdClient {
		o.NIC.Server, o.NIC.ServerWait = true, true
		g = StartGuest(t, o)
		if err := waitSocket(ctx, g, sock); err != nil {
			t.Fatalf("qemu socket: %v", err)
		}
		vd = StartVhostd(t, append([]string{"--client"}, args...)...)
	} else {
		vd = StartVhostd(t, args...)
		if err := guest.WaitFile(ctx, sock, vd); err != nil {
			t.Fatalf("vhostd socket: %v", err)
		}
		g = StartGuest(t, o)
	}

	if rest, err := g.WaitMarker(ctx, "NET eth0 "); err != nil {
		t.Fatalf("eth0: %v", err)
	} else if strings.HasPrefix(rest, "missing") {
		t.Fatalf("the guest has no eth0: virtio_net did not bind")
	}
	if _, err := g.WaitScript(ctx); err != nil {
		t.Fatalf("script: %v", err)
	}
	hs := fields(g.Log(), "HS ")
	if got := strings.Fields(hs["ifaces"]); !slices.Contains(got, "eth0") {
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
	if !vhostdClient {
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("vhostd left its socket %s behind after SIGTERM (stat: %v)", sock, err)
		}
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

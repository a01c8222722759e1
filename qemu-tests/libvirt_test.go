package qemutests

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
)

// libvirtRingScript prints the guest's view of the example's <driver>: the virtqueue sizes
// (ethtool -g, current settings) and the queue pairs the device offers (ethtool -l, pre-set
// maximum), and uses both pairs on the guest's one vCPU (ethtool -L).
const libvirtRingScript = `ethtool -g eth0 | awk '/^Current/{c=1} c&&/^RX:/{r=$2} c&&/^TX:/{x=$2} END{print "RING rx=" r " tx=" x}'
ethtool -L eth0 combined 2
ethtool -l eth0 | awk '/^Combined:/{v[n++]=$2} END{print "CHANNELS max=" v[0] " cur=" v[1]}'
`

// TestLibvirt: libvirtd (Debian's packages; the machine's daemon, or one the test starts)
// defines and starts a domain whose memory backing and vhost-user interface are the ones in
// cmd/vhostd/dist/libvirt (memfd shared memory, 2 queue pairs, 1024-entry rings, MTU 9000),
// with QEMU running as libvirt's unprivileged user (all uids of its process). The guest comes
// up with MTU 9000, rings of 1024 and 2 queue pairs (both put to use), pings the host and is
// pinged, and 16 MiB go each way with SHA-256 equal on both ends; then vhostd is SIGKILLed and
// restarted, and the guest is reachable again and pings the host; then it powers off.
// /vhostd=client: vhostd-connects.xml, libvirt mode='server' (QEMU listens), vhostd --client.
// /vhostd=server: vhostd-listens.xml, libvirt mode='client' (vhostd listens, the test hands
// its socket to QEMU's user with chown).
func TestLibvirt(t *testing.T) {
	flows := []Flow{{Port: 5001, MiB: 16}, {ToGuest: true, Port: 5002, MiB: 16}}
	for _, tc := range []struct {
		name    string
		listens bool
	}{
		{"vhostd=client", false},
		{"vhostd=server", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lb := StartLibvirtBed(t, LibvirtConfig{
				VhostdListens: tc.listens,
				VhostdArgs:    []string{"--queues", "2", "--mtu", "9000"},
				Script: libvirtRingScript + PingBothWays + FlowScript(false, flows...) +
					"waithost 5003\npingcheck $HIP\n",
			})
			b := lb.Bed
			if net := b.WaitLine(`VHOSTD: NET eth0 (.*)\n`, 0)[1]; !strings.Contains(net, " mtu=9000 ") {
				t.Errorf("guest eth0 came up with %q: want mtu=9000 (the example's host_mtu)", net)
			}
			if m := b.WaitLine(`RING rx=(\d*) tx=(\d*)\n`, 0); m[1] != "1024" || m[2] != "1024" {
				t.Errorf("guest rings rx=%s tx=%s, want 1024 each (rx_queue_size, tx_queue_size)", m[1], m[2])
			}
			if m := b.WaitLine(`CHANNELS max=(\d*) cur=(\d*)\n`, 0); m[1] != "2" || m[2] != "2" {
				t.Errorf("device offers %s queue pairs, %s in use; want 2 and 2 (<driver queues='2'/>)", m[1], m[2])
			}
			b.CheckPingBothWays(0)
			b.RunFlows(flows...)
			var rx, tx uint64
			for i, st := range b.Stats(2) {
				t.Logf("vhostd queue %d: %v", i, st)
				rx, tx = rx+st["rx_packets"], tx+st["tx_packets"]
			}
			if rx == 0 || tx == 0 {
				t.Errorf("vhostd counted rx_packets=%d tx_packets=%d over both pairs, want both > 0", rx, tx)
			}
			// vhostd restarts: the connection comes back (the guest, waiting for the host's
			// connect, is reachable again) and the guest pings the host.
			b.WaitLine(`WAIT port=5003\n`, 0)
			from := len(b.Guest.Log())
			lb.RestartVhostd(tc.listens)
			b.Release(5003)
			b.GuestPinged(from)
			b.WaitExit()
		})
	}
}

// TestLibvirtExamplesValid checks cmd/vhostd/dist/libvirt's domains against libvirt's own
// schema (virt-xml-validate, from libvirt-clients, with xmllint from libxml2-utils).
func TestLibvirtExamplesValid(t *testing.T) {
	if _, err := exec.LookPath("virt-xml-validate"); err != nil {
		privtest.Missing(t, "no virt-xml-validate (install libvirt-clients: run qemu-tests/setup.sh)")
	}
	if _, err := exec.LookPath("xmllint"); err != nil {
		privtest.Missing(t, "no xmllint (install libxml2-utils: run qemu-tests/setup.sh)")
	}
	files, err := filepath.Glob(filepath.Join(libvirtExamples, "*.xml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("examples in %s: %v %v, want both socket modes", libvirtExamples, files, err)
	}
	for _, f := range files {
		out, err := exec.Command("virt-xml-validate", f, "domain").CombinedOutput()
		if err != nil {
			t.Errorf("virt-xml-validate %s: %v\n%s", f, err, out)
		}
	}
}

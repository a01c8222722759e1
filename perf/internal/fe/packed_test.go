package fe

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/perf/internal/frames"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

// testpmdVhost starts testpmd with a vhost-user port (DPDK's net_vhost,
// which offers packed rings) at a fresh socket, forwarding to and from a
// null port: guest TX is dropped, guest RX is the null port's frames.
func testpmdVhost(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		privtest.Missing(t, "needs root for DPDK's vhost-user port (euid %d)", os.Geteuid())
	}
	bin := privtest.RequireCommand(t, "dpdk-testpmd")
	sfx := testutil.Suffix(8)
	sock := filepath.Join(t.TempDir(), "pk"+sfx+".sock")
	prefix := "vperf-fe-test" + sfx
	cmd := exec.Command(bin, "--no-pci", "--no-huge", "-m", "256", "--file-prefix="+prefix, "--lcores=(0,1)@1",
		"--vdev", "net_vhost0,iface="+sock+",queues=1", "--vdev", "net_null0",
		"--", "--total-num-mbufs=16384", "--auto-start", "--stats-period", "3600", "--forward-mode=io")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // by its PID: this test started it
		cmd.Wait()
		os.RemoveAll("/var/run/dpdk/" + prefix)
		if t.Failed() {
			t.Logf("testpmd: %s", out.String())
		}
	})
	return sock
}

// moves runs loop until it has counted frames or 20 s passed.
func moves(t *testing.T, what string, loop func(stop chan struct{}, n *Counters)) {
	t.Helper()
	stop, done := make(chan struct{}), make(chan struct{})
	var n Counters
	go func() { loop(stop, &n); close(done) }()
	end := time.Now().Add(20 * time.Second)
	for n.Frames.Load() < 3*RingSize && time.Now().Before(end) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-done
	if got := n.Frames.Load(); got < 3*RingSize {
		t.Fatalf("%s on packed rings: %d frames in 20 s, want at least %d (three laps: the wrap counters turned)", what, got, 3*RingSize)
	}
}

// TestPackedAgainstTestpmd drives DPDK's vhost back-end with packed rings
// both ways, several laps of the ring each (so both wrap counters turn).
func TestPackedAgainstTestpmd(t *testing.T) {
	sock := testpmdVhost(t)
	c, err := Dial(sock, 2048, false, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.PTX == nil || c.TX != nil {
		t.Fatal("Dial with packed set up split rings")
	}
	hdr := [frames.VnetHdrLen]byte{}
	fr := frames.UDP(64, frames.OtherMAC, frames.GuestMAC)
	moves(t, "guest TX", func(stop chan struct{}, n *Counters) { c.TxLoop(hdr, fr, stop, n) })
	moves(t, "guest RX", func(stop chan struct{}, n *Counters) { c.RxLoop(stop, n, nil) })
}

// TestPackedRefused: a back-end without packed rings gets a clear error
// that names the feature (the harness reads ErrNoPacked as "unavailable").
func TestPackedRefused(t *testing.T) {
	dev := vhosttest.NewNullDevice(1<<vhost.FeatVersion1|1<<vhost.FeatRingEventIdx, 2)
	f := vhosttest.Serve(t, dev)
	_, err := Start(f, 2048, false, true)
	if err == nil || !strings.HasPrefix(err.Error(), ErrNoPacked) || !strings.Contains(err.Error(), "VIRTIO_F_RING_PACKED (feature bit 34") {
		t.Fatalf("packed front-end against a split-only back-end: %v", err)
	}
	// The same back-end offering bit 34 is not refused (whether its vhost
	// layer then takes a packed ring's 32-bit SET_VRING_BASE depends on
	// the vhostd under test: the fe sends QEMU's 0x80008000).
	dev2 := vhosttest.NewNullDevice(1<<vhost.FeatVersion1|1<<vhost.FeatRingEventIdx|1<<vhost.FeatRingPacked, 2)
	if _, err := Start(vhosttest.Serve(t, dev2), 2048, false, true); err != nil && strings.HasPrefix(err.Error(), ErrNoPacked) {
		t.Fatalf("packed front-end refused a back-end offering packed rings: %v", err)
	}
}

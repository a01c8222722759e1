package netdev

import (
	"os/exec"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/privtest"
	"golang.org/x/sys/unix"
)

// sendTX queues n frames on ring 1 and kicks.
func (r *devRig) sendTX(t testing.TB, n int) {
	t.Helper()
	tx := r.fe.Ring(1).Driver
	for i := 0; i < n; i++ {
		if _, err := tx.AddChain([][]byte{make([]byte, 12), frameOf(1000, byte(i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tx.Publish()
	r.fe.Kick(1)
}

// waitTXReturned waits until n TX chains came back.
func (r *devRig) waitTXReturned(t testing.TB, n int) {
	t.Helper()
	tx := r.fe.Ring(1).Driver
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < n && time.Now().Before(deadline) {
		r.fe.WaitCall(1, 100*time.Millisecond)
		got += len(tx.UsedAll())
	}
	if got != n {
		t.Fatalf("%d of %d TX chains returned", got, n)
	}
}

// TestBadInput52TAPFullDrops: when the TAP queue refuses frames with EAGAIN
// the policy is drop: every chain goes back to the guest, the drops are
// counted, and the worker does not spin waiting for room.
func TestBadInput52TAPFullDrops(t *testing.T) {
	r := startDevice(t, Config{QueuePairs: 1}, allFeatures())
	// A tiny send buffer and nobody reading: the stand-in fills after a
	// few frames and answers EAGAIN, as a full macvtap does.
	unix.SetsockoptInt(r.host.queues[0].Fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	unix.SetsockoptInt(r.host.peers[0], unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	r.sendTX(t, 100)
	r.waitTXReturned(t, 100)
	st := r.dev.Stats()[0].Values
	if st["tx_dropped_tap_full"] == 0 {
		t.Fatalf("no tx_dropped_tap_full: %v", st)
	}
	if st["tx_packets"]+st["tx_dropped_tap_full"] != 100 {
		t.Fatalf("tx_packets %d + tx_dropped_tap_full %d != 100", st["tx_packets"], st["tx_dropped_tap_full"])
	}
	assertIdleCPU(t)
}

// assertIdleCPU checks that the process uses next to no CPU for a while:
// no worker spins (BAD-INPUTS 51, 52). Event mode workers sleep at once.
func assertIdleCPU(t *testing.T) {
	t.Helper()
	var a, b unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &a)
	time.Sleep(time.Second)
	unix.Getrusage(unix.RUSAGE_SELF, &b)
	used := time.Duration(b.Utime.Nano()+b.Stime.Nano()-a.Utime.Nano()-a.Stime.Nano()) * time.Nanosecond
	if used > 200*time.Millisecond {
		t.Fatalf("the process used %v of CPU in 1 s while idle: a worker spins", used)
	}
}

// TestBadInput51TAPGone: a TAP deleted under a running device: TX chains
// still go back to the guest, counted as tx_dropped_tap, and the worker
// does not spin on the dead fd.
func TestBadInput51TAPGone(t *testing.T) {
	ns := privtest.NetNS(t)
	name := "vhg" + privtest.Suffix(8)
	cfg := Config{TAP: name, QueuePairs: 1, Log: hclog.NewNullLogger()}
	dev, err := Open(cfg)
	if err != nil {
		t.Fatalf("open TAP in netns %s: %v", ns, err)
	}
	r := serveDevice(t, dev, 1, allFeatures())
	r.sendTX(t, 4)
	r.waitTXReturned(t, 4)
	if out, err := exec.Command("ip", "-n", ns, "link", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v: %s", err, out)
	}
	r.sendTX(t, 20)
	r.waitTXReturned(t, 20)
	st := dev.Stats()[0].Values
	if st["tx_dropped_tap"] == 0 {
		t.Fatalf("no tx_dropped_tap after the TAP was deleted: %v", st)
	}
	// RX: the guest offers buffers, nothing may come and nothing may spin.
	rx := r.fe.Ring(0).Driver
	for i := 0; i < 8; i++ {
		rx.AddChain(nil, []int{2048})
	}
	rx.Publish()
	r.fe.Kick(0)
	assertIdleCPU(t)
}

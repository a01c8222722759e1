package netdev

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"golang.org/x/sys/unix"
)

// sendTX queues n frames on ring 1 and kicks.
func (r *devRig) sendTX(t testing.TB, n int) {
	t.Helper()
	tx := r.fe.Ring(1).Driver
	for i := 0; i < n; i++ {
		if _, err := tx.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(1000, byte(i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tx.Publish()
	r.fe.Kick(1)
}

// waitTXReturned waits until n TX chains came back on ring 1.
func (r *devRig) waitTXReturned(t testing.TB, n int) {
	t.Helper()
	r.waitReturned(t, 1, n)
}

// waitReturned waits until n chains came back on ring i.
func (r *devRig) waitReturned(t testing.TB, i, n int) {
	t.Helper()
	drv := r.fe.Ring(i).Driver
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < n && time.Now().Before(deadline) {
		r.fe.WaitCall(i, 100*time.Millisecond)
		got += len(drv.UsedAll())
	}
	if got != n {
		t.Fatalf("%d of %d chains returned on ring %d", got, n, i)
	}
}

// TestBadInput52TAPFullDrops: when the TAP queue refuses frames with EAGAIN
// the policy is drop: every chain goes back to the guest, the drops are
// counted, and the worker does not spin waiting for room.
func TestBadInput52TAPFullDrops(t *testing.T) {
	for _, w := range []TAPWrite{TAPWriteSyscall, TAPWriteUring} {
		t.Run(w.String(), func(t *testing.T) { tapFullDrops(t, w) })
	}
}

func tapFullDrops(t *testing.T, w TAPWrite) {
	r := startDevice(t, Config{QueuePairs: 1, TAPWrite: w}, allFeatures())
	// (VHOSTD_TEST_TAP_WRITE=uring gives the write case a ring too.)
	if got := r.dev.Status().TAPWrite.Mode; w == TAPWriteUring && got != "uring" {
		t.Fatalf("status tap write mode %q, want %v", got, w)
	}
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
// still go back to the guest, counted as tx_dropped_tap, the pair reports
// tap_gone, the dead fd leaves the worker's epoll set, and nothing spins.
func TestBadInput51TAPGone(t *testing.T) {
	for _, w := range []TAPWrite{TAPWriteSyscall, TAPWriteUring} {
		t.Run(w.String(), func(t *testing.T) { tapGone(t, w) })
	}
}

func tapGone(t *testing.T, w TAPWrite) {
	ns := privtest.NetNS(t)
	name := "vhg" + testutil.Suffix(8)
	cfg := Config{TAP: name, QueuePairs: 1, Log: hclog.NewNullLogger(), TAPWrite: w}
	dev, err := Open(cfg)
	if err != nil {
		t.Fatalf("open TAP in netns %s: %v", ns, err)
	}
	r := serveDevice(t, dev, 1, allFeatures())
	r.sendTX(t, 4)
	r.waitTXReturned(t, 4)
	fd := dev.pairs[0].tq.Fd()
	if !epollWatches(t, fd) {
		t.Fatalf("the TAP queue fd %d is in no epoll set while the device runs", fd)
	}
	if out, err := exec.Command("ip", "-n", ns, "link", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v: %s", err, out)
	}
	r.sendTX(t, 20)
	r.waitTXReturned(t, 20)
	st := dev.Stats()[0].Values
	if st["tx_dropped_tap"] == 0 {
		t.Fatalf("no tx_dropped_tap after the TAP was deleted: %v", st)
	}
	// The host watch retires the queue within a probe interval or so.
	retired := func() bool { return dev.Stats()[0].Values["tap_gone"] != 0 && !epollWatches(t, fd) }
	if !testutil.WaitFor(5*time.Second, 20*time.Millisecond, retired) {
		t.Fatalf("5 s after the TAP was deleted: tap_gone %d, fd %d in an epoll set %v",
			dev.Stats()[0].Values["tap_gone"], fd, epollWatches(t, fd))
	}
	r.offerRXExpectNothing(t)
}

// offerRXExpectNothing posts RX buffers on ring 0 after the TAP is gone:
// nothing may come and nothing may spin.
func (r *devRig) offerRXExpectNothing(t *testing.T) {
	t.Helper()
	rx := r.fe.Ring(0).Driver
	for i := 0; i < 8; i++ {
		rx.AddChain(nil, []int{2048})
	}
	rx.Publish()
	r.fe.Kick(0)
	assertIdleCPU(t)
	if cs := rx.UsedAll(); len(cs) != 0 {
		t.Errorf("%d RX chains used after the TAP went away", len(cs))
	}
}

// TestBadInput51TAPDownAndUp: a TAP set down is not gone. TX frames are
// dropped (tx_dropped_tap) while it is down, the queue is not retired, and
// frames flow again once it is up.
func TestBadInput51TAPDownAndUp(t *testing.T) {
	ns := privtest.NetNS(t)
	name := "vhd" + testutil.Suffix(8)
	dev, err := Open(Config{TAP: name, QueuePairs: 1, Log: hclog.NewNullLogger()})
	if err != nil {
		t.Fatalf("open TAP in netns %s: %v", ns, err)
	}
	r := serveDevice(t, dev, 1, allFeatures())
	r.sendTX(t, 4)
	r.waitTXReturned(t, 4)
	privtest.IP(t, ns, "link", "set", name, "down")
	r.sendTX(t, 10)
	r.waitTXReturned(t, 10)
	st := dev.Stats()[0].Values
	if st["tx_dropped_tap"] != 10 || st["tx_packets"] != 4 {
		t.Fatalf("TAP down: tx_packets %d tx_dropped_tap %d, want 4 and 10", st["tx_packets"], st["tx_dropped_tap"])
	}
	// Longer than a probe interval: the host watch must not retire it.
	time.Sleep(probeInterval + 300*time.Millisecond)
	if g := dev.Stats()[0].Values["tap_gone"]; g != 0 {
		t.Fatalf("a TAP set down was taken for gone (tap_gone %d)", g)
	}
	privtest.IP(t, ns, "link", "set", name, "up")
	r.sendTX(t, 6)
	r.waitTXReturned(t, 6)
	st = dev.Stats()[0].Values
	if st["tx_packets"] != 10 || st["tx_dropped_tap"] != 10 {
		t.Fatalf("TAP up again: tx_packets %d tx_dropped_tap %d, want 10 and 10", st["tx_packets"], st["tx_dropped_tap"])
	}
}

// warnLogger logs warnings and errors into a buffer the test can read.
func warnLogger() (hclog.Logger, *testutil.SyncBuffer) {
	var buf testutil.SyncBuffer
	return hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Warn}), &buf
}

// epollWatches reports whether an epoll instance of this process has fd
// in its interest list (/proc/self/fdinfo lists each watched fd as tfd).
func epollWatches(t testing.TB, fd int) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "tfd:" && f[1] == strconv.Itoa(fd) {
				return true
			}
		}
	}
	return false
}

// TestBadInput51MacvtapGone: a macvtap deleted under a running device
// swallows writes and stays silent on reads, so only a probe tells. Within
// a few seconds its TX frames go back to the guest counted tx_dropped_tap,
// not tx_packets, the pair reports tap_gone, the TAP fd leaves the
// worker's epoll set, one warning names the interface and queue, and
// nothing spins. Event mode and busy polling.
func TestBadInput51MacvtapGone(t *testing.T) {
	for _, tc := range watchModes {
		t.Run(tc.name, func(t *testing.T) {
			ns, mvt, _ := privtest.Macvtap(t, "vn", nil)
			log, logs := warnLogger()
			dev, err := Open(Config{Macvtap: mvt, QueuePairs: 1, BusyPoll: tc.spin, Log: log})
			if err != nil {
				t.Fatalf("open macvtap %s in netns %s: %v", mvt, ns, err)
			}
			r := serveDevice(t, dev, 1, allFeatures())
			r.sendTX(t, 4)
			r.waitTXReturned(t, 4)
			if st := dev.Stats()[0].Values; st["tx_packets"] != 4 || st["tap_gone"] != 0 {
				t.Fatalf("before deletion: %v", st)
			}
			fd := dev.pairs[0].tq.Fd()
			if !epollWatches(t, fd) {
				t.Fatalf("the macvtap queue fd %d is in no epoll set while the device runs", fd)
			}
			privtest.IP(t, ns, "link", "del", mvt)
			deleted := time.Now()
			// Frames written before the deletion is noticed are swallowed
			// by the kernel and counted tx_packets: at most a probe
			// interval's worth.
			for dev.Stats()[0].Values["tap_gone"] == 0 {
				if time.Since(deleted) > 5*time.Second {
					t.Fatalf("macvtap deleted 5 s ago and not reported gone: %v", dev.Stats()[0].Values)
				}
				r.sendTX(t, 2)
				r.waitTXReturned(t, 2)
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("macvtap reported gone %v after its deletion", time.Since(deleted).Round(time.Millisecond))
			before := dev.Stats()[0].Values
			r.sendTX(t, 20)
			r.waitTXReturned(t, 20)
			after := dev.Stats()[0].Values
			if after["tx_packets"] != before["tx_packets"] || after["tx_dropped_tap"] != before["tx_dropped_tap"]+20 {
				t.Fatalf("20 frames to a deleted macvtap: tx_packets %d -> %d, tx_dropped_tap %d -> %d; want unchanged and +20",
					before["tx_packets"], after["tx_packets"], before["tx_dropped_tap"], after["tx_dropped_tap"])
			}
			if epollWatches(t, fd) {
				t.Errorf("the deleted macvtap's queue fd %d is still in an epoll set", fd)
			}
			if got := strings.Count(logs.String(), "[WARN]"); got != 1 || !strings.Contains(logs.String(), mvt) || !strings.Contains(logs.String(), "queue=0") {
				t.Errorf("want one warning naming %s and queue 0, got %d:\n%s", mvt, got, logs)
			}
			r.offerRXExpectNothing(t)
		})
	}
}

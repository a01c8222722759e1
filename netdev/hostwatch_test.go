package netdev

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
	"golang.org/x/sys/unix"
)

// watchRig is a two-pair device over the fake host whose probe the test
// controls: queue 0 reports ENOLINK, as a deleted macvtap does, once gone
// is set. probes counts the probes of each queue.
type watchRig struct {
	*devRig
	gone   atomic.Bool
	probes [2]atomic.Int64
	logs   *testutil.SyncBuffer
}

func startWatchRig(t *testing.T, spin time.Duration) *watchRig {
	t.Helper()
	log, logs := warnLogger()
	cfg := Config{TAP: "fake", QueuePairs: 2, BusyPoll: spin}
	host := newFakeHost(t, 2)
	dev, err := newDevice(cfg, log, host)
	if err != nil {
		t.Fatal(err)
	}
	w := &watchRig{logs: logs}
	dev.probeEvery = 10 * time.Millisecond
	dev.probe = func(q *tap.Queue) unix.Errno {
		w.probes[q.Index()].Add(1)
		if q.Index() == 0 && w.gone.Load() {
			return unix.ENOLINK
		}
		return 0
	}
	// Runs after serveDevice's cleanup, which closes the device: Close
	// must have waited for the host watch to end.
	t.Cleanup(func() {
		select {
		case <-dev.watchDone:
		default:
			t.Error("the host watch is still running after Close")
		}
	})
	w.devRig = serveDevice(t, dev, 2, allFeatures())
	w.host = host
	return w
}

// send queues one frame on pair p's TX ring and kicks.
func (w *watchRig) send(t *testing.T, p int, tag byte) {
	t.Helper()
	tx := w.fe.Ring(2*p + 1).Driver
	if _, err := tx.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(64, tag)}, nil); err != nil {
		t.Fatal(err)
	}
	tx.Publish()
	w.fe.Kick(2*p + 1)
}

// waitGone waits until pair 0 reports tap_gone.
func (w *watchRig) waitGone(t *testing.T) {
	t.Helper()
	gone := func() bool { return w.dev.Stats()[0].Values["tap_gone"] != 0 }
	if !testutil.WaitFor(5*time.Second, 5*time.Millisecond, gone) {
		t.Fatalf("pair 0 not reported gone: %v", w.dev.Stats()[0].Values)
	}
}

// checkRetired checks the state a gone queue 0 must leave: frames dropped
// and returned, nothing on the TAP, its fd out of every epoll set, no more
// probes of it, RX stopped, one warning; pair 1 untouched.
func (w *watchRig) checkRetired(t *testing.T, detectedBy string) {
	t.Helper()
	before := w.dev.Stats()[0].Values
	w.sendTX(t, 10)
	w.waitTXReturned(t, 10)
	after := w.dev.Stats()[0].Values
	if after["tx_packets"] != before["tx_packets"] || after["tx_dropped_tap"] != before["tx_dropped_tap"]+10 {
		t.Fatalf("10 frames to a gone queue: tx_packets %d -> %d, tx_dropped_tap %d -> %d; want unchanged and +10",
			before["tx_packets"], after["tx_packets"], before["tx_dropped_tap"], after["tx_dropped_tap"])
	}
	if waitReadable(w.host.peers[0], 50*time.Millisecond) {
		t.Fatal("a frame reached a gone TAP queue")
	}
	if epollWatches(t, w.host.queues[0].Fd()) {
		t.Error("the gone queue's fd is still in an epoll set")
	}
	if !epollWatches(t, w.host.queues[1].Fd()) {
		t.Error("the live queue's fd left the epoll sets")
	}
	n := w.probes[0].Load()
	time.Sleep(50 * time.Millisecond)
	if m := w.probes[0].Load(); m != n {
		t.Errorf("a retired queue is still probed: %d -> %d", n, m)
	}
	if w.probes[1].Load() == 0 {
		t.Error("the live queue was never probed")
	}
	// RX: a frame waits in the stand-in and the guest offers buffers;
	// nothing may be delivered.
	if _, err := unix.Write(w.host.peers[0], append(make([]byte, 12), testutil.PatternFrame(64, 9)...)); err != nil {
		t.Fatal(err)
	}
	rx := w.fe.Ring(0).Driver
	for i := 0; i < 4; i++ {
		rx.AddChain(nil, []int{2048})
	}
	rx.Publish()
	w.fe.Kick(0)
	time.Sleep(50 * time.Millisecond)
	if cs := rx.UsedAll(); len(cs) != 0 {
		t.Errorf("a gone queue delivered %d RX frames", len(cs))
	}
	logs := w.logs.String()
	if strings.Count(logs, "[WARN]") != 1 || !strings.Contains(logs, "interface=fake") ||
		!strings.Contains(logs, "queue=0") || !strings.Contains(logs, "detected_by="+detectedBy) {
		t.Errorf("want one warning for interface fake queue 0 detected by %s, got:\n%s", detectedBy, logs)
	}
	// Pair 1 still carries traffic.
	w.send(t, 1, 7)
	if got := w.host.peerRead(t, 1, 5*time.Second); got[12] != 7 {
		t.Fatalf("pair 1 frame: tag %d", got[12])
	}
	// The counters are published before the chain is returned.
	w.waitReturned(t, 3, 1)
	if st := w.dev.Stats()[1].Values; st["tap_gone"] != 0 || st["tx_packets"] != 1 {
		t.Errorf("pair 1: %v", st)
	}
	if text := w.dev.StatsText(); strings.Count(text, "tap_gone=1") != 1 {
		t.Errorf("StatsText:\n%s", text)
	}
}

var watchModes = []struct {
	name string
	spin time.Duration
}{
	{name: "event"},
	{name: "busy-poll", spin: 50 * time.Microsecond},
}

// TestHostWatchProbe: a queue whose probe reports it gone (a deleted
// macvtap, which I/O never reports) is put in the TAP-gone state by the
// host watch, in every worker mode.
func TestHostWatchProbe(t *testing.T) {
	for _, m := range watchModes {
		t.Run(m.name, func(t *testing.T) {
			w := startWatchRig(t, m.spin)
			w.sendTX(t, 4)
			for i := 0; i < 4; i++ {
				w.host.peerRead(t, 0, 5*time.Second)
			}
			w.waitTXReturned(t, 4)
			if !epollWatches(t, w.host.queues[0].Fd()) {
				t.Fatal("queue 0's fd is in no epoll set while it runs")
			}
			time.Sleep(30 * time.Millisecond) // a few probes that find it there
			if st := w.dev.Stats()[0].Values; st["tap_gone"] != 0 || st["tx_packets"] != 4 {
				t.Fatalf("before: %v", st)
			}
			w.gone.Store(true)
			w.waitGone(t)
			w.checkRetired(t, "probe")
		})
	}
}

// TestHostWatchIOGone: a queue the worker found gone through its I/O (as
// a deleted TAP's EBADFD does) is retired by the host watch too: its fd
// leaves the epoll sets and the warning is logged, without a probe.
func TestHostWatchIOGone(t *testing.T) {
	for _, m := range watchModes {
		t.Run(m.name, func(t *testing.T) {
			w := startWatchRig(t, m.spin)
			w.sendTX(t, 1)
			w.host.peerRead(t, 0, 5*time.Second)
			w.waitTXReturned(t, 1)
			// What tapStep does when a read or write says the TAP is gone.
			w.dev.pairs[0].tapGone.Store(true)
			unwatched := func() bool { return !epollWatches(t, w.host.queues[0].Fd()) }
			if !testutil.WaitFor(5*time.Second, 5*time.Millisecond, unwatched) {
				t.Fatal("the gone queue's fd stayed in an epoll set")
			}
			w.checkRetired(t, "io")
		})
	}
}

package netdev

import (
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// TestStatusReportsRingsAndWorkers checks the operator's view of a running
// device: features, ring sizes and states (a TX ring the guest breaks
// turns broken), and one worker per pair whose polls move.
func TestStatusReportsRingsAndWorkers(t *testing.T) {
	r := startDevice(t, Config{QueuePairs: 2}, allFeatures())
	st := r.dev.Status()
	if st.Interface != "fake" || st.Kind != "tap" || st.MTU != 1500 || st.QueuePairs != 2 {
		t.Fatalf("status: %+v", st)
	}
	if st.Acked == 0 || st.Acked&^st.Offered != 0 {
		t.Fatalf("acked %#x, offered %#x", st.Acked, st.Offered)
	}
	for _, p := range st.Pairs {
		for _, rs := range []RingStatus{p.RX, p.TX} {
			if rs.Size != 256 || rs.State != "enabled" {
				t.Fatalf("pair %d ring %d: %+v", p.Pair, rs.Index, rs)
			}
		}
	}
	ws := r.dev.WorkerStats()
	if len(ws) != 2 || ws[0] == nil || ws[1] == nil {
		t.Fatalf("worker stats: %+v", ws)
	}
	// A TX chain pointing past the descriptor table breaks ring 1.
	tx := r.fe.Ring(1).Driver
	head, err := tx.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(60, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := tx.ReadDesc(head)
	d.Flags |= vqdriver.FlagNext
	d.Next = tx.Config().Size + 5
	tx.WriteDesc(head, d)
	tx.Publish()
	r.fe.Kick(1)
	if !testutil.WaitFor(5*time.Second, time.Millisecond, func() bool { return r.dev.Status().Pairs[0].TX.State == "broken" }) {
		t.Fatalf("TX ring of pair 0: %+v after a breaking chain, want broken", r.dev.Status().Pairs[0].TX)
	}
	if got := r.dev.Status().Pairs[0].RX.State; got != "enabled" {
		t.Fatalf("RX ring of pair 0: %s, want enabled", got)
	}
	if p := r.dev.WorkerStats()[0].Polls; p == 0 {
		t.Fatalf("pair 0's worker reports no polls after a kick")
	}
}

// BenchmarkPublish is one poll's publish after a poll that moved a frame
// each way and took a kick: a few of the counters changed.
func BenchmarkPublish(b *testing.B) {
	var c counters
	for i := 0; i < b.N; i++ {
		c.add(cTxPackets, 1)
		c.add(cTxBytes, 64)
		c.add(cRxPackets, 1)
		c.add(cRxBytes, 64)
		c.publish()
	}
}

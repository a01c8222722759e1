package netdev

import (
	"testing"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
	"golang.org/x/sys/unix"
)

// TestPathsZeroAllocsPacked is TestPathsZeroAllocs over packed rings: the
// paths drive virtqueue.Ring, one interface call per batch, and a packed
// ring allocates nothing either, TX or RX.
func TestPathsZeroAllocsPacked(t *testing.T) {
	frame := append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(60, 1)...)
	r := newRig(t, 256, 2048, true)
	drv, q := r.packed()
	tx := newTxPath()
	tx.reset(q, 1518)
	for i := 0; i < 200; i++ {
		drv.AddChain([][]byte{frame}, nil)
	}
	drv.Publish()
	if n := testing.AllocsPerRun(10, func() {
		tx.pop(8, &r.c)
		tx.toTAP(r.tq, true, &r.c)
		tx.complete()
		r.c.publish()
	}); n != 0 {
		t.Fatalf("TX path over a packed ring allocates %.1f times per batch", n)
	}
	if got := len(drv.UsedAll()); got < 80 {
		t.Fatalf("%d TX chains came back, want 88", got)
	}

	r2 := newRig(t, 256, 2048, true)
	drv2, q2 := r2.packed()
	rx := newRxPath()
	rx.reset(q2, true, 1530)
	for i := 0; i < 200; i++ {
		drv2.AddChain(nil, []int{2048})
	}
	drv2.Publish()
	if n := testing.AllocsPerRun(20, func() {
		for i := 0; i < 4; i++ {
			unix.Write(r2.peer, frame)
		}
		rx.refill(8, &r2.c)
		rx.fromTAP(r2.tq, 8, &r2.c)
		rx.complete()
		r2.c.publish()
	}); n != 0 {
		t.Fatalf("RX path over a packed ring allocates %.1f times per batch", n)
	}
	if got := len(drv2.UsedAll()); got < 80 {
		t.Fatalf("%d frames reached the guest, want 84", got)
	}
}

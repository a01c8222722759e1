package rawtap

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
)

// TestColdRingOrder passes 10 laps of buffers from a filler goroutine to
// a drainer through a coldRing: every buffer arrives once, in order, with
// what the filler wrote (the counters order the buffers' contents).
func TestColdRingOrder(t *testing.T) {
	r := newColdRing(64)
	var stop atomic.Bool
	const total = 10 * ColdSlots
	go func() {
		f := r.side(true)
		for f.k < total {
			if ok, _ := f.next(&stop); !ok {
				return
			}
			binary.LittleEndian.PutUint64(r.buf[f.k%ColdSlots], f.k)
			f.done()
		}
		f.mine.v.Store(f.k) // the last partial batch
	}()
	d := r.side(false)
	for d.k < total {
		if ok, _ := d.next(&stop); !ok {
			t.Fatal("stopped")
		}
		if got := binary.LittleEndian.Uint64(r.buf[d.k%ColdSlots]); got != d.k {
			t.Fatalf("buffer %d holds %d", d.k, got)
		}
		d.done()
	}
	stop.Store(true)
}

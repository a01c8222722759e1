package virtqueue

import (
	"math/rand/v2"
	"testing"
)

// TestPackedRingPosition: RingPosition, read from the ring alone, equals
// the device's used position whenever every chain popped has been pushed,
// through random traffic of chains of 1 to 4 slots (direct and indirect),
// batches that cross slot 0, and thousands of laps, on rings of several
// sizes (powers of two and not); a fresh ring reads 0x8000. A restart at
// that position carries on. Without PushBatch marking every slot of a
// multi-slot chain used, it fails (the slots after the first still read
// available).
func TestPackedRingPosition(t *testing.T) {
	for _, size := range []uint16{1, 2, 7, 64, 256} {
		r := newPackedRing(t, size, ringOpts{indirect: true})
		rnd := rand.New(rand.NewPCG(uint64(size), 3))
		check := func(when string) {
			t.Helper()
			got, err := r.cfg.RingPosition(r.m)
			if err != nil {
				t.Fatal(err)
			}
			if want := r.q.NextUsed(); got != want || r.q.NextAvail() != want {
				t.Fatalf("size %d, %s: RingPosition %#x, device used %#x avail %#x", size, when, got, want, r.q.NextAvail())
			}
		}
		check("fresh ring")
		if got, _ := r.cfg.RingPosition(r.m); got != 0x8000 {
			t.Fatalf("fresh ring position %#x", got)
		}
		for round := 0; round < 3000; round++ {
			// Post some chains (the ring may stay partly available).
			for k := rnd.IntN(4); k > 0; k-- {
				n := 1 + rnd.IntN(min(4, int(size)))
				if r.drv.FreeSlots() < n {
					break
				}
				in := make([]int, n)
				for i := range in {
					in[i] = 64
				}
				add := r.drv.AddChain
				if rnd.IntN(3) == 0 {
					add = r.drv.AddChainIndirect
				}
				if _, err := add(nil, in); err != nil {
					t.Fatal(err)
				}
			}
			r.drv.Publish()
			cs, err := r.pop(1 + rnd.IntN(8))
			if err != nil {
				t.Fatal(err)
			}
			used := make([]Used, len(cs))
			for i, c := range cs {
				used[i] = Used{Head: c.Head, Len: uint32(rnd.IntN(2) * 64)}
			}
			r.q.PushBatch(used)
			check("after a batch")
			if rnd.IntN(3) == 0 {
				r.drv.UsedAll()
			}
			if rnd.IntN(50) == 0 {
				// The back-end restarts at the position the ring shows.
				pos, _ := r.cfg.RingPosition(r.m)
				q, err := NewPackedQueue(r.m, r.cfg, uint32(pos))
				if err != nil {
					t.Fatal(err)
				}
				r.q = q
			}
		}
	}
}

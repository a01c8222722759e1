package virtqueue

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// TestPackedRewind: chains popped across several PopBatch calls and a
// ring wrap are handed back with Rewind (and the last of one batch with
// Unpop); the reported base then restarts a new queue exactly where the
// rewound chains are popped again, same ids in the same order.
func TestPackedRewind(t *testing.T) {
	r := newPackedRing(t, 7, ringOpts{indirect: true})
	// Move both sides to slot 5 so that the chains below wrap.
	for range 5 {
		r.drv.AddChain([][]byte{{0}}, nil)
	}
	r.drv.Publish()
	cs, _ := r.pop(8)
	for _, c := range cs {
		r.q.PushBatch([]Used{{Head: c.Head}})
	}
	r.drv.UsedAll()
	var ids []uint16
	for i, n := range []int{2, 1, 1, 2} { // 6 slots, 4 chains
		out := make([][]byte, n)
		for j := range out {
			out[j] = []byte{byte(i)}
		}
		id, err := r.drv.AddChain(out, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	r.drv.Publish()
	base := r.q.Base()
	a, _ := r.pop(1)
	b := NewChains(3, 4)
	n, _ := r.q.PopBatch(b)
	if n != 3 || a[0].Head != ids[0] {
		t.Fatalf("popped %d", n)
	}
	r.q.Unpop(1)
	// Slots: 5 used before, then 2 (wraps to 0), 1, 1: slot 2, wrap 0.
	if r.q.NextAvail() != 2 {
		t.Fatalf("avail after Unpop %#x, want 0x2", r.q.NextAvail())
	}
	if m, _ := r.q.PopBatch(b[2:]); m != 1 || b[2].Head != ids[3] {
		t.Fatalf("after Unpop: %d, head %d", m, b[2].Head)
	}
	r.q.Rewind(4)
	if r.q.Base() != base || r.q.NextAvail() != r.q.NextUsed() {
		t.Fatalf("base %#x after rewind, want %#x", r.q.Base(), base)
	}
	q, err := NewPackedQueue(r.m, r.cfg, r.q.Base())
	if err != nil {
		t.Fatal(err)
	}
	cs = NewChains(8, 4)
	n, err = q.PopBatch(cs)
	if err != nil || n != 4 {
		t.Fatalf("restart popped %d, %v", n, err)
	}
	for i, c := range cs[:n] {
		if c.Head != ids[i] || c.OutLen != uint32([]int{2, 1, 1, 2}[i]) {
			t.Fatalf("restart chain %d: head %d len %d", i, c.Head, c.OutLen)
		}
		q.PushBatch([]Used{{Head: c.Head}})
	}
	if got := r.drv.UsedAll(); len(got) != 4 || r.drv.NextUsed() != q.NextUsed() || q.NextUsed()&vqdriver.WrapBit != 0 {
		t.Fatalf("driver got %d, at %#x, device at %#x", len(got), r.drv.NextUsed(), q.NextUsed())
	}
}

// TestPackedRewindStopsAtPushed: Rewind never hands back a chain already
// pushed (a caller bug it refuses to turn into a corrupt ring).
func TestPackedRewindStopsAtPushed(t *testing.T) {
	r := newPackedRing(t, 8, ringOpts{})
	for range 3 {
		r.drv.AddChain([][]byte{{1}}, nil)
	}
	r.drv.Publish()
	cs, _ := r.pop(3)
	r.q.PushBatch([]Used{{Head: cs[1].Head}, {Head: cs[2].Head}})
	r.q.Rewind(3)
	if r.q.NextAvail() != 3|vqdriver.WrapBit {
		t.Fatalf("avail %#x: rewound pushed chains", r.q.NextAvail())
	}
}

// TestPackedQueueTouchesNothingUnlessCalled is BAD-INPUTS 43 for packed
// rings: NewPackedQueue and SetMemory write nothing; a ring that falls out
// of memory leaves an inert, broken queue.
func TestPackedQueueTouchesNothingUnlessCalled(t *testing.T) {
	r := newPackedRing(t, 8, ringOpts{eventIdx: true})
	r.drv.AddChain([][]byte{[]byte("a")}, nil)
	r.drv.Publish()
	before := bytes.Clone(r.mem)
	q, err := NewPackedQueue(r.m, r.cfg, vqdriver.WrapBit)
	if err != nil || q.SetMemory(r.m) != nil || !bytes.Equal(before, r.mem) {
		t.Fatalf("NewPackedQueue/SetMemory wrote guest memory (%v)", err)
	}
	other := oneRegion(t, 0x4000_0000, heapMem(4096))
	if err := q.SetMemory(other); !errors.Is(err, ErrRingUnmapped) || q.Broken() != ErrRingUnmapped {
		t.Fatalf("SetMemory = %v", err)
	}
	cs := NewChains(2, 2)
	if n, err := q.PopBatch(cs); n != 0 || err != ErrRingUnmapped {
		t.Fatalf("PopBatch = %d, %v", n, err)
	}
	q.PushBatch([]Used{{Head: 0, Len: 1}})
	q.DisableNotify()
	if q.EnableNotify() || q.NeedsNotify() || !bytes.Equal(before, r.mem) {
		t.Fatal("inert queue wrote memory or reports work")
	}
}

// TestBadInputPackedDoubleFetch: a guest goroutine rewrites ring slots
// and indirect table entries at random while the device pops; every chain
// the device returns is consistent with one copy of each descriptor (all
// iovecs inside guest memory, lengths matching), whatever it races with.
func TestBadInputPackedDoubleFetch(t *testing.T) {
	const size = 16
	r := newPackedRing(t, size, ringOpts{indirect: true, slab: 16})
	spare := r.spare()
	tbl := spare + 2048
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(3, 4))
		for !stop.Load() {
			d := PD{Addr: spare + uint64(rng.IntN(64)), Len: uint32(rng.IntN(64)), ID: uint16(rng.IntN(size + 2)),
				Flags: uint16(rng.IntN(8)) | vqdriver.AvailFlags(uint16(rng.IntN(2)))}
			switch rng.IntN(8) {
			case 0:
				d.Addr = rng.Uint64()
			case 1:
				d.Len = rng.Uint32()
			case 2:
				d.Addr, d.Len = tbl, 16*uint32(1+rng.IntN(4))
			}
			if rng.IntN(2) == 0 {
				r.drv.WriteTableAt(tbl+16*uint64(rng.IntN(4)), d)
			} else {
				r.drv.WriteRaw(uint16(rng.IntN(size)), d)
			}
		}
	})
	cs := NewChains(8, 16)
	used := make([]Used, 0, 8)
	pops, broken := 0, 0
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		if r.q.Broken() != nil {
			broken++
			q, err := NewPackedQueue(r.m, r.cfg, uint32(r.q.NextAvail()))
			if err != nil {
				t.Fatal(err)
			}
			r.q = q
		}
		n, err := r.q.PopBatch(cs)
		if err != nil && !errors.Is(err, ErrBroken) {
			t.Fatalf("error %v does not match ErrBroken", err)
		}
		used = used[:0]
		for i := range cs[:n] {
			checkChain(t, &cs[i], size, func(b []byte) bool { return inside(b, r.mem) })
			used = append(used, Used{Head: cs[i].Head, Len: cs[i].InLen})
		}
		r.q.PushBatch(used)
		pops += n
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d chains popped, queue broken %d times", pops, broken)
	if pops == 0 {
		t.Fatal("no chain popped")
	}
}

// checkChain checks the invariants every popped chain holds, whatever the
// guest wrote: head below size, iovecs non-empty and inside guest memory,
// lengths matching the iovecs and below 2^32, no iovecs when malformed.
func checkChain(t testing.TB, c *Chain, size uint16, in func([]byte) bool) {
	t.Helper()
	if c.Head >= size {
		t.Fatalf("head %d >= size %d", c.Head, size)
	}
	var out, inn uint64
	for _, b := range c.Out {
		if len(b) == 0 || !in(b) {
			t.Fatalf("bad out iovec (len %d)", len(b))
		}
		out += uint64(len(b))
	}
	for _, b := range c.In {
		if len(b) == 0 || !in(b) {
			t.Fatalf("bad in iovec (len %d)", len(b))
		}
		inn += uint64(len(b))
	}
	if out != uint64(c.OutLen) || inn != uint64(c.InLen) || out+inn > 1<<32-1 {
		t.Fatalf("lengths: iovecs %d/%d, fields %d/%d", out, inn, c.OutLen, c.InLen)
	}
	if c.Err != nil && (c.Out != nil || c.In != nil) {
		t.Fatalf("malformed chain (%v) with iovecs", c.Err)
	}
}

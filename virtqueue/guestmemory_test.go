package virtqueue

// What the queue reads and writes in guest memory: each word read once while the guest
// rewrites it, used.idx never read back, nothing touched unless called (BAD-INPUTS
// section D, items 39, 40 and 43).

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/shmem"
)

// TestBadInput39DoubleFetch runs PopBatch and PushBatch while a second
// goroutine (the guest) keeps rewriting descriptors (direct and in an
// indirect table) and avail ring entries with random values, some of them
// valid. By construction every field is read once; the test checks the
// consequences: no panic, every iovec inside guest memory and of the
// advertised length, and the queue ends valid or broken, never stuck.
func TestBadInput39DoubleFetch(t *testing.T) {
	for _, indirect := range []bool{false, true} {
		name := "direct"
		if indirect {
			name = "indirect"
		}
		t.Run(name, func(t *testing.T) {
			const size = 16
			r := newTestRing(t, size, ringOpts{indirect: true, slab: 16})
			spare := r.spare()
			tbl := spare + 2048
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(1, 2))
				for !stop.Load() {
					d := D{Addr: spare + uint64(rng.IntN(64)), Len: uint32(rng.IntN(64)), Flags: uint16(rng.IntN(8)), Next: uint16(rng.IntN(size + 2))}
					switch rng.IntN(8) {
					case 0:
						d.Addr = rng.Uint64()
					case 1:
						d.Len = rng.Uint32()
					case 2:
						d.Addr, d.Len = tbl, 16*uint32(1+rng.IntN(4))
					}
					if indirect && rng.IntN(2) == 0 {
						r.drv.WriteDescAt(tbl+16*uint64(rng.IntN(4)), d)
					} else {
						r.drv.WriteDesc(uint16(rng.IntN(size)), d)
					}
					r.drv.WriteAvailSlot(uint16(rng.IntN(size)), uint16(rng.IntN(size+1)))
				}
			}()
			cs := NewChains(8, 16)
			used := make([]Used, 0, 8)
			deadline := time.Now().Add(300 * time.Millisecond)
			pops, broken := 0, 0
			for time.Now().Before(deadline) {
				if r.q.Broken() != nil {
					// Start over on a fresh queue over the same rings.
					broken++
					q, err := NewQueue(r.m, r.cfg, r.q.NextAvail())
					if err != nil {
						t.Fatal(err)
					}
					r.q = q
				}
				r.drv.SetAvailIdx(r.q.NextAvail() + uint16(rand.IntN(size+1)))
				n, err := r.q.PopBatch(cs)
				if err != nil && !errors.Is(err, ErrBroken) {
					t.Fatalf("error %v does not match ErrBroken", err)
				}
				used = used[:0]
				for i := range cs[:n] {
					c := &cs[i]
					if c.Head >= size {
						t.Fatalf("head %d", c.Head)
					}
					var out, in uint64
					for _, b := range c.Out {
						if !inside(b, r.mem) {
							t.Fatal("out iovec outside guest memory")
						}
						out += uint64(len(b))
					}
					for _, b := range c.In {
						if !inside(b, r.mem) {
							t.Fatal("in iovec outside guest memory")
						}
						in += uint64(len(b))
					}
					if out != uint64(c.OutLen) || in != uint64(c.InLen) {
						t.Fatalf("lengths %d/%d vs %d/%d", out, in, c.OutLen, c.InLen)
					}
					if c.Err != nil && (c.Out != nil || c.In != nil) {
						t.Fatal("malformed chain with iovecs")
					}
					used = append(used, Used{Head: c.Head, Len: c.InLen})
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
		})
	}
}

func TestBadInput40UsedIdxNotTrusted(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{nextAvail: 100})
	h, _ := r.drv.AddChain([][]byte{[]byte("a")}, nil)
	r.drv.Publish()
	cs, _ := r.pop(1)
	// The guest scribbles on used.idx and the used ring.
	shmem.Store32(r.q.r.used, 0, 0xdead<<16|0xbeef)
	clear(r.q.r.used[4:])
	r.q.PushBatch([]Used{{Head: cs[0].Head, Len: 0}})
	if got := r.drv.UsedIdx(); got != 101 {
		t.Fatalf("used.idx = %d, want 101 (our own counter)", got)
	}
	if got := r.drv.UsedFlags(); got != 0 {
		t.Fatalf("used.flags = %#x, want ours (0)", got)
	}
	// The element went to slot 100 mod 8, where the driver looks for it.
	off := 4 + 8*(100%8)
	if id := r.q.r.used[off]; uint16(id) != h {
		t.Fatalf("used elem id %d at slot 4, want %d", id, h)
	}
}

func TestBadInput43QueueTouchesNothingUnlessCalled(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{eventIdx: true})
	r.drv.AddChain([][]byte{[]byte("a")}, nil)
	r.drv.Publish()
	before := bytes.Clone(r.mem)
	// Building a queue and switching its memory write nothing: a stopped
	// ring (one the caller does not call) is never touched.
	q, err := NewQueue(r.m, r.cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.SetMemory(r.m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, r.mem) {
		t.Fatal("NewQueue/SetMemory wrote guest memory")
	}
	// A queue whose ring fell out of memory is inert: it breaks and no
	// method touches memory any more.
	other := oneRegion(t, 0x4000_0000, heapMem(4096))
	if err := q.SetMemory(other); !errors.Is(err, ErrRingUnmapped) || !errors.Is(err, ErrBroken) {
		t.Fatalf("SetMemory = %v", err)
	}
	if q.Broken() != ErrRingUnmapped {
		t.Fatalf("Broken = %v", q.Broken())
	}
	cs := NewChains(2, 2)
	if n, err := q.PopBatch(cs); n != 0 || err != ErrRingUnmapped {
		t.Fatalf("PopBatch = %d, %v", n, err)
	}
	q.PushBatch([]Used{{Head: 0, Len: 1}})
	q.DisableNotify()
	if q.EnableNotify() || q.NeedsNotify() {
		t.Fatal("inert queue reports work or wants to notify")
	}
	if !bytes.Equal(before, r.mem) {
		t.Fatal("inert queue wrote guest memory")
	}
}

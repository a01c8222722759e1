package virtqueue

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

func TestBadInput40EventHintsAnyValue(t *testing.T) {
	// With EVENT_IDX, used_event is a hint: whatever it holds, NeedsNotify
	// answers from 16-bit arithmetic and never panics; at most one call is
	// spurious or missing. Table: (used_event, pushes) -> notify.
	for _, tc := range []struct {
		name      string
		usedEvent uint16
		push      int
		want      bool
	}{
		{"event at old", 1, 1, true},    // first push passes event 1? old=1,new=2: 1 in [1,2)
		{"event in window", 2, 3, true}, // old=1,new=4
		{"event at new", 4, 3, false},   // not passed yet
		{"event far ahead", 0x8000, 3, false},
		{"event behind", 0, 3, false},
		{"event max", 0xffff, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, 8, ringOpts{eventIdx: true})
			for range 4 {
				r.drv.AddChain([][]byte{[]byte("a")}, nil)
			}
			r.drv.Publish()
			cs, _ := r.pop(4)
			// First answer after start is always yes (nothing signalled yet).
			r.q.PushBatch([]Used{{Head: cs[0].Head}})
			if !r.q.NeedsNotify() {
				t.Fatal("first NeedsNotify = false")
			}
			r.drv.SetUsedEvent(tc.usedEvent)
			for i := 1; i <= tc.push; i++ {
				r.q.PushBatch([]Used{{Head: cs[i%4].Head}})
			}
			if got := r.q.NeedsNotify(); got != tc.want {
				t.Fatalf("NeedsNotify = %v, want %v", got, tc.want)
			}
			// Asking again without pushing: nothing new to signal.
			if r.q.NeedsNotify() {
				t.Fatal("second NeedsNotify without push = true")
			}
		})
	}
}

func TestBadInput41MalformedChainReturned(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	// Four chains: good, bad buffer, bad order, good.
	g1, _ := r.drv.AddChain([][]byte{[]byte("one")}, nil)
	bad1, _ := r.drv.AddChain([][]byte{[]byte("x")}, nil)
	bad2, _ := r.drv.AddChain([][]byte{[]byte("y")}, []int{1})
	g2, _ := r.drv.AddChain([][]byte{[]byte("two")}, nil)
	d := r.drv.ReadDesc(bad1)
	d.Addr = 1 << 60
	r.drv.WriteDesc(bad1, d)
	d = r.drv.ReadDesc(bad2)
	d.Flags |= fW // writable head, then the readable...
	r.drv.WriteDesc(bad2, d)
	d2 := r.drv.ReadDesc(d.Next)
	d2.Flags &^= fW // ...second descriptor
	r.drv.WriteDesc(d.Next, d2)
	r.drv.Publish()
	cs, err := r.pop(8)
	if err != nil || len(cs) != 4 {
		t.Fatalf("PopBatch = %d, %v", len(cs), err)
	}
	want := []struct {
		head uint16
		err  error
	}{{g1, nil}, {bad1, ErrBufferRange}, {bad2, ErrOrder}, {g2, nil}}
	used := make([]Used, len(cs))
	for i, w := range want {
		if cs[i].Head != w.head || cs[i].Err != w.err {
			t.Fatalf("chain %d: head %d err %v, want %d %v", i, cs[i].Head, cs[i].Err, w.head, w.err)
		}
		used[i] = Used{Head: cs[i].Head} // malformed: length 0
	}
	r.q.PushBatch(used)
	got := r.drv.UsedAll()
	if len(got) != 4 || r.drv.FreeDescs() != 8 {
		t.Fatalf("driver got %d completions back, %d free descriptors", len(got), r.drv.FreeDescs())
	}
	for i, c := range got {
		if c.Head != want[i].head || c.Len != 0 {
			t.Fatalf("completion %d: %+v", i, c)
		}
	}
}

func TestBadInput42Budget(t *testing.T) {
	r := newTestRing(t, 16, ringOpts{})
	for range 10 {
		r.drv.AddChain([][]byte{[]byte("a")}, nil)
	}
	r.drv.Publish()
	cs := NewChains(4, 4)
	for _, want := range []int{4, 4, 2, 0} {
		n, err := r.q.PopBatch(cs)
		if n != want || err != nil {
			t.Fatalf("PopBatch = %d, %v; want %d", n, err, want)
		}
	}
	if n, err := r.q.PopBatch(nil); n != 0 || err != nil {
		t.Fatalf("PopBatch(nil) = %d, %v", n, err)
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

func TestBadInput44EmptyRingArmsKick(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		r := newTestRing(t, 8, ringOpts{eventIdx: eventIdx})
		cs := NewChains(4, 4)
		r.q.DisableNotify()
		if n, err := r.q.PopBatch(cs); n != 0 || err != nil {
			t.Fatalf("eventIdx=%v: PopBatch on empty ring = %d, %v", eventIdx, n, err)
		}
		if r.q.EnableNotify() {
			t.Fatalf("eventIdx=%v: EnableNotify on empty ring reports work", eventIdx)
		}
		// Armed: the guest's next publish kicks.
		r.drv.AddChain(nil, []int{64})
		if !r.drv.Publish() {
			t.Fatalf("eventIdx=%v: guest not asked to kick after EnableNotify", eventIdx)
		}
	}
}

func TestNotifySuppression(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		r := newTestRing(t, 8, ringOpts{eventIdx: eventIdx})
		cs := NewChains(4, 4)
		// Polling: kicks suppressed.
		r.q.EnableNotify()
		r.drv.AddChain([][]byte{[]byte("a")}, nil)
		if !r.drv.Publish() {
			t.Fatalf("eventIdx=%v: first publish after EnableNotify did not kick", eventIdx)
		}
		r.q.DisableNotify()
		r.q.PopBatch(cs)
		r.drv.AddChain([][]byte{[]byte("b")}, nil)
		if r.drv.Publish() {
			t.Fatalf("eventIdx=%v: kick while notifications disabled", eventIdx)
		}
		// Lost-wakeup race: work arrived before EnableNotify re-checked.
		if !r.q.EnableNotify() {
			t.Fatalf("eventIdx=%v: EnableNotify missed pending work", eventIdx)
		}
		if n, _ := r.q.PopBatch(cs); n != 1 {
			t.Fatalf("eventIdx=%v: popped %d", eventIdx, n)
		}
		if r.q.EnableNotify() {
			t.Fatalf("eventIdx=%v: EnableNotify reports work on empty ring", eventIdx)
		}
	}
}

func TestNeedsNotifyNoInterruptFlag(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	r.drv.AddChain([][]byte{[]byte("a")}, nil)
	r.drv.AddChain([][]byte{[]byte("b")}, nil)
	r.drv.Publish()
	cs, _ := r.pop(2)
	r.q.PushBatch([]Used{{Head: cs[0].Head}})
	if !r.q.NeedsNotify() {
		t.Fatal("NeedsNotify = false without NO_INTERRUPT")
	}
	r.drv.SetNoInterrupt(true)
	r.q.PushBatch([]Used{{Head: cs[1].Head}})
	if r.q.NeedsNotify() {
		t.Fatal("NeedsNotify = true with NO_INTERRUPT")
	}
}

func TestNeedsNotifyAfterIndexWrap(t *testing.T) {
	// More than 32K pushes without asking: the next answer is yes.
	r := newTestRing(t, 8, ringOpts{eventIdx: true})
	r.drv.AddChain([][]byte{[]byte("a")}, nil)
	r.drv.Publish()
	cs, _ := r.pop(1)
	r.q.PushBatch([]Used{{Head: cs[0].Head}})
	r.q.NeedsNotify()
	r.drv.SetUsedEvent(0)
	for range 40000 {
		r.q.PushBatch([]Used{{Head: cs[0].Head}})
	}
	if !r.q.NeedsNotify() {
		t.Fatal("NeedsNotify = false after the used index wrapped past the last signal")
	}
}

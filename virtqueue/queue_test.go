package virtqueue

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestPopPushRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		indirect bool
	}{{"direct", false}, {"indirect", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, 8, ringOpts{indirect: true})
			add := r.drv.AddChain
			if tc.indirect {
				add = r.drv.AddChainIndirect
			}
			h, err := add([][]byte{[]byte("hello "), []byte("world")}, []int{4, 100})
			if err != nil {
				t.Fatal(err)
			}
			r.drv.Publish()
			cs := NewChains(4, 8)
			n, err := r.q.PopBatch(cs)
			if n != 1 || err != nil {
				t.Fatalf("PopBatch = %d, %v", n, err)
			}
			c := &cs[0]
			if c.Err != nil || c.Head != h || c.OutLen != 11 || c.InLen != 104 || len(c.Out) != 2 || len(c.In) != 2 {
				t.Fatalf("chain %+v", c)
			}
			if got := string(bytes.Join(c.Out, nil)); got != "hello world" {
				t.Fatalf("out %q", got)
			}
			copy(c.In[0], "abcd")
			copy(c.In[1], "ef")
			r.q.PushBatch([]Used{{Head: c.Head, Len: 6}})
			u, ok := r.drv.Used()
			if !ok || u.Head != h || u.Len != 6 || string(u.Written) != "abcdef" {
				t.Fatalf("used %+v %v", u, ok)
			}
			if n, err := r.q.PopBatch(cs); n != 0 || err != nil {
				t.Fatalf("empty PopBatch = %d, %v", n, err)
			}
			if r.q.NextAvail() != 1 || r.q.NextUsed() != 1 {
				t.Fatalf("indices %d %d", r.q.NextAvail(), r.q.NextUsed())
			}
		})
	}
}

func TestBrokenMatches(t *testing.T) {
	for _, e := range []error{ErrAvailIndex, ErrHeadRange, ErrNextRange, ErrDescLoop, ErrIndirect, ErrRingUnmapped} {
		if !errors.Is(e, ErrBroken) {
			t.Errorf("%v does not match ErrBroken", e)
		}
	}
	for _, e := range []error{ErrBufferRange, ErrChainTooLong, ErrOrder, ErrTooManySegments} {
		if errors.Is(e, ErrBroken) {
			t.Errorf("%v matches ErrBroken", e)
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

func TestUnpop(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	var heads []uint16
	for range 5 {
		h, _ := r.drv.AddChain(nil, []int{100})
		heads = append(heads, h)
	}
	r.drv.Publish()
	cs, _ := r.pop(4)
	r.q.Unpop(3) // RX needed one chain only
	if r.q.NextAvail() != 1 {
		t.Fatalf("NextAvail = %d", r.q.NextAvail())
	}
	r.q.Unpop(5) // clamped to the one chain left
	if r.q.NextAvail() != 0 {
		t.Fatalf("NextAvail after over-unpop = %d", r.q.NextAvail())
	}
	r.q.Unpop(1) // nothing left to hand back
	if r.q.NextAvail() != 0 {
		t.Fatalf("NextAvail after over-unpop = %d", r.q.NextAvail())
	}
	cs, _ = r.pop(8)
	if len(cs) != 5 {
		t.Fatalf("re-popped %d", len(cs))
	}
	for i := range cs {
		if cs[i].Head != heads[i] {
			t.Fatalf("chain %d head %d, want %d", i, cs[i].Head, heads[i+1])
		}
	}
	// A new PopBatch resets what Unpop may hand back.
	r.q.PopBatch(nil)
	r.q.Unpop(1)
	if r.q.NextAvail() != 5 {
		t.Fatalf("NextAvail = %d", r.q.NextAvail())
	}
}

func TestWrapAround(t *testing.T) {
	// Many laps over the ring and over the 16-bit indices, starting near
	// the wrap, batches of varying size.
	r := newTestRing(t, 8, ringOpts{nextAvail: 65530, slab: 64})
	cs := NewChains(4, 4)
	used := make([]Used, 0, 4)
	var seq byte
	for lap := range 200 {
		k := 1 + lap%4
		for range k {
			if _, err := r.drv.AddChain([][]byte{{seq}}, []int{1}); err != nil {
				t.Fatal(err)
			}
			seq++
		}
		r.drv.Publish()
		n, err := r.q.PopBatch(cs)
		if n != k || err != nil {
			t.Fatalf("lap %d: PopBatch = %d, %v", lap, n, err)
		}
		used = used[:0]
		for i := range cs[:n] {
			cs[i].In[0][0] = cs[i].Out[0][0] + 1
			used = append(used, Used{Head: cs[i].Head, Len: 1})
		}
		r.q.PushBatch(used)
		got := r.drv.UsedAll()
		if len(got) != k {
			t.Fatalf("lap %d: %d completions", lap, len(got))
		}
		for i, c := range got {
			want := seq - byte(k) + byte(i) + 1
			if len(c.Written) != 1 || c.Written[0] != want {
				t.Fatalf("lap %d: completion %d wrote %v, want %d", lap, i, c.Written, want)
			}
		}
	}
	if r.q.NextAvail() != r.drv.AvailIdx() || r.q.NextUsed() != r.drv.UsedIdx() {
		t.Fatalf("indices: %d/%d vs %d/%d", r.q.NextAvail(), r.q.NextUsed(), r.drv.AvailIdx(), r.drv.UsedIdx())
	}
}

// TestConcurrentDriverDevice runs the guest and the device in two
// goroutines with notification suppression, as a worker does: the device
// polls, arms notifications when empty and waits for a kick. Every chain
// comes back exactly once, with the bytes the device wrote.
func TestConcurrentDriverDevice(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		r := newTestRing(t, 64, ringOpts{eventIdx: eventIdx, slab: 256})
		const total = 20000
		kick := make(chan struct{}, 1)
		call := make(chan struct{}, 1)
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // device
			defer wg.Done()
			cs := NewChains(16, 4)
			used := make([]Used, 0, 16)
			for {
				r.q.DisableNotify()
				n, err := r.q.PopBatch(cs)
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					if r.q.EnableNotify() {
						continue
					}
					select {
					case <-kick:
						continue
					case <-done:
						return
					}
				}
				used = used[:0]
				for i := range cs[:n] {
					c := &cs[i]
					if c.Err != nil || len(c.Out) != 1 || len(c.In) != 1 {
						t.Errorf("chain %+v", c)
						return
					}
					copy(c.In[0], c.Out[0])
					used = append(used, Used{Head: c.Head, Len: c.OutLen})
				}
				r.q.PushBatch(used)
				if r.q.NeedsNotify() {
					select {
					case call <- struct{}{}:
					default:
					}
				}
			}
		}()
		// Driver: keep the ring full, check completions in order.
		sent, got := 0, 0
		for got < total {
			added := false
			for sent < total && r.drv.FreeDescs() >= 2 {
				b := []byte{byte(sent), byte(sent >> 8)}
				if _, err := r.drv.AddChain([][]byte{b}, []int{2}); err != nil {
					t.Fatal(err)
				}
				sent++
				added = true
			}
			if added && r.drv.Publish() {
				select {
				case kick <- struct{}{}:
				default:
				}
			}
			progressed := false
			for {
				c, ok := r.drv.Used()
				if !ok {
					break
				}
				if len(c.Written) != 2 || int(c.Written[0])|int(c.Written[1])<<8 != got&0xffff {
					t.Fatalf("completion %d: %v", got, c.Written)
				}
				got++
				progressed = true
			}
			if !progressed && !r.drv.EnableInterrupts() {
				select {
				case <-call:
				case <-time.After(20 * time.Second):
					// Generous: a shared machine under -race can stall,
					// but a lost wake-up stalls forever.
					t.Fatalf("eventIdx=%v: no call after %d of %d completions: lost wake-up", eventIdx, got, total)
				}
			}
		}
		close(done)
		wg.Wait()
	}
}

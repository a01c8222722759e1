package virtqueue

import (
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestConfigValidate(t *testing.T) {
	mem := heapMem(1 << 20)
	m := oneRegion(t, testBase, mem)
	adj := twoRegions(t, mem, 1<<19, 0)
	ok := Config{Size: 256, Desc: testBase, Avail: testBase + 4096, Used: testBase + 8192}
	for _, tc := range []struct {
		name string
		mem  *Memory
		mod  func(c *Config)
		want error
	}{
		{"valid", m, func(c *Config) {}, nil},
		{"valid size 1", m, func(c *Config) { c.Size = 1 }, nil},
		{"valid size 32768", m, func(c *Config) { c.Size = 32768; c.Avail = testBase + 512*1024; c.Used = testBase + 600*1024 }, nil},
		{"valid avail 2-aligned", m, func(c *Config) { c.Avail += 2 }, nil},
		{"valid, rings at the very end", m, func(c *Config) {
			c.Used = testBase + 1<<20 - c.UsedBytes() - 2 // 4-aligned
			c.Avail = testBase + 1<<20 - c.UsedBytes() - 2 - c.AvailBytes()
		}, nil},
		{"size 0", m, func(c *Config) { c.Size = 0 }, ErrInvalidConfig},
		{"size 3", m, func(c *Config) { c.Size = 3 }, ErrInvalidConfig},
		{"size 65535", m, func(c *Config) { c.Size = 65535 }, ErrInvalidConfig},
		{"size 49152", m, func(c *Config) { c.Size = 49152 }, ErrInvalidConfig},
		{"desc misaligned", m, func(c *Config) { c.Desc += 8 }, ErrRingAddress},
		{"avail odd", m, func(c *Config) { c.Avail++ }, ErrRingAddress},
		{"used 2-aligned", m, func(c *Config) { c.Used += 2 }, ErrRingAddress},
		{"desc outside", m, func(c *Config) { c.Desc = 0 }, ErrRingAddress},
		{"desc crosses end", m, func(c *Config) { c.Desc = testBase + 1<<20 - 16*128 }, ErrRingAddress},
		{"avail crosses end", m, func(c *Config) { c.Avail = testBase + 1<<20 - c.AvailBytes() + 2 }, ErrRingAddress},
		{"used crosses end", m, func(c *Config) { c.Used = testBase + 1<<20 - c.UsedBytes() + 2 }, ErrRingAddress},
		{"used huge address", m, func(c *Config) { c.Used = 1<<64 - 4 }, ErrRingAddress},
		{"desc across two adjacent regions", adj, func(c *Config) { c.Desc = testBase + 1<<19 - 16 }, ErrRingAddress},
		{"used across two adjacent regions", adj, func(c *Config) { c.Used = testBase + 1<<19 - 8 }, ErrRingAddress},
		{"nil memory checks shape only", nil, func(c *Config) { c.Desc = 0 }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate(tc.mem)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, tc.want)
			}
			if tc.mem != nil {
				_, qerr := NewQueue(tc.mem, c, 0)
				if (qerr == nil) != (err == nil) {
					t.Fatalf("NewQueue = %v, Validate = %v", qerr, err)
				}
			}
		})
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

func TestSetMemoryRemaps(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	r.drv.AddChain([][]byte{[]byte("before")}, nil)
	r.drv.Publish()
	cs, _ := r.pop(1)
	r.q.PushBatch([]Used{{Head: cs[0].Head}})
	r.drv.UsedAll()
	// Same guest memory, new table (two regions now): rings and buffers
	// translate through the new table.
	if err := r.q.SetMemory(twoRegions(t, r.mem, len(r.mem)/2, 0)); err != nil {
		t.Fatal(err)
	}
	r.drv.AddChain([][]byte{[]byte("after")}, nil)
	r.drv.Publish()
	cs, err := r.pop(1)
	if err != nil || len(cs) != 1 || string(cs[0].Out[0]) != "after" {
		t.Fatalf("after SetMemory: %+v %v", cs, err)
	}
	// The ring is no longer translatable: broken, inert.
	half := int(r.cfg.Desc-testBase) + 8
	err = r.q.SetMemory(twoRegions(t, r.mem, half, 4096))
	if !errors.Is(err, ErrRingUnmapped) || !errors.Is(err, ErrRingAddress) {
		t.Fatalf("SetMemory = %v", err)
	}
}

func TestAppendIovecs(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	r.drv.AddChain([][]byte{[]byte("ab"), []byte("cde")}, []int{0, 7})
	r.drv.Publish()
	cs, _ := r.pop(1)
	dst := make([]unix.Iovec, 0, cs[0].MaxSegs())
	out := AppendIovecs(dst, cs[0].Out)
	if len(out) != 2 || out[0].Len != 2 || out[1].Len != 3 || out[0].Base != &cs[0].Out[0][0] {
		t.Fatalf("out iovecs %+v", out)
	}
	in := AppendIovecs(out[:0], cs[0].In) // zero-length buffer skipped
	if len(in) != 1 || in[0].Len != 7 {
		t.Fatalf("in iovecs %+v", in)
	}
	if got := unsafe.Slice(in[0].Base, in[0].Len); &got[0] != &cs[0].In[0][0] {
		t.Fatal("iovec does not point at the buffer")
	}
	if a := testing.AllocsPerRun(100, func() { AppendIovecs(dst[:0], cs[0].Out) }); a != 0 {
		t.Fatalf("AppendIovecs allocates %v", a)
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

package virtqueue

// Descriptor chains as the guest writes them: the avail index, heads, next links, loops,
// chain length and indirect tables (BAD-INPUTS section D, items 27-32 and 41). Tests
// named TestBadInputNN cover bad-input item NN (docs/BAD-INPUTS.md); the table in
// BAD-INPUTS.md in this directory maps items to tests.

import (
	"bytes"
	"errors"
	"testing"
)

func TestBadInput27GuestMovedIndex(t *testing.T) {
	for _, tc := range []struct {
		name       string
		start, idx uint16
		n          int // chains popped when valid
	}{
		{"size+1", 0, 9, -1},
		{"size+1 across wrap", 65530, 3, -1},
		{"moved backwards", 5, 4, -1},
		{"max", 0, 0xffff, -1},
		{"exactly size is valid", 0, 8, 8},
		{"exactly size across wrap", 65532, 4, 8},
		{"nothing new", 7, 7, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, 8, ringOpts{nextAvail: tc.start})
			r.drv.SetAvailIdx(tc.idx)
			cs, err := r.pop(16)
			if tc.n < 0 {
				if len(cs) != 0 {
					t.Fatalf("popped %d chains from a broken ring", len(cs))
				}
				expectBroken(t, r, err, ErrAvailIndex)
				return
			}
			if err != nil || len(cs) != tc.n {
				t.Fatalf("PopBatch = %d, %v; want %d", len(cs), err, tc.n)
			}
			if r.q.NextAvail() != tc.idx {
				t.Fatalf("NextAvail = %d, want %d", r.q.NextAvail(), tc.idx)
			}
		})
	}
}

func TestBadInput28HeadOutOfRange(t *testing.T) {
	for _, head := range []uint16{8, 9, 0x8000, 0xffff} {
		r := newTestRing(t, 8, ringOpts{})
		good, _ := r.drv.AddChain([][]byte{[]byte("ok")}, nil)
		r.drv.PutAvail(head)
		r.drv.Publish()
		cs, err := r.pop(4)
		if len(cs) != 1 || cs[0].Head != good || cs[0].Err != nil {
			t.Fatalf("head %d: chains before the bad head: %d %+v", head, len(cs), cs)
		}
		expectBroken(t, r, err, ErrHeadRange)
		// The valid chain popped before the fault can still be completed.
		r.q.PushBatch([]Used{{Head: good}})
		if u, ok := r.drv.Used(); !ok || u.Head != good {
			t.Fatalf("used %+v %v", u, ok)
		}
	}
}

func TestBadInput29NextOutOfRange(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(r *testRing)
	}{
		{"main next=size", func(r *testRing) {
			r.raw(D{Addr: r.spare(), Len: 4, Flags: fN, Next: 8})
		}},
		{"main next=0xffff after a valid hop", func(r *testRing) {
			r.raw(D{Addr: r.spare(), Len: 4, Flags: fN, Next: 1}, D{Addr: r.spare(), Len: 4, Flags: fN, Next: 0xffff})
		}},
		{"indirect next=entries", func(r *testRing) {
			tbl := r.spare() + 1024
			r.rawTable(tbl, D{Addr: r.spare(), Len: 4, Flags: fN, Next: 1}, D{Addr: r.spare(), Len: 4, Flags: fN, Next: 2})
			r.raw(D{Addr: tbl, Len: 32, Flags: fI})
		}},
		{"indirect next within queue size but beyond table", func(r *testRing) {
			tbl := r.spare() + 1024
			r.rawTable(tbl, D{Addr: r.spare(), Len: 4, Flags: fN, Next: 5})
			r.raw(D{Addr: tbl, Len: 16, Flags: fI})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, 8, ringOpts{indirect: true})
			tc.build(r)
			cs, err := r.pop(4)
			if len(cs) != 1 || cs[0].Err != ErrNextRange || len(cs[0].Out) != 0 {
				t.Fatalf("chains %+v", cs)
			}
			expectReturned(t, r, &cs[0])
			expectBroken(t, r, err, ErrNextRange)
		})
	}
}

func TestBadInput30DescriptorLoop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  uint16
		build func(r *testRing)
	}{
		{"len 0 self-loop", 8, func(r *testRing) {
			r.raw(D{Flags: fN, Next: 0})
		}},
		{"two-cycle", 8, func(r *testRing) {
			r.raw(D{Addr: r.spare(), Len: 1, Flags: fN, Next: 1}, D{Addr: r.spare(), Len: 1, Flags: fN, Next: 0})
		}},
		{"back to an earlier entry", 8, func(r *testRing) {
			r.raw(D{Flags: fN, Next: 1}, D{Flags: fN, Next: 2}, D{Flags: fN, Next: 1})
		}},
		{"writable self-loop", 8, func(r *testRing) {
			r.raw(D{Addr: r.spare(), Len: 1, Flags: fN | fW, Next: 0})
		}},
		{"size 1 self-loop", 1, func(r *testRing) {
			r.raw(D{Flags: fN, Next: 0})
		}},
		{"indirect self-loop", 8, func(r *testRing) {
			tbl := r.spare() + 1024
			r.rawTable(tbl, D{Flags: fN, Next: 1}, D{Flags: fN, Next: 0})
			r.raw(D{Addr: tbl, Len: 32, Flags: fI})
		}},
		{"max queue self-loop", MaxSize, func(r *testRing) {
			r.raw(D{Flags: fN, Next: 0})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, tc.size, ringOpts{indirect: true, slab: 16})
			tc.build(r)
			cs, err := r.pop(4)
			if len(cs) != 1 || cs[0].Err != ErrDescLoop {
				t.Fatalf("chains %+v, err %v", cs, err)
			}
			expectReturned(t, r, &cs[0])
			expectBroken(t, r, err, ErrDescLoop)
		})
	}
}

func TestBadInput30LoopHopsBounded(t *testing.T) {
	// A loop is detected after exactly size+1 reads: count them through
	// the segments a writable 1-byte loop would produce if unbounded.
	r := newTestRing(t, 16, ringOpts{})
	r.raw(D{Addr: r.spare(), Len: 1, Flags: fN | fW, Next: 0})
	cs := NewChains(1, 1000)
	n, err := r.q.PopBatch(cs)
	if n != 1 || !errors.Is(err, ErrDescLoop) {
		t.Fatalf("PopBatch = %d, %v", n, err)
	}
	if got := cs[0].nInDesc; got != 16 {
		t.Fatalf("walked %d descriptors before declaring a loop, want 16", got)
	}
}

func TestBadInput31ChainOfQueueSize(t *testing.T) {
	for _, size := range []uint16{1, 2, 8, 256} {
		r := newTestRing(t, size, ringOpts{})
		out := make([][]byte, size)
		for i := range out {
			out[i] = []byte{byte(i), byte(i >> 8)}
		}
		h, err := r.drv.AddChain(out, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.drv.Publish()
		cs := NewChains(1, int(size))
		n, err := r.q.PopBatch(cs)
		if n != 1 || err != nil || cs[0].Err != nil || cs[0].Head != h || len(cs[0].Out) != int(size) || cs[0].OutLen != 2*uint32(size) {
			t.Fatalf("size %d: PopBatch = %d, %v, %+v", size, n, err, cs[0].Err)
		}
		if !bytes.Equal(bytes.Join(cs[0].Out, nil), bytes.Join(out, nil)) {
			t.Fatalf("size %d: payload mismatch", size)
		}
	}
	// The same in an indirect table: exactly its number of entries.
	r := newTestRing(t, 4, ringOpts{indirect: true, slab: 8192})
	out := make([][]byte, 100)
	for i := range out {
		out[i] = []byte{byte(i)}
	}
	if _, err := r.drv.AddChainIndirect(out, []int{7}); err != nil {
		t.Fatal(err)
	}
	r.drv.Publish()
	cs := NewChains(1, 128)
	if n, err := r.q.PopBatch(cs); n != 1 || err != nil || cs[0].Err != nil || len(cs[0].Out) != 100 || cs[0].InLen != 7 {
		t.Fatalf("indirect: PopBatch = %d, %v, %+v", n, err, cs[0].Err)
	}
}

func TestBadInput32Indirect(t *testing.T) {
	type tc struct {
		name     string
		noneg    bool // VIRTIO_RING_F_INDIRECT_DESC not negotiated
		build    func(r *testRing, tbl uint64)
		want     error // nil: valid chain
		wantData string
	}
	good := func(r *testRing, tbl uint64) {
		copy(r.drv.Mem(r.spare(), 5), "hello")
		r.rawTable(tbl, D{Addr: r.spare(), Len: 3, Flags: fN, Next: 1}, D{Addr: r.spare() + 3, Len: 2})
	}
	for _, c := range []tc{
		{name: "len 0", build: func(r *testRing, tbl uint64) {
			r.raw(D{Addr: tbl, Len: 0, Flags: fI})
		}, want: ErrIndirect},
		{name: "len not multiple of 16", build: func(r *testRing, tbl uint64) {
			good(r, tbl)
			r.raw(D{Addr: tbl, Len: 24, Flags: fI})
		}, want: ErrIndirect},
		{name: "65536 entries", build: func(r *testRing, tbl uint64) {
			r.raw(D{Addr: tbl, Len: 65536 * 16, Flags: fI})
		}, want: ErrIndirect},
		{name: "len 0xfffffff0", build: func(r *testRing, tbl uint64) {
			r.raw(D{Addr: tbl, Len: 0xfffffff0, Flags: fI})
		}, want: ErrIndirect},
		{name: "indirect inside indirect", build: func(r *testRing, tbl uint64) {
			r.rawTable(tbl, D{Addr: tbl, Len: 16, Flags: fI})
			r.raw(D{Addr: tbl, Len: 16, Flags: fI})
		}, want: ErrIndirect},
		{name: "indirect with next", build: func(r *testRing, tbl uint64) {
			good(r, tbl)
			r.raw(D{Addr: tbl, Len: 32, Flags: fI | fN, Next: 1}, D{Addr: r.spare(), Len: 1})
		}, want: ErrIndirect},
		{name: "not negotiated", noneg: true, build: func(r *testRing, tbl uint64) {
			good(r, tbl)
			r.raw(D{Addr: tbl, Len: 32, Flags: fI})
		}, want: ErrIndirect},
		{name: "table outside memory drops the chain", build: func(r *testRing, tbl uint64) {
			r.raw(D{Addr: 0x10, Len: 32, Flags: fI})
		}, want: ErrBufferRange},
		{name: "table crossing the region end drops the chain", build: func(r *testRing, tbl uint64) {
			r.raw(D{Addr: testBase + uint64(len(r.mem)) - 16, Len: 32, Flags: fI})
		}, want: ErrBufferRange},
		{name: "valid", build: func(r *testRing, tbl uint64) {
			good(r, tbl)
			r.raw(D{Addr: tbl, Len: 32, Flags: fI})
		}, wantData: "hello"},
		{name: "valid, table misaligned", build: func(r *testRing, tbl uint64) {
			good(r, tbl+3)
			r.raw(D{Addr: tbl + 3, Len: 32, Flags: fI})
		}, wantData: "hello"},
		{name: "valid, write flag on the indirect descriptor ignored", build: func(r *testRing, tbl uint64) {
			good(r, tbl+8)
			r.raw(D{Addr: tbl + 8, Len: 32, Flags: fI | fW})
		}, wantData: "hello"},
		{name: "valid, after a direct descriptor", build: func(r *testRing, tbl uint64) {
			good(r, tbl)
			copy(r.drv.Mem(r.spare()+100, 1), ">")
			r.raw(D{Addr: r.spare() + 100, Len: 1, Flags: fN, Next: 1}, D{Addr: tbl, Len: 32, Flags: fI})
		}, wantData: ">hello"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newTestRing(t, 8, ringOpts{indirect: !c.noneg})
			c.build(r, r.spare()+2048)
			cs, err := r.pop(4)
			if len(cs) != 1 || cs[0].Err != c.want {
				t.Fatalf("chains %+v, err %v; want chain error %v", cs, err, c.want)
			}
			switch {
			case c.want == nil:
				if err != nil || string(bytes.Join(cs[0].Out, nil)) != c.wantData {
					t.Fatalf("err %v, data %q", err, bytes.Join(cs[0].Out, nil))
				}
			case errors.Is(c.want, ErrBroken):
				expectReturned(t, r, &cs[0])
				expectBroken(t, r, err, c.want)
			default:
				if err != nil || r.q.Broken() != nil || len(cs[0].Out)+len(cs[0].In) != 0 {
					t.Fatalf("drop broke the queue or kept iovecs: %v %+v", err, cs[0])
				}
				expectReturned(t, r, &cs[0])
			}
		})
	}
}

func TestBadInput32IndirectMaxEntries(t *testing.T) {
	// 65535 chained zero-length entries: the largest table, valid.
	r := newTestRing(t, 8, ringOpts{indirect: true, slab: 16, extra: 65535 * 16})
	tbl := r.spare()
	for i := uint16(0); i < 65535; i++ {
		d := D{Flags: fN, Next: i + 1}
		if i == 65534 {
			d.Flags = 0
		}
		r.drv.WriteDescAt(tbl+uint64(i)*16, d)
	}
	r.raw(D{Addr: tbl, Len: 65535 * 16, Flags: fI})
	cs, err := r.pop(1)
	if len(cs) != 1 || err != nil || cs[0].Err != nil {
		t.Fatalf("PopBatch = %d, %v", len(cs), err)
	}
	if out, in := cs[0].Descs(); out != 65535 || in != 0 {
		t.Fatalf("Descs = %d, %d", out, in)
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

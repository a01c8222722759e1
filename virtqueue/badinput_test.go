package virtqueue

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// Tests named TestBadInputNN cover item NN of shared/BAD-INPUTS.md; the
// table in BAD-INPUTS.md in this directory maps items to tests.

const (
	fN = vqdriver.FlagNext
	fW = vqdriver.FlagWrite
	fI = vqdriver.FlagIndirect
)

type D = vqdriver.Desc

// expectBroken checks that the queue broke with want, and stays broken.
func expectBroken(t *testing.T, r *testRing, err, want error) {
	t.Helper()
	if !errors.Is(err, want) || !errors.Is(err, ErrBroken) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if r.q.Broken() != want {
		t.Fatalf("Broken() = %v, want %v", r.q.Broken(), want)
	}
	r.drv.AddChain([][]byte{[]byte("x")}, nil)
	r.drv.Publish()
	cs := NewChains(4, 4)
	if n, err := r.q.PopBatch(cs); n != 0 || err != want {
		t.Fatalf("PopBatch on broken queue = %d, %v", n, err)
	}
	if r.q.EnableNotify() {
		t.Fatal("EnableNotify on broken queue reported work")
	}
}

// expectReturned pushes c with length 0 and checks the guest sees it.
func expectReturned(t *testing.T, r *testRing, c *Chain) {
	t.Helper()
	r.q.PushBatch([]Used{{Head: c.Head, Len: 0}})
	u, ok := r.drv.Used()
	if !ok || u.Head != c.Head || u.Len != 0 {
		t.Fatalf("used = %+v, %v; want head %d len 0", u, ok, c.Head)
	}
}

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

func TestBadInput33BufferOutsideMemory(t *testing.T) {
	for _, tc := range []struct {
		name  string
		descs func(r *testRing) []D
	}{
		{"below memory", func(r *testRing) []D { return []D{{Addr: 0x1000, Len: 16}} }},
		{"past the end", func(r *testRing) []D {
			return []D{{Addr: testBase + uint64(len(r.mem)) - 8, Len: 16}}
		}},
		{"starts at the end", func(r *testRing) []D {
			return []D{{Addr: testBase + uint64(len(r.mem)), Len: 1}}
		}},
		{"addr+len overflows", func(r *testRing) []D {
			return []D{{Addr: 0xfffffffffffffff0, Len: 0x20}}
		}},
		{"second buffer bad, writable", func(r *testRing) []D {
			return []D{{Addr: r.spare(), Len: 16, Flags: fN, Next: 1}, {Addr: 1 << 62, Len: 16, Flags: fW}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, 8, ringOpts{})
			r.raw(tc.descs(r)...)
			cs, err := r.pop(4)
			if err != nil || len(cs) != 1 || cs[0].Err != ErrBufferRange {
				t.Fatalf("PopBatch = %+v, %v", cs, err)
			}
			c := &cs[0]
			if c.Out != nil || c.In != nil || c.OutLen != 0 || c.InLen != 0 {
				t.Fatalf("dropped chain keeps iovecs: %+v", c)
			}
			expectReturned(t, r, c)
			// The queue keeps working.
			r.drv.AddChain([][]byte{[]byte("next")}, nil)
			r.drv.Publish()
			if cs, err := r.pop(4); err != nil || len(cs) != 1 || cs[0].Err != nil {
				t.Fatalf("after drop: %+v, %v", cs, err)
			}
		})
	}
}

func TestBadInput33ZeroLengthBuffer(t *testing.T) {
	// A zero-length descriptor maps nothing, so its address is not
	// checked (as in Linux vhost): no iovec, no drop.
	r := newTestRing(t, 8, ringOpts{})
	r.raw(D{Addr: 1 << 63, Len: 0, Flags: fN, Next: 1}, D{Addr: r.spare(), Len: 3})
	cs, err := r.pop(1)
	if err != nil || len(cs) != 1 || cs[0].Err != nil || len(cs[0].Out) != 1 || cs[0].OutLen != 3 {
		t.Fatalf("PopBatch = %+v, %v", cs, err)
	}
	if out, in := cs[0].Descs(); out != 2 || in != 0 {
		t.Fatalf("Descs = %d, %d", out, in)
	}
}

// twoRegions splits mem into two regions at GPA testBase and
// testBase+half+gap (gap 0: adjacent).
func twoRegions(t *testing.T, mem []byte, half int, gap uint64) *Memory {
	t.Helper()
	r1, err := NewRegionFromBytes(RegionSpec{GPA: testBase, Size: uint64(half), UserAddr: 0x7f0000000000}, mem[:half])
	if err != nil {
		t.Fatal(err)
	}
	r2, err := NewRegionFromBytes(RegionSpec{GPA: testBase + uint64(half) + gap, Size: uint64(len(mem) - half), UserAddr: 0x7f0000000000 + uint64(half) + gap}, mem[half:])
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMemory([]*Region{r2, r1})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBadInput33AdjacentRegionsSplit(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	half := int(r.spare()-testBase) + 64 // a boundary inside the spare area
	if err := r.q.SetMemory(twoRegions(t, r.mem, half, 0)); err != nil {
		t.Fatal(err)
	}
	at := testBase + uint64(half) - 10
	copy(r.drv.Mem(at, 20), "0123456789abcdefghij")
	r.raw(D{Addr: at, Len: 20, Flags: fN, Next: 1}, D{Addr: at, Len: 20, Flags: fW})
	cs, err := r.pop(1)
	if err != nil || len(cs) != 1 || cs[0].Err != nil {
		t.Fatalf("PopBatch = %+v, %v", cs, err)
	}
	c := &cs[0]
	if len(c.Out) != 2 || len(c.Out[0]) != 10 || len(c.Out[1]) != 10 || len(c.In) != 2 || c.OutLen != 20 || c.InLen != 20 {
		t.Fatalf("iovecs: out %d in %d", len(c.Out), len(c.In))
	}
	if got := string(bytes.Join(c.Out, nil)); got != "0123456789abcdefghij" {
		t.Fatalf("data %q", got)
	}
	for _, b := range append(append([][]byte{}, c.Out...), c.In...) {
		if !inside(b, r.mem) {
			t.Fatal("iovec outside memory")
		}
	}

	// Not enough iovecs for the split: dropped, not truncated.
	r.q.PushBatch([]Used{{Head: c.Head}})
	r.drv.Used()
	r.raw(D{Addr: at, Len: 20})
	one := NewChains(1, 1)
	if n, err := r.q.PopBatch(one); n != 1 || err != nil || one[0].Err != ErrTooManySegments || one[0].Out != nil {
		t.Fatalf("PopBatch = %d, %v, %+v", n, err, one[0])
	}
}

func TestBadInput33RegionThenHole(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	half := int(r.spare()-testBase) + 64
	if err := r.q.SetMemory(twoRegions(t, r.mem, half, 4096)); err != nil {
		t.Fatal(err)
	}
	r.raw(D{Addr: testBase + uint64(half) - 10, Len: 20})
	cs, err := r.pop(1)
	if err != nil || len(cs) != 1 || cs[0].Err != ErrBufferRange || cs[0].Out != nil {
		t.Fatalf("PopBatch = %+v, %v", cs, err)
	}
}

func TestBadInput34ChainOver4GiB(t *testing.T) {
	const twoGiB = 1 << 31
	// Needs 2 GiB of address space (never touched): skip where the
	// environment refuses it.
	r := func() (r *testRing) {
		defer func() {
			if recover() != nil {
				r = nil
			}
		}()
		return newTestRing(t, 8, ringOpts{mmap: true, extra: twoGiB})
	}()
	if r == nil {
		t.Skip("cannot map 2 GiB of address space")
	}
	big := r.spare()
	for _, tc := range []struct {
		name  string
		lens  []uint32
		flags uint16
		want  error
	}{
		{"2^32 readable", []uint32{twoGiB, twoGiB}, 0, ErrChainTooLong},
		{"2^32 writable", []uint32{twoGiB, twoGiB}, fW, ErrChainTooLong},
		{"2^32-1 is valid", []uint32{twoGiB, twoGiB - 1}, 0, nil},
		{"max u32 then one byte", []uint32{1, twoGiB, twoGiB - 1, 1}, fW, ErrChainTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ds []D
			for i, l := range tc.lens {
				ds = append(ds, D{Addr: big, Len: l, Flags: tc.flags | fN, Next: uint16(i + 1)})
			}
			ds[len(ds)-1].Flags &^= fN
			r.raw(ds...)
			cs, err := r.pop(1)
			if err != nil || len(cs) != 1 || cs[0].Err != tc.want {
				// Never print the chain: its iovecs are gigabytes long.
				t.Fatalf("PopBatch = %d chains, %v; chain error %v, want %v", len(cs), err, cs[0].Err, tc.want)
			}
			if tc.want == nil && cs[0].OutLen != 1<<32-1 {
				t.Fatalf("OutLen = %d", cs[0].OutLen)
			}
			expectReturned(t, r, &cs[0])
		})
	}
}

func TestBadInput35Order(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	r.raw(D{Addr: r.spare(), Len: 4, Flags: fW | fN, Next: 1}, D{Addr: r.spare(), Len: 4})
	cs, err := r.pop(1)
	if err != nil || len(cs) != 1 || cs[0].Err != ErrOrder || cs[0].Out != nil || cs[0].In != nil {
		t.Fatalf("PopBatch = %+v, %v", cs, err)
	}
	if cs[0].CheckTX() != ErrOrder || cs[0].CheckRX() != ErrOrder {
		t.Fatal("Check* on a malformed chain must return its Err")
	}
	expectReturned(t, r, &cs[0])
}

func TestBadInput35DirectionHelpers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		descs  []D
		tx, rx error
	}{
		{"readable only", []D{{Len: 4, Flags: fN, Next: 1}, {Len: 8}}, nil, ErrReadableInRX},
		{"writable only", []D{{Len: 4, Flags: fW}}, ErrWritableInTX, nil},
		{"readable then writable", []D{{Len: 4, Flags: fN, Next: 1}, {Len: 4, Flags: fW}}, ErrWritableInTX, ErrReadableInRX},
		{"zero-length writable in TX", []D{{Len: 4, Flags: fN, Next: 1}, {Len: 0, Flags: fW}}, ErrWritableInTX, ErrReadableInRX},
		{"zero-length readable in RX", []D{{Len: 0, Flags: fN, Next: 1}, {Len: 4, Flags: fW}}, ErrWritableInTX, ErrReadableInRX},
		{"empty chain", []D{{Len: 0, Flags: fW}}, ErrWritableInTX, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, 8, ringOpts{})
			for i := range tc.descs {
				tc.descs[i].Addr = r.spare()
			}
			r.raw(tc.descs...)
			cs, err := r.pop(1)
			if err != nil || len(cs) != 1 || cs[0].Err != nil {
				t.Fatalf("PopBatch = %+v, %v", cs, err)
			}
			if got := cs[0].CheckTX(); got != tc.tx {
				t.Errorf("CheckTX = %v, want %v", got, tc.tx)
			}
			if got := cs[0].CheckRX(); got != tc.rx {
				t.Errorf("CheckRX = %v, want %v", got, tc.rx)
			}
		})
	}
}

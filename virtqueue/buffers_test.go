package virtqueue

// The buffers a chain points at: inside guest memory, across regions, the chain's total
// length and the order of readable and writable buffers (BAD-INPUTS section D, items
// 33-35).

import (
	"bytes"
	"testing"
)

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

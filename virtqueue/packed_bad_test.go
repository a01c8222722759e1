package virtqueue

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// TestPackedConfig: packed rings take any size in 1..32768 and 16/4/4
// alignment; a base index outside the ring and a packed config given to
// NewQueue are refused; NewRing picks the layout.
func TestPackedConfig(t *testing.T) {
	mem := heapMem(1 << 20)
	m := oneRegion(t, testBase, mem)
	ok := Config{Size: 300, Desc: testBase, Avail: testBase + 0x2000, Used: testBase + 0x2004, Packed: true}
	if err := ok.Validate(m); err != nil {
		t.Fatalf("size 300: %v", err)
	}
	if a := ok.Areas(); a[1].Bytes != 4 || a[1].Align != 4 || a[2].Bytes != 4 || a[0].Bytes != 16*300 {
		t.Fatalf("areas %+v", a)
	}
	for _, bad := range []Config{
		{Size: 0, Desc: testBase, Avail: testBase + 0x2000, Used: testBase + 0x2004},
		{Size: 16, Desc: testBase + 8, Avail: testBase + 0x2000, Used: testBase + 0x2004},
		{Size: 16, Desc: testBase, Avail: testBase + 0x2002, Used: testBase + 0x2004},
		{Size: 16, Desc: testBase, Avail: testBase + 0x2000, Used: testBase + 1<<20},
	} {
		bad.Packed = true
		if err := bad.Validate(m); !errors.Is(err, ErrInvalidConfig) && !errors.Is(err, ErrRingAddress) {
			t.Fatalf("%+v: %v", bad, err)
		}
	}
	if _, err := NewPackedQueue(m, ok, 300); !errors.Is(err, ErrPackedBase) {
		t.Fatalf("base 300 of 300: %v", err)
	}
	if _, err := NewQueue(m, ok, 0); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("NewQueue on packed config: %v", err)
	}
	r, err := NewRing(m, ok, 0x8005|0x8005<<16)
	if p, isPacked := r.(*PackedQueue); err != nil || !isPacked || p.NextAvail() != 0x8005 || RingBase(r) != 0x8005|0x8005<<16 {
		t.Fatalf("NewRing packed = %T, %v", r, err)
	}
	split := Config{Size: 16, Desc: testBase, Avail: testBase + 0x2000, Used: testBase + 0x3000}
	if r, err := NewRing(m, split, 0x10000); r != nil || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("split base over 16 bits: %v, %v", r, err)
	}
	if r, err := NewRing(m, split, 7); err != nil || RingBase(r) != 7 {
		t.Fatalf("NewRing split = %v", err)
	}
}

// TestBadInputPackedChainLongerThanRing: a chain whose every descriptor
// has NEXT runs over the ring (BROKEN-Q, ErrDescLoop) after exactly size
// reads; a chain of exactly size descriptors is valid.
func TestBadInputPackedChainLongerThanRing(t *testing.T) {
	const size = 8
	r := newPackedRing(t, size, ringOpts{})
	buf := r.spare()
	var ds []PD
	for i := range size {
		ds = append(ds, PD{Addr: buf, Len: 1, ID: uint16(i), Flags: fN})
	}
	ds[size-1].Flags = 0
	r.raw(ds...)
	cs, err := r.pop(4)
	if err != nil || len(cs) != 1 || cs[0].Head != size-1 || cs[0].OutLen != size {
		t.Fatalf("full-ring chain: %d chains, %v", len(cs), err)
	}
	r.q.PushBatch([]Used{{Head: cs[0].Head}})
	// Next lap: every slot has NEXT.
	for i := range ds {
		ds[i].Flags = fN
	}
	r.raw(ds...)
	cs, err = r.pop(4)
	if len(cs) != 0 {
		t.Fatalf("popped %d chains", len(cs))
	}
	expectPackedBroken(t, r, err, ErrDescLoop)
}

// TestBadInputPackedNextOnLastAvail: NEXT on the last available
// descriptor (the slot after it not made available) breaks the queue.
func TestBadInputPackedNextOnLastAvail(t *testing.T) {
	r := newPackedRing(t, 8, ringOpts{})
	r.raw(PD{Addr: r.spare(), Len: 4, ID: 0}, PD{Addr: r.spare(), Len: 4, ID: 0, Flags: fN})
	// Slot 1 chains into slot 2, which was never made available; slot 0
	// is a good chain popped before the fault.
	r.drv.WriteRaw(0, PD{Addr: r.spare(), Len: 4, ID: 2, Flags: r.avail()})
	cs, err := r.pop(4)
	if len(cs) != 1 || cs[0].Head != 2 {
		t.Fatalf("popped %d chains before the fault", len(cs))
	}
	expectPackedBroken(t, r, err, ErrPackedChain)
	r.q.PushBatch([]Used{{Head: 2}})
	if u, ok := r.drv.Used(); !ok || u.Head != 2 {
		t.Fatalf("good chain not returned on broken queue: %+v", u)
	}
}

// TestBadInputPackedIndirect: indirect tables in packed rings (BROKEN-Q
// ErrIndirect: nested, length 0 or not a multiple of 16, with NEXT, not
// negotiated; DROP ErrBufferRange: table outside memory, the chain still
// returned under its id and its slot reused).
func TestBadInputPackedIndirect(t *testing.T) {
	cases := []struct {
		name     string
		indirect bool
		desc     func(tbl uint64) PD
		table    []PD
		want     error
	}{
		{"nested", true, func(tbl uint64) PD { return PD{Addr: tbl, Len: 32, Flags: fI} }, []PD{{Addr: testBase, Len: 1}, {Addr: testBase, Len: 16, Flags: fI}}, ErrIndirect},
		{"len0", true, func(tbl uint64) PD { return PD{Addr: tbl, Len: 0, Flags: fI} }, nil, ErrIndirect},
		{"len24", true, func(tbl uint64) PD { return PD{Addr: tbl, Len: 24, Flags: fI} }, nil, ErrIndirect},
		{"with-next", true, func(tbl uint64) PD { return PD{Addr: tbl, Len: 16, Flags: fI | fN} }, nil, ErrIndirect},
		{"not-negotiated", false, func(tbl uint64) PD { return PD{Addr: tbl, Len: 16, Flags: fI} }, nil, ErrIndirect},
		{"outside", true, func(uint64) PD { return PD{Addr: 1 << 40, Len: 16, Flags: fI} }, nil, ErrBufferRange},
		{"overflow", true, func(uint64) PD { return PD{Addr: 1<<64 - 16, Len: 32, Flags: fI} }, nil, ErrBufferRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newPackedRing(t, 8, ringOpts{indirect: tc.indirect})
			tbl := r.spare() + 1 // misaligned tables are valid
			r.rawTable(tbl, tc.table...)
			d := tc.desc(tbl)
			d.ID = 5
			r.raw(d)
			cs, err := r.pop(4)
			if !errors.Is(tc.want, ErrBroken) {
				if err != nil || len(cs) != 1 || cs[0].Err != tc.want || cs[0].Head != 5 || cs[0].Out != nil {
					t.Fatalf("got %d chains, %v", len(cs), err)
				}
				r.q.PushBatch([]Used{{Head: 5}})
				if r.q.NextUsed() != r.q.NextAvail() || r.q.NextAvail() != 1|vqdriver.WrapBit {
					t.Fatalf("positions %#x %#x", r.q.NextAvail(), r.q.NextUsed())
				}
				return
			}
			if len(cs) != 0 {
				t.Fatalf("popped %d chains", len(cs))
			}
			expectPackedBroken(t, r, err, tc.want)
		})
	}
}

// TestBadInputPackedID: a buffer id >= queue size (ErrPackedID) or one
// already in flight (ErrPackedIDBusy) breaks the queue; only the last
// descriptor's id counts.
func TestBadInputPackedID(t *testing.T) {
	r := newPackedRing(t, 8, ringOpts{})
	r.raw(PD{Addr: r.spare(), Len: 1, ID: 100, Flags: fN}, PD{Addr: r.spare(), Len: 1, ID: 3})
	cs, err := r.pop(4)
	if err != nil || len(cs) != 1 || cs[0].Head != 3 {
		t.Fatalf("id of last descriptor: %d chains, %v", len(cs), err)
	}
	r.raw(PD{Addr: r.spare(), Len: 1, ID: 3})
	cs, err = r.pop(4)
	if len(cs) != 0 {
		t.Fatal("popped a chain with an id in flight")
	}
	expectPackedBroken(t, r, err, ErrPackedIDBusy)

	r = newPackedRing(t, 8, ringOpts{})
	r.raw(PD{Addr: r.spare(), Len: 1, ID: 8})
	cs, err = r.pop(4)
	if len(cs) != 0 {
		t.Fatal("popped a chain with id out of range")
	}
	expectPackedBroken(t, r, err, ErrPackedID)
}

// TestBadInputPackedDrop: DROP faults inside a multi-slot chain (buffer
// outside memory, readable after writable) return the chain flagged under
// the last descriptor's id, with no iovecs; pushed with len 0, its slots
// come back to the driver and the ring carries on.
func TestBadInputPackedDrop(t *testing.T) {
	r := newPackedRing(t, 8, ringOpts{})
	buf := r.spare()
	r.raw(PD{Addr: 1 << 40, Len: 4, Flags: fN}, PD{Addr: buf, Len: 4, Flags: fN}, PD{Addr: buf, Len: 4, ID: 6})
	cs, err := r.pop(4)
	if err != nil || len(cs) != 1 || cs[0].Err != ErrBufferRange || cs[0].Head != 6 || cs[0].Out != nil || cs[0].OutLen != 0 {
		t.Fatalf("got %d chains, %v", len(cs), err)
	}
	r.q.PushBatch([]Used{{Head: 6}})
	r.raw(PD{Addr: buf, Len: 4, Flags: fW | fN}, PD{Addr: buf, Len: 4, ID: 2})
	cs, err = r.pop(4)
	if err != nil || len(cs) != 1 || cs[0].Err != ErrOrder || cs[0].Head != 2 {
		t.Fatalf("order: %d chains, %v", len(cs), err)
	}
	r.q.PushBatch([]Used{{Head: 2}})
	if r.q.NextUsed() != 5|vqdriver.WrapBit || r.q.NextAvail() != r.q.NextUsed() {
		t.Fatalf("positions %#x %#x", r.q.NextAvail(), r.q.NextUsed())
	}
	if u := r.drv.ReadRaw(3); u.ID != 2 || u.Flags&(vqdriver.FlagAvail|vqdriver.FlagUsed) != vqdriver.FlagAvail|vqdriver.FlagUsed {
		t.Fatalf("second used descriptor %+v", u)
	}
}

// TestBadInputPackedWrapLies: descriptors whose flags do not say
// available under the device's wrap counter are never popped, and nothing
// is written: AVAIL == USED (a used descriptor), the next lap's flags, and
// a ring base with the wrong wrap counter.
func TestBadInputPackedWrapLies(t *testing.T) {
	r := newPackedRing(t, 8, ringOpts{})
	for _, flags := range []uint16{0, vqdriver.FlagAvail | vqdriver.FlagUsed, vqdriver.FlagUsed} {
		r.drv.WriteRaw(0, PD{Addr: r.spare(), Len: 1, Flags: flags})
		before := bytes.Clone(r.mem)
		if cs, err := r.pop(4); len(cs) != 0 || err != nil {
			t.Fatalf("flags %#x: popped %d, %v", flags, len(cs), err)
		}
		if r.q.EnableNotify() {
			t.Fatalf("flags %#x: EnableNotify saw work", flags)
		}
		r.mem[r.cfg.Used-testBase], before[r.cfg.Used-testBase] = 0, 0 // device area: ours to write
		if !bytes.Equal(before, r.mem) {
			t.Fatalf("flags %#x: guest memory written", flags)
		}
	}
	// A chain made available for wrap counter 1, seen by a device restarted
	// with wrap counter 0 at the same slot: nothing to pop.
	r.raw(PD{Addr: r.spare(), Len: 1})
	q, err := NewPackedQueue(r.m, r.cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	cs := NewChains(2, 4)
	if n, err := q.PopBatch(cs); n != 0 || err != nil {
		t.Fatalf("wrong wrap counter: popped %d, %v", n, err)
	}
	if n, err := r.q.PopBatch(cs); n != 1 || err != nil {
		t.Fatalf("right wrap counter: popped %d, %v", n, err)
	}
}

// TestBadInputPackedOverrun: descriptors made available in ring slots
// whose chains are still in flight (the driver lapping the device) break
// the queue (ErrPackedOverrun): a head there, or a chain running into one.
func TestBadInputPackedOverrun(t *testing.T) {
	for _, tc := range []string{"head", "chain"} {
		t.Run(tc, func(t *testing.T) {
			r := newPackedRing(t, 4, ringOpts{})
			buf := r.spare()
			r.raw(PD{Addr: buf, Len: 1, Flags: fN}, PD{Addr: buf, Len: 1, ID: 0}) // slots 0-1, in flight
			if cs, err := r.pop(1); len(cs) != 1 || err != nil {
				t.Fatalf("first chain: %d, %v", len(cs), err)
			}
			if tc == "head" {
				r.raw(PD{Addr: buf, Len: 1, ID: 1, Flags: fN}, PD{Addr: buf, Len: 1, ID: 1})   // slots 2-3
				r.drv.WriteRaw(0, PD{Addr: buf, Len: 1, ID: 2, Flags: vqdriver.AvailFlags(0)}) // slot 0, next lap
				cs, err := r.pop(4)
				if len(cs) != 1 || cs[0].Head != 1 {
					t.Fatalf("popped %d before the fault", len(cs))
				}
				expectPackedBroken(t, r, err, ErrPackedOverrun)
				return
			}
			r.raw(PD{Addr: buf, Len: 1, Flags: fN}, PD{Addr: buf, Len: 1, Flags: fN}, PD{Addr: buf, Len: 1, ID: 1}) // 2, 3, 0
			cs, err := r.pop(4)
			if len(cs) != 0 {
				t.Fatalf("popped %d", len(cs))
			}
			expectPackedBroken(t, r, err, ErrPackedOverrun)
		})
	}
}

package virtqueue

import (
	"encoding/binary"
	"errors"
	"testing"
)

// Fuzz guest memory layout (GPAs). Three regions: [0, 64K) and the
// adjacent [64K, 68K), then a hole, then [128K, 192K).
const (
	fuzzDesc  = 0x1000
	fuzzAvail = 0x2000
	fuzzUsed  = 0x3000
	fuzzExtra = 0x4000 // indirect tables and buffers
)

type fuzzMem struct {
	mem     []byte
	regions [][]byte
	m       *Memory
}

func newFuzzMem(t testing.TB) *fuzzMem {
	mem := heapMem(0x30000)
	f := &fuzzMem{mem: mem, regions: [][]byte{mem[:0x10000], mem[0x10000:0x11000], mem[0x20000:]}}
	gpas := []uint64{0, 0x10000, 0x20000}
	var rs []*Region
	for i, b := range f.regions {
		r, err := NewRegionFromBytes(RegionSpec{GPA: gpas[i], Size: uint64(len(b)), UserAddr: 0x7f0000000000 + gpas[i]}, b)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	m, err := NewMemory(rs)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return f
}

func (f *fuzzMem) inside(b []byte) bool {
	for _, r := range f.regions {
		if inside(b, r) {
			return true
		}
	}
	return false
}

// descBytes encodes descriptors as a table.
func descBytes(ds ...D) []byte {
	b := make([]byte, 16*len(ds))
	for i, d := range ds {
		binary.LittleEndian.PutUint64(b[16*i:], d.Addr)
		binary.LittleEndian.PutUint32(b[16*i+8:], d.Len)
		binary.LittleEndian.PutUint16(b[16*i+12:], d.Flags)
		binary.LittleEndian.PutUint16(b[16*i+14:], d.Next)
	}
	return b
}

// availBytes encodes an avail ring: flags 0, idx, heads.
func availBytes(idx uint16, heads ...uint16) []byte {
	b := make([]byte, 4+2*len(heads))
	binary.LittleEndian.PutUint16(b[2:], idx)
	for i, h := range heads {
		binary.LittleEndian.PutUint16(b[4+2*i:], h)
	}
	return b
}

// FuzzPopChains feeds arbitrary avail rings, descriptor tables (the bytes
// after the first sizeLog-sized table land where indirect tables and
// buffers live) and queue sizes to PopBatch and checks invariants rather
// than outputs: no panic, every iovec inside one guest memory region,
// lengths consistent and below 2^32, malformed chains carry no iovecs,
// bounded work, and the queue is either working or broken for good.
func FuzzPopChains(f *testing.F) {
	const ind = fuzzExtra
	// Seeds: the shapes the unit tests build.
	seeds := []struct {
		sizeLog   uint8
		nextAvail uint16
		opts      uint8 // bit 0: indirect negotiated, bit 1: EVENT_IDX, bit 2: avail at +2
		avail     []byte
		descs     []byte
	}{
		{3, 0, 1, availBytes(1, 0), descBytes(D{Addr: 0x8000, Len: 5, Flags: fN, Next: 1}, D{Addr: 0x8100, Len: 100, Flags: fW})},
		{3, 0, 1, availBytes(9), nil},                                                                                   // 27
		{3, 65530, 1, availBytes(3), nil},                                                                               // 27 across wrap
		{3, 0, 1, availBytes(2, 0, 8), descBytes(D{Addr: 0x8000, Len: 1})},                                              // 28
		{3, 0, 1, availBytes(1, 0), descBytes(D{Addr: 0x8000, Len: 4, Flags: fN, Next: 8})},                             // 29
		{3, 0, 1, availBytes(1, 0), descBytes(D{Flags: fN, Next: 0})},                                                   // 30
		{3, 0, 1, availBytes(1, 0), descBytes(D{Flags: fN, Next: 1}, D{Flags: fN, Next: 0})},                            // 30
		{0, 0, 1, availBytes(1, 0), descBytes(D{Addr: 0x8000, Len: 1})},                                                 // size 1
		{1, 0, 1, availBytes(2, 0, 1), descBytes(D{Addr: 0x8000, Len: 1, Flags: fN, Next: 1}, D{Addr: 0x8000, Len: 1})}, // 31
		{3, 0, 1, availBytes(1, 0), append(descBytes(D{Addr: ind, Len: 32, Flags: fI}), make([]byte, 0x3000-16*8)...)},
		{3, 0, 0, availBytes(1, 0), descBytes(D{Addr: ind, Len: 32, Flags: fI})},                                          // 32 not negotiated
		{3, 0, 1, availBytes(1, 0), descBytes(D{Addr: ind + 3, Len: 24, Flags: fI})},                                      // 32 bad len
		{3, 0, 1, availBytes(1, 0), descBytes(D{Addr: ind, Len: 32, Flags: fI | fN, Next: 1})},                            // 32 with next
		{3, 0, 1, availBytes(1, 0), descBytes(D{Addr: 0xfff0, Len: 0x20})},                                                // 33 adjacent split
		{3, 0, 1, availBytes(1, 0), descBytes(D{Addr: 0x10ff0, Len: 0x20})},                                               // 33 hole
		{3, 0, 1, availBytes(1, 0), descBytes(D{Addr: 1<<64 - 16, Len: 0x20})},                                            // 33 overflow
		{3, 0, 1, availBytes(1, 0), descBytes(D{Addr: 0x8000, Len: 4, Flags: fW | fN, Next: 1}, D{Addr: 0x8000, Len: 4})}, // 35
		{3, 0, 5, availBytes(2, 0, 0), descBytes(D{Addr: 0x8000, Len: 1})},
		{8, 0, 3, availBytes(4, 0, 1, 2, 3), descBytes(D{Addr: 0x20000, Len: 0xffff, Flags: fN, Next: 1}, D{Addr: 0x20000, Len: 0xffff})},
	}
	for _, s := range seeds {
		f.Add(s.sizeLog, s.nextAvail, s.opts, s.avail, s.descs)
	}
	fm := newFuzzMem(f)
	cs := NewChains(8, 16)
	used := make([]Used, 8)
	f.Fuzz(func(t *testing.T, sizeLog uint8, nextAvail uint16, opts uint8, avail, descs []byte) {
		size := uint16(1) << (sizeLog % 9) // 1..256
		clear(fm.mem)
		copy(fm.mem[fuzzAvail:fuzzAvail+6+2*int(size)], avail)
		tbl := min(len(descs), 16*int(size))
		copy(fm.mem[fuzzDesc:], descs[:tbl])
		copy(fm.mem[fuzzExtra:0x10000], descs[tbl:])
		c := Config{Size: size, Desc: fuzzDesc, Avail: fuzzAvail, Used: fuzzUsed, Indirect: opts&1 != 0, EventIdx: opts&2 != 0}
		if opts&4 != 0 {
			// A 2-aligned avail ring: exercises the non-atomic paths.
			c.Avail += 2
			copy(fm.mem[c.Avail:c.Avail+6+2*uint64(size)], avail)
		}
		q, err := NewQueue(fm.m, c, nextAvail)
		if err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 6; round++ {
			budget := 1 + round%8
			n, err := q.PopBatch(cs[:budget])
			if n < 0 || n > budget {
				t.Fatalf("n = %d, budget %d", n, budget)
			}
			if (err != nil) != (q.Broken() != nil) || (err != nil && !errors.Is(err, ErrBroken)) {
				t.Fatalf("err %v, Broken %v", err, q.Broken())
			}
			for i := range cs[:n] {
				ch := &cs[i]
				if ch.Head >= size {
					t.Fatalf("head %d >= size %d", ch.Head, size)
				}
				var out, in uint64
				for _, b := range ch.Out {
					if len(b) == 0 || !fm.inside(b) {
						t.Fatalf("bad out iovec (len %d)", len(b))
					}
					out += uint64(len(b))
				}
				for _, b := range ch.In {
					if len(b) == 0 || !fm.inside(b) {
						t.Fatalf("bad in iovec (len %d)", len(b))
					}
					in += uint64(len(b))
				}
				if out != uint64(ch.OutLen) || in != uint64(ch.InLen) || out+in > 1<<32-1 {
					t.Fatalf("lengths: iovecs %d/%d, fields %d/%d", out, in, ch.OutLen, ch.InLen)
				}
				if ch.Err != nil && (ch.Out != nil || ch.In != nil) {
					t.Fatalf("malformed chain (%v) with iovecs", ch.Err)
				}
				if errors.Is(ch.Err, ErrBroken) && (i != n-1 || err != ch.Err) {
					t.Fatalf("breaking chain %d of %d: %v vs %v", i, n, ch.Err, err)
				}
				o, in2 := ch.Descs()
				if o+in2 > int(size)+maxIndirect {
					t.Fatalf("walked %d descriptors", o+in2)
				}
				used[i] = Used{Head: ch.Head, Len: ch.InLen}
			}
			q.PushBatch(used[:n])
			q.NeedsNotify()
			if err != nil {
				if m, err2 := q.PopBatch(cs); m != 0 || err2 != err {
					t.Fatalf("broken queue popped %d, %v", m, err2)
				}
				return
			}
			if n == 0 {
				q.EnableNotify()
				return
			}
		}
	})
}

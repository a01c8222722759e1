package virtqueue

import (
	"encoding/binary"
	"errors"
	"testing"
)

// packedBytes encodes packed descriptors as a ring or table.
func packedBytes(ds ...PD) []byte {
	b := make([]byte, 16*len(ds))
	for i, d := range ds {
		binary.LittleEndian.PutUint64(b[16*i:], d.Addr)
		binary.LittleEndian.PutUint32(b[16*i+8:], d.Len)
		binary.LittleEndian.PutUint16(b[16*i+12:], d.ID)
		binary.LittleEndian.PutUint16(b[16*i+14:], d.Flags)
	}
	return b
}

// FuzzPackedChains feeds arbitrary packed descriptor rings (the bytes
// past the ring land where indirect tables and buffers live), ring sizes
// (any, 1..256), ring bases and driver event areas to PopBatch, PushBatch
// and the notification calls, and checks invariants: no panic, every
// iovec inside one guest memory region, lengths consistent, malformed
// chains carry no iovecs, bounded work, ids below the size and each in
// flight once, positions back in step once everything is pushed, and the
// queue is either working or broken for good.
func FuzzPackedChains(f *testing.F) {
	const av = 1 << 7 // AVAIL for wrap counter 1
	const ind = fuzzExtra
	seeds := []struct {
		size uint16
		base uint16
		opts uint8 // bit 0: indirect negotiated, bit 1: EVENT_IDX
		ring []byte
	}{
		{8, 0x8000, 1, packedBytes(PD{Addr: 0x8000, Len: 5, Flags: av | fN}, PD{Addr: 0x8100, Len: 100, ID: 3, Flags: av | fW})},
		{8, 0x8000, 1, append(packedBytes(PD{Addr: ind, Len: 32, ID: 1, Flags: av | fI}), make([]byte, 0x3000-16)...)},
		{8, 0x8000, 1, packedBytes(PD{Addr: 0x8000, Len: 1, Flags: av | fN}, PD{Addr: 0x8000, Len: 1, Flags: fN})}, // NEXT on last avail
		{2, 0x8000, 1, packedBytes(PD{Flags: av | fN}, PD{Flags: av | fN})},                                        // longer than ring
		{1, 0x8000, 3, packedBytes(PD{Addr: 0x8000, Len: 1, Flags: av})},
		{3, 0x0002, 3, packedBytes(PD{Addr: 0x8000, Len: 1, Flags: 1 << 15}, PD{Addr: 0x8000, Len: 1, Flags: 1<<15 | fN}, PD{Addr: 0x8000, Len: 1, ID: 2, Flags: 1<<15 | fN})},
		{8, 0x8000, 1, packedBytes(PD{Addr: ind + 3, Len: 24, Flags: av | fI})},
		{8, 0x8000, 0, packedBytes(PD{Addr: ind, Len: 32, Flags: av | fI})},
		{8, 0x8000, 1, packedBytes(PD{Addr: 0x10ff0, Len: 0x20, Flags: av})},
		{8, 0x8000, 1, packedBytes(PD{Addr: 0x8000, Len: 1, ID: 9, Flags: av})},
		{8, 0x8000, 1, packedBytes(PD{Addr: 0x8000, Len: 1, ID: 1, Flags: av}, PD{Addr: 0x8000, Len: 1, ID: 1, Flags: av})},
		{300 % 256, 0x8005, 3, packedBytes(PD{Addr: 0x20000, Len: 0xffff, Flags: av | fN}, PD{Addr: 0x20000, Len: 0xffff, Flags: av | fW})},
	}
	for _, s := range seeds {
		f.Add(s.size, s.base, s.opts, uint32(2<<16|0x8001), s.ring)
	}
	fm := newFuzzMem(f)
	cs := NewChains(8, 16)
	used := make([]Used, 8)
	f.Fuzz(func(t *testing.T, sizeSel, base uint16, opts uint8, drvEvent uint32, ring []byte) {
		size := 1 + sizeSel%256
		clear(fm.mem)
		n := min(len(ring), 16*int(size))
		copy(fm.mem[fuzzDesc:], ring[:n])
		copy(fm.mem[fuzzExtra:0x10000], ring[n:])
		binary.LittleEndian.PutUint32(fm.mem[fuzzAvail:], drvEvent)
		c := Config{Size: size, Desc: fuzzDesc, Avail: fuzzAvail, Used: fuzzUsed, Indirect: opts&1 != 0, EventIdx: opts&2 != 0, Packed: true}
		base = base%size | base&wrapBit
		q, err := NewPackedQueue(fm.m, c, uint32(base))
		if err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 6; round++ {
			budget := 1 + round%8
			k, err := q.PopBatch(cs[:budget])
			if k < 0 || k > budget {
				t.Fatalf("n = %d, budget %d", k, budget)
			}
			if (err != nil) != (q.Broken() != nil) || (err != nil && !errors.Is(err, ErrBroken)) {
				t.Fatalf("err %v, Broken %v", err, q.Broken())
			}
			seen := map[uint16]bool{}
			for i := range cs[:k] {
				ch := &cs[i]
				checkChain(t, ch, size, fm.inside)
				if seen[ch.Head] {
					t.Fatalf("id %d popped twice", ch.Head)
				}
				seen[ch.Head] = true
				if errors.Is(ch.Err, ErrBroken) {
					t.Fatalf("packed chain returned with a BROKEN-Q error %v", ch.Err)
				}
				if o, in := ch.Descs(); o+in > int(size)+maxIndirect {
					t.Fatalf("walked %d descriptors", o+in)
				}
				used[i] = Used{Head: ch.Head, Len: ch.InLen}
			}
			q.PushBatch(used[:k])
			if q.NextAvail() != q.NextUsed() {
				t.Fatalf("avail %#x, used %#x after pushing everything", q.NextAvail(), q.NextUsed())
			}
			q.NeedsNotify()
			if err != nil {
				if m, err2 := q.PopBatch(cs); m != 0 || err2 != err {
					t.Fatalf("broken queue popped %d, %v", m, err2)
				}
				return
			}
			if k == 0 {
				q.EnableNotify()
				return
			}
		}
	})
}

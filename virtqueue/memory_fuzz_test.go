package virtqueue

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"testing"
)

// fuzzRegions decodes up to 8 region specs, 24 bytes each (GPA, size, user
// address); sizes are cut to 64 KiB so that each can be backed by real bytes.
func fuzzRegions(b []byte) []RegionSpec {
	var specs []RegionSpec
	for len(b) >= 24 && len(specs) < 8 {
		le := binary.LittleEndian
		specs = append(specs, RegionSpec{GPA: le.Uint64(b), Size: le.Uint64(b[8:]) % (64 << 10), UserAddr: le.Uint64(b[16:])})
		b = b[24:]
	}
	return specs
}

// overlaps is the brute-force answer: do two extents share a byte?
func overlaps(a, an, b, bn uint64) bool {
	return a < b+bn && b < a+an
}

// FuzzMemoryTable checks the memory table, the parser of every
// SET_MEM_TABLE and ADD_MEM_REG, against brute force: a table is built
// exactly when every region is valid and no two overlap in guest-physical
// or front-end-virtual space, and Slice and VAToGPA answer exactly when the
// whole extent lies inside one region, with the bytes at the right offset.
func FuzzMemoryTable(f *testing.F) {
	seed := func(rs ...[3]uint64) []byte {
		var b []byte
		for _, r := range rs {
			for _, v := range r {
				b = binary.LittleEndian.AppendUint64(b, v)
			}
		}
		return b
	}
	f.Add(seed([3]uint64{0, 4096, 1 << 40}, [3]uint64{8192, 4096, 1<<40 + 8192}), uint64(8190), uint64(4), uint64(1<<40+10))
	f.Add(seed([3]uint64{0, 4096, 0}, [3]uint64{4095, 10, 1 << 20}), uint64(0), uint64(0), uint64(0))
	f.Add(seed([3]uint64{^uint64(0) - 100, 4096, 0}), uint64(^uint64(0)), uint64(2), uint64(5))
	f.Fuzz(func(t *testing.T, table []byte, gpa, n, va uint64) {
		specs := fuzzRegions(table)
		var rs []*Region
		valid := true
		for _, s := range specs {
			r, err := NewRegionFromBytes(s, make([]byte, s.Size))
			if err != nil {
				if s.Size != 0 && !errors.Is(err, ErrRegionOverflow) {
					t.Fatalf("region %+v refused with %v", s, err)
				}
				valid = false
				continue
			}
			for _, base := range []uint64{s.GPA, s.UserAddr} {
				if _, c := bits.Add64(base, s.Size, 0); c != 0 {
					t.Fatalf("region %+v overflows but was accepted", s)
				}
			}
			rs = append(rs, r)
		}
		if !valid {
			return
		}
		clash := false
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				a, b := rs[i], rs[j]
				clash = clash || overlaps(a.GPA, a.Size, b.GPA, b.Size) || overlaps(a.UserAddr, a.Size, b.UserAddr, b.Size)
			}
		}
		m, err := NewMemory(rs)
		if clash != (err != nil) {
			t.Fatalf("regions %+v: overlap %v, NewMemory error %v", specs, clash, err)
		}
		if err != nil {
			return
		}
		checkSlice(t, m, rs, gpa, n%(128<<10))
		checkVAToGPA(t, m, rs, va, n%(128<<10))
	})
}

func checkSlice(t *testing.T, m *Memory, rs []*Region, gpa, n uint64) {
	b, ok := m.Slice(gpa, n)
	for _, r := range rs {
		if gpa >= r.GPA && gpa-r.GPA < r.Size && n <= r.Size-(gpa-r.GPA) {
			if !ok || uint64(len(b)) != n || (n > 0 && &b[0] != &r.data[gpa-r.GPA]) {
				t.Fatalf("Slice(%#x, %d): ok %v, %d bytes, not region %#x's bytes", gpa, n, ok, len(b), r.GPA)
			}
			return
		}
	}
	if ok {
		t.Fatalf("Slice(%#x, %d) answered for an extent outside every region", gpa, n)
	}
}

func checkVAToGPA(t *testing.T, m *Memory, rs []*Region, va, n uint64) {
	got, ok := m.VAToGPA(va, n)
	for _, r := range rs {
		if va >= r.UserAddr && va-r.UserAddr < r.Size && n <= r.Size-(va-r.UserAddr) {
			if want := r.GPA + (va - r.UserAddr); !ok || got != want {
				t.Fatalf("VAToGPA(%#x, %d) = %#x, %v; want %#x", va, n, got, ok, want)
			}
			return
		}
	}
	if ok {
		t.Fatalf("VAToGPA(%#x, %d) answered %#x for an extent outside every region", va, n, got)
	}
}

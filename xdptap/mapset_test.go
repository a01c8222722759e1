package xdptap

import (
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

func mapKeys(t *testing.T, m *ebpf.Map) []xdpLpm4 {
	t.Helper()
	var got []xdpLpm4
	var k xdpLpm4
	var v uint32
	it := m.Iterate()
	for it.Next(&k, &v) {
		got = append(got, k)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return sortKeys(got, compareLpm4)
}

func keys4(addrs ...byte) []xdpLpm4 {
	var s []xdpLpm4
	for _, a := range addrs {
		s = append(s, xdpLpm4{Prefixlen: 32, Addr: [4]byte{10, 0, 0, a}})
	}
	return sortKeys(s, compareLpm4)
}

// A mapSet writes only the difference, makes room first when old and new together would
// overflow the map, and recovers from an unknown state by clearing the map.
func TestMapSet(t *testing.T) {
	requireXDP(t)
	spec, err := builtin()
	if err != nil {
		t.Fatal(err)
	}
	ms := spec.Maps[xdpMapGuardSrc4].Copy()
	ms.MaxEntries = 4
	m, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s := newMapSet(m, 4, compareLpm4)
	steps := [][]xdpLpm4{
		keys4(1, 2, 3),
		keys4(2, 3, 4),    // union of 4: add first, then delete
		keys4(5, 6, 7, 8), // union of 8 > 4: delete first
		keys4(),
		keys4(9, 200, 7),
	}
	for i, want := range steps {
		if err := s.sync(want); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := mapKeys(t, m); !slices.Equal(got, want) || !slices.Equal(s.keys, want) {
			t.Fatalf("step %d: map holds %v, want %v", i, got, want)
		}
	}
	// An unknown state (a failed update): a stray key the record does not know of goes too.
	if err := m.Put(xdpLpm4{Prefixlen: 32, Addr: [4]byte{10, 0, 0, 99}}, uint32(1)); err != nil {
		t.Fatal(err)
	}
	s.known = false
	if err := s.sync(keys4(1)); err != nil {
		t.Fatal(err)
	}
	if got := mapKeys(t, m); !slices.Equal(got, keys4(1)) {
		t.Fatalf("after a sync from unknown state the map holds %v", got)
	}
	// More than the map holds is refused before anything is written.
	if err := s.sync(keys4(1, 2, 3, 4, 5)); err == nil || !s.known {
		t.Fatalf("overflow: %v (known %v)", err, s.known)
	}
}

func TestSortKeys(t *testing.T) {
	got := sortKeys(append(keys4(3, 1), keys4(2, 3, 1)...), compareLpm4)
	if !slices.Equal(got, keys4(1, 2, 3)) {
		t.Fatalf("sortKeys = %v", got)
	}
}

package xdptap

import (
	"maps"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

func mapKeys(t *testing.T, m *ebpf.Map) map[xdpLpm4]struct{} {
	t.Helper()
	got := map[xdpLpm4]struct{}{}
	var k xdpLpm4
	var v uint32
	it := m.Iterate()
	for it.Next(&k, &v) {
		got[k] = struct{}{}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func keySet(addrs ...byte) map[xdpLpm4]struct{} {
	s := map[xdpLpm4]struct{}{}
	for _, a := range addrs {
		s[xdpLpm4{Prefixlen: 32, Addr: [4]byte{10, 0, 0, a}}] = struct{}{}
	}
	return s
}

// syncSet writes only the difference, makes room first when old and new together would
// overflow the map, and recovers from an unknown state (nil) by clearing the map.
func TestSyncSet(t *testing.T) {
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
	have := map[xdpLpm4]struct{}{}
	steps := []map[xdpLpm4]struct{}{
		keySet(1, 2, 3),
		keySet(2, 3, 4),    // union of 4: add first, then delete
		keySet(5, 6, 7, 8), // union of 8 > 4: delete first
		keySet(),
		keySet(9),
	}
	for i, want := range steps {
		if have, err = syncSet(m, have, want, 4, nil); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := mapKeys(t, m); !maps.Equal(got, want) || !maps.Equal(have, want) {
			t.Fatalf("step %d: map holds %v, want %v", i, slices.Collect(maps.Keys(got)), slices.Collect(maps.Keys(want)))
		}
	}
	// Unknown state: a stray key the record does not know of goes too.
	if err := m.Put(xdpLpm4{Prefixlen: 32, Addr: [4]byte{10, 0, 0, 99}}, uint32(1)); err != nil {
		t.Fatal(err)
	}
	if have, err = syncSet(m, nil, keySet(1), 4, nil); err != nil {
		t.Fatal(err)
	}
	if got := mapKeys(t, m); !maps.Equal(got, keySet(1)) {
		t.Fatalf("after a sync from unknown state the map holds %v", got)
	}
	// More than the map holds fails, and leaves the record unknown.
	if have, err = syncSet(m, have, keySet(1, 2, 3, 4, 5), 4, nil); err == nil || have != nil {
		t.Fatalf("overflow: %v, %v", have, err)
	}
}

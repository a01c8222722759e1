package virtqueue

import (
	"errors"
	"testing"
)

func TestMemoryNilAndEdges(t *testing.T) {
	var nilMem *Memory
	if _, ok := nilMem.Slice(0, 1); ok {
		t.Fatal("nil Memory translated")
	}
	if _, ok := nilMem.Contiguous(0, 1); ok {
		t.Fatal("nil Memory translated")
	}
	if _, ok := nilMem.VAToGPA(0, 1); ok {
		t.Fatal("nil Memory translated")
	}
	if err := (Config{Size: 8, Desc: 0x1000, Avail: 0x2000, Used: 0x3000}).Validate(nilMem); err != nil {
		t.Fatalf("Validate(nil) = %v", err)
	}
	if _, err := NewQueue(nilMem, Config{Size: 8, Desc: 0x1000, Avail: 0x2000, Used: 0x3000}, 0); err == nil {
		t.Fatal("NewQueue over no memory")
	}

	mem := heapMem(8192)
	m := twoRegions(t, mem, 4096, 0)
	for _, tc := range []struct {
		name   string
		gpa, n uint64
		slice  bool // Slice succeeds
		contig int  // Contiguous prefix length, -1: fails
	}{
		{"inside", testBase + 10, 10, true, 10},
		{"zero length inside", testBase + 10, 0, true, 0},
		{"crosses adjacent regions", testBase + 4090, 10, false, 6},
		{"end of memory", testBase + 8192, 1, false, -1},
		{"below", testBase - 1, 2, false, -1},
		{"overflow", testBase + 1, 1<<64 - 1, false, 4095},
	} {
		_, ok := m.Slice(tc.gpa, tc.n)
		b, cok := m.Contiguous(tc.gpa, tc.n)
		if ok != tc.slice || (tc.contig < 0) != !cok || (cok && len(b) != tc.contig) {
			t.Errorf("%s: Slice ok %v, Contiguous %d %v", tc.name, ok, len(b), cok)
		}
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

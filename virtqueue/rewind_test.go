package virtqueue

import "testing"

func TestRewindAcrossBatches(t *testing.T) {
	r := newTestRing(t, 16, ringOpts{})
	for i := 0; i < 6; i++ {
		if _, err := r.drv.AddChain(nil, []int{64}); err != nil {
			t.Fatal(err)
		}
	}
	r.drv.Publish()
	a, err := r.pop(2)
	if err != nil || len(a) != 2 {
		t.Fatalf("pop: %d %v", len(a), err)
	}
	heads := []uint16{a[0].Head, a[1].Head}
	b, err := r.pop(3)
	if err != nil || len(b) != 3 {
		t.Fatalf("pop: %d %v", len(b), err)
	}
	heads = append(heads, b[0].Head, b[1].Head, b[2].Head)
	// Use the first chain, hand the other four back.
	r.q.PushBatch([]Used{{Head: heads[0], Len: 10}})
	r.q.Rewind(4)
	if got := r.q.NextAvail(); got != 1 {
		t.Fatalf("next avail %d after rewinding 4 of 5, want 1", got)
	}
	c, err := r.pop(8)
	if err != nil || len(c) != 5 {
		t.Fatalf("pop after rewind: %d %v", len(c), err)
	}
	for i, ch := range c[:4] {
		if ch.Head != heads[i+1] {
			t.Fatalf("chain %d head %d, want %d (the rewound ones, in order)", i, ch.Head, heads[i+1])
		}
	}
}

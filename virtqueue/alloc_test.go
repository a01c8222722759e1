package virtqueue

import "testing"

// steadyRing sets up k two-descriptor chains (16-byte readable header,
// 1500-byte writable buffer) with raw descriptors the driver never
// rewrites, so a round of publish/pop/push/reap allocates nothing on
// either side.
func steadyRing(tb testing.TB, k int) (*testRing, []Chain, []Used) {
	tb.Helper()
	r := newTestRing(tb, 256, ringOpts{eventIdx: true, extra: k * 2048})
	for i := range k {
		buf := r.spare() + uint64(i)*2048
		r.drv.WriteDesc(uint16(2*i), D{Addr: buf, Len: 16, Flags: fN, Next: uint16(2*i + 1)})
		r.drv.WriteDesc(uint16(2*i+1), D{Addr: buf + 16, Len: 1500, Flags: fW})
	}
	return r, NewChains(k, 8), make([]Used, k)
}

// round publishes k chains, pops, pushes and reaps them.
func round(tb testing.TB, r *testRing, cs []Chain, used []Used) {
	for i := range cs {
		r.drv.PutAvail(uint16(2 * i))
	}
	r.drv.Publish()
	n, err := r.q.PopBatch(cs)
	if n != len(cs) || err != nil {
		tb.Fatalf("PopBatch = %d, %v", n, err)
	}
	for i := range cs[:n] {
		used[i] = Used{Head: cs[i].Head, Len: cs[i].InLen}
	}
	r.q.PushBatch(used[:n])
	r.q.NeedsNotify()
	for range n {
		r.drv.Used()
	}
}

func TestPopPushZeroAllocs(t *testing.T) {
	r, cs, used := steadyRing(t, 32)
	round(t, r, cs, used)
	if a := testing.AllocsPerRun(1000, func() { round(t, r, cs, used) }); a != 0 {
		t.Fatalf("%v allocations per pop/push round, want 0", a)
	}
	// Notification calls and malformed chains allocate nothing either.
	r.drv.WriteDesc(200, D{Addr: 1 << 60, Len: 1})
	a := testing.AllocsPerRun(1000, func() {
		r.q.DisableNotify()
		r.drv.PutAvail(200)
		r.drv.Publish()
		n, _ := r.q.PopBatch(cs[:1])
		if n != 1 || cs[0].Err != ErrBufferRange {
			t.Fatal("expected a dropped chain")
		}
		used[0] = Used{Head: cs[0].Head}
		r.q.PushBatch(used[:1])
		r.drv.Used()
		r.q.EnableNotify()
	})
	if a != 0 {
		t.Fatalf("%v allocations per dropped chain", a)
	}
}

// BenchmarkPopPush measures one chain through PopBatch and PushBatch
// (with the test driver's publish and reap, which are cheap), in batches.
func BenchmarkPopPush(b *testing.B) {
	for _, k := range []int{1, 32} {
		b.Run(map[int]string{1: "batch1", 32: "batch32"}[k], func(b *testing.B) {
			r, cs, used := steadyRing(b, k)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += k {
				round(b, r, cs, used)
			}
		})
	}
}

package virtqueue

import "testing"

// steadyPacked sets up k two-descriptor chains (16-byte readable header,
// 1500-byte writable buffer), as steadyRing does for split rings, on a
// packed ring of 256 entries: a round writes them raw, so neither side
// allocates.
func steadyPacked(tb testing.TB, k int) (*packedRing, [][2]PD, []Chain, []Used) {
	tb.Helper()
	r := newPackedRing(tb, 256, ringOpts{eventIdx: true, extra: k * 2048})
	descs := make([][2]PD, k)
	for i := range descs {
		buf := r.spare() + uint64(i)*2048
		descs[i] = [2]PD{{Addr: buf, Len: 16, ID: uint16(i), Flags: fN}, {Addr: buf + 16, Len: 1500, ID: uint16(i), Flags: fW}}
	}
	return r, descs, NewChains(k, 8), make([]Used, k)
}

// packedRound makes k chains available, pops, pushes and reaps them.
func packedRound(tb testing.TB, r *packedRing, descs [][2]PD, cs []Chain, used []Used) {
	for i := range descs {
		r.drv.AddRaw(descs[i][:])
	}
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
		if _, _, ok := r.drv.UsedRaw(2); !ok {
			tb.Fatal("used descriptor missing")
		}
	}
}

func TestPackedPopPushZeroAllocs(t *testing.T) {
	r, descs, cs, used := steadyPacked(t, 32)
	packedRound(t, r, descs, cs, used)
	if a := testing.AllocsPerRun(1000, func() { packedRound(t, r, descs, cs, used) }); a != 0 {
		t.Fatalf("%v allocations per pop/push round, want 0", a)
	}
	bad := [][2]PD{{{Addr: 1 << 60, Len: 1, ID: 200, Flags: fN}, {Addr: 1 << 60, Len: 1, ID: 200}}}
	a := testing.AllocsPerRun(1000, func() {
		r.q.DisableNotify()
		r.drv.AddRaw(bad[0][:])
		n, _ := r.q.PopBatch(cs[:1])
		if n != 1 || cs[0].Err != ErrBufferRange {
			t.Fatal("expected a dropped chain")
		}
		used[0] = Used{Head: cs[0].Head}
		r.q.PushBatch(used[:1])
		r.drv.UsedRaw(2)
		r.q.EnableNotify()
	})
	if a != 0 {
		t.Fatalf("%v allocations per dropped chain", a)
	}
}

// BenchmarkPackedPopPush is BenchmarkPopPush for a packed ring: one chain
// through PopBatch and PushBatch (with the test driver's raw writes and
// reap), in batches of 1 and 32.
func BenchmarkPackedPopPush(b *testing.B) {
	for _, k := range []int{1, 32} {
		b.Run(map[int]string{1: "batch1", 32: "batch32"}[k], func(b *testing.B) {
			r, descs, cs, used := steadyPacked(b, k)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += k {
				packedRound(b, r, descs, cs, used)
			}
		})
	}
}

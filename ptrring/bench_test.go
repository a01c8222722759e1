package ptrring

import (
	"runtime"
	"testing"
)

// The benchmarks move b.N items from a producer goroutine to the benchmark goroutine, which
// consumes them and checks that item i is the i-th pointer the producer sent (so a lost,
// duplicated or reordered item fails the run). ns/item is the wall time per item moved.
// Items are pointers into benchItems, so nothing is allocated per item; the producer's
// goroutine and closure are the only allocations of a run.
//
//	go test -run '^$' -bench . -benchtime 2000000x -count 5 ./ptrring/

const (
	benchRing  = 1024 // slots in each ring, items in each channel
	benchBatch = 32
	benchItemN = 4096 // distinct items, a power of two > benchRing + 2*benchBatch
	benchMask  = benchItemN - 1
)

var (
	benchItems [benchItemN]int
	// benchPtrs[i] = &benchItems[i&benchMask], with benchBatch extra so any window of
	// benchBatch starting below benchItemN is in range.
	benchPtrs = func() []*int {
		p := make([]*int, benchItemN+benchBatch)
		for i := range p {
			p[i] = &benchItems[i&benchMask]
		}
		return p
	}()
)

// backoff is what a side does after finding the ring full or empty: wait a little
// without touching shared memory, then look again, as a poller with other work does. A
// side that re-reads the ring at full speed pulls the cache line its peer is writing
// away from it on every read and slows the peer down (C spin loops use PAUSE for this;
// Go has none). Every 64 failures it yields, so a spinning side cannot keep the only P
// from its peer when GOMAXPROCS is 1 (or under -race). The same backoff serves every ring
// design; the channel benchmarks park instead.
func backoff(spin *int) {
	if *spin++; *spin&63 == 0 {
		runtime.Gosched()
		return
	}
	for i := 0; i < backoffLoops; i++ {
		backoffSink++
	}
}

// backoffLoops iterations take about 100 to 200 ns on the machines we measure on.
const backoffLoops = 300

var backoffSink int

func report(b *testing.B, bad int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/item")
	if bad != 0 {
		b.Fatalf("%d of %d items arrived out of place", bad, b.N)
	}
}

// The loops below are written out once per ring type, not as one generic function: with
// a pointer type argument the generic body would call the ring through its dictionary, an
// indirect call per item that the channel loops do not pay.

func BenchmarkBatch1(b *testing.B) {
	b.Run("impl=ptrring", func(b *testing.B) {
		benchSingleRing(b, mustNew[int](b, benchRing))
	})
	b.Run("impl=ptrring-release1", func(b *testing.B) {
		r := mustNew[int](b, benchRing)
		r.release = 1 // publish head after every Consume
		benchSingleRing(b, r)
	})
	b.Run("impl=idxring", func(b *testing.B) {
		benchSingleIdx(b, newIdxRing[int](benchRing))
	})
	b.Run("impl=slotring", func(b *testing.B) {
		benchSingleSlot(b, newSlotRing[int](benchRing))
	})
	b.Run("impl=chan", func(b *testing.B) {
		c := make(chan *int, benchRing)
		n := b.N
		b.ReportAllocs()
		b.ResetTimer()
		go func() {
			for i := 0; i < n; i++ {
				c <- benchPtrs[i&benchMask]
			}
		}()
		bad := 0
		for i := 0; i < n; i++ {
			if <-c != benchPtrs[i&benchMask] {
				bad++
			}
		}
		report(b, bad)
	})
}

// The bench* functions below are written out once per ring design on
// purpose: a generic version over an interface constraint calls Produce and
// Consume through the generic dictionary (an indirect call each), which
// costs a few ns per item and would blur the very differences these
// benchmarks measure.
func benchSingleRing(b *testing.B, r *Ring[int]) {
	n := b.N
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		spin := 0
		for i := 0; i < n; i++ {
			for !r.Produce(benchPtrs[i&benchMask]) {
				backoff(&spin)
			}
		}
	}()
	bad, spin := 0, 0
	for i := 0; i < n; {
		p := r.Consume()
		if p == nil {
			backoff(&spin)
			continue
		}
		if p != benchPtrs[i&benchMask] {
			bad++
		}
		i++
	}
	report(b, bad)
}

func benchSingleIdx(b *testing.B, r *idxRing[int]) {
	n := b.N
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		spin := 0
		for i := 0; i < n; i++ {
			for !r.Produce(benchPtrs[i&benchMask]) {
				backoff(&spin)
			}
		}
	}()
	bad, spin := 0, 0
	for i := 0; i < n; {
		p := r.Consume()
		if p == nil {
			backoff(&spin)
			continue
		}
		if p != benchPtrs[i&benchMask] {
			bad++
		}
		i++
	}
	report(b, bad)
}

func benchSingleSlot(b *testing.B, r *slotRing[int]) {
	n := b.N
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		spin := 0
		for i := 0; i < n; i++ {
			for !r.Produce(benchPtrs[i&benchMask]) {
				backoff(&spin)
			}
		}
	}()
	bad, spin := 0, 0
	for i := 0; i < n; {
		p := r.Consume()
		if p == nil {
			backoff(&spin)
			continue
		}
		if p != benchPtrs[i&benchMask] {
			bad++
		}
		i++
	}
	report(b, bad)
}

func BenchmarkBatch32(b *testing.B) {
	b.Run("impl=ptrring", func(b *testing.B) {
		benchBatchedRing(b, mustNew[int](b, benchRing))
	})
	b.Run("impl=idxring", func(b *testing.B) {
		benchBatchedIdx(b, newIdxRing[int](benchRing))
	})
	b.Run("impl=slotring", func(b *testing.B) {
		benchBatchedSlot(b, newSlotRing[int](benchRing))
	})
	b.Run("impl=chan-slices", func(b *testing.B) {
		// The channel carries batches; the same item capacity as the rings.
		const depth = benchRing / benchBatch
		c := make(chan []*int, depth)
		// The producer fills bufs round-robin. When it fills buffer k it has sent k-1, so
		// at most depth batches wait in the channel and the consumer has finished batch
		// k-depth-2: depth+2 buffers are never overwritten while read.
		bufs := make([][]*int, depth+2)
		for i := range bufs {
			bufs[i] = make([]*int, benchBatch)
		}
		n := b.N
		b.ReportAllocs()
		b.ResetTimer()
		go func() {
			for i, k := 0, 0; i < n; k++ {
				m := min(benchBatch, n-i)
				buf := bufs[k%len(bufs)][:m]
				copy(buf, benchPtrs[i&benchMask:])
				c <- buf
				i += m
			}
		}()
		bad := 0
		for i := 0; i < n; {
			for _, p := range <-c {
				if p != benchPtrs[i&benchMask] {
					bad++
				}
				i++
			}
		}
		report(b, bad)
	})
}

func benchBatchedRing(b *testing.B, r *Ring[int]) {
	n := b.N
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		spin := 0
		for i := 0; i < n; {
			m := min(benchBatch, n-i)
			k := r.ProduceBatch(benchPtrs[i&benchMask : i&benchMask+m])
			if k == 0 {
				backoff(&spin)
			}
			i += k
		}
	}()
	var dst [benchBatch]*int
	bad, spin := 0, 0
	for i := 0; i < n; {
		k := r.ConsumeBatch(dst[:])
		if k == 0 {
			backoff(&spin)
			continue
		}
		for _, p := range dst[:k] {
			if p != benchPtrs[i&benchMask] {
				bad++
			}
			i++
		}
	}
	report(b, bad)
}

func benchBatchedIdx(b *testing.B, r *idxRing[int]) {
	n := b.N
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		spin := 0
		for i := 0; i < n; {
			m := min(benchBatch, n-i)
			k := r.ProduceBatch(benchPtrs[i&benchMask : i&benchMask+m])
			if k == 0 {
				backoff(&spin)
			}
			i += k
		}
	}()
	var dst [benchBatch]*int
	bad, spin := 0, 0
	for i := 0; i < n; {
		k := r.ConsumeBatch(dst[:])
		if k == 0 {
			backoff(&spin)
			continue
		}
		for _, p := range dst[:k] {
			if p != benchPtrs[i&benchMask] {
				bad++
			}
			i++
		}
	}
	report(b, bad)
}

func benchBatchedSlot(b *testing.B, r *slotRing[int]) {
	n := b.N
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		spin := 0
		for i := 0; i < n; {
			m := min(benchBatch, n-i)
			k := r.ProduceBatch(benchPtrs[i&benchMask : i&benchMask+m])
			if k == 0 {
				backoff(&spin)
			}
			i += k
		}
	}()
	var dst [benchBatch]*int
	bad, spin := 0, 0
	for i := 0; i < n; {
		k := r.ConsumeBatch(dst[:])
		if k == 0 {
			backoff(&spin)
			continue
		}
		for _, p := range dst[:k] {
			if p != benchPtrs[i&benchMask] {
				bad++
			}
			i++
		}
	}
	report(b, bad)
}

// Package ptrringpeers measures ptrring.Ring against published lock-free queues, with the
// harness of ptrring's own benchmarks: a producer goroutine moves b.N pointers to the
// benchmark goroutine, which checks that the i-th item received is the i-th sent.
package ptrringpeers

import (
	"runtime"
	"testing"

	wq "github.com/Workiva/go-datastructures/queue"

	"github.com/vhostd/vhostd/ptrring"
)

const (
	ringSize = 1024
	batch    = 32
	itemN    = 4096
	itemMask = itemN - 1
)

var (
	items [itemN]int
	ptrs  = func() []*int {
		p := make([]*int, itemN+batch)
		for i := range p {
			p[i] = &items[i&itemMask]
		}
		return p
	}()
)

// backoff is ptrring's benchmark backoff: a short pause that does not touch shared
// memory, and a yield every 64 failures.
func backoff(spin *int) {
	if *spin++; *spin&63 == 0 {
		runtime.Gosched()
		return
	}
	for i := 0; i < 300; i++ {
		backoffSink++
	}
}

var backoffSink int

func report(b *testing.B, bad int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/item")
	if bad != 0 {
		b.Fatalf("%d of %d items arrived out of place", bad, b.N)
	}
}

func newRing(b *testing.B) *ptrring.Ring[int] {
	r, err := ptrring.New[int](ringSize)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func BenchmarkBatch1(b *testing.B) {
	b.Run("impl=ptrring", func(b *testing.B) {
		r := newRing(b)
		n := b.N
		b.ReportAllocs()
		b.ResetTimer()
		go func() {
			spin := 0
			for i := 0; i < n; i++ {
				for !r.Produce(ptrs[i&itemMask]) {
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
			if p != ptrs[i&itemMask] {
				bad++
			}
			i++
		}
		report(b, bad)
	})
	b.Run("impl=workiva-ringbuffer", func(b *testing.B) {
		// Bounded MPMC ring (Vyukov's design) storing interface{}; a pointer in an
		// interface does not allocate. Offer is the non-blocking put; Get spins with
		// runtime.Gosched while empty.
		q := wq.NewRingBuffer(ringSize)
		n := b.N
		b.ReportAllocs()
		b.ResetTimer()
		go func() {
			spin := 0
			for i := 0; i < n; i++ {
				for {
					ok, err := q.Offer(ptrs[i&itemMask])
					if err != nil {
						panic(err)
					}
					if ok {
						break
					}
					backoff(&spin)
				}
			}
		}()
		bad := 0
		for i := 0; i < n; i++ {
			v, err := q.Get()
			if err != nil {
				b.Fatal(err)
			}
			if v.(*int) != ptrs[i&itemMask] {
				bad++
			}
		}
		report(b, bad)
	})
	b.Run("impl=chan", func(b *testing.B) {
		c := make(chan *int, ringSize)
		n := b.N
		b.ReportAllocs()
		b.ResetTimer()
		go func() {
			for i := 0; i < n; i++ {
				c <- ptrs[i&itemMask]
			}
		}()
		bad := 0
		for i := 0; i < n; i++ {
			if <-c != ptrs[i&itemMask] {
				bad++
			}
		}
		report(b, bad)
	})
}

func BenchmarkBatch32(b *testing.B) {
	b.Run("impl=ptrring", func(b *testing.B) {
		r := newRing(b)
		n := b.N
		b.ReportAllocs()
		b.ResetTimer()
		go func() {
			spin := 0
			for i := 0; i < n; {
				k := r.ProduceBatch(ptrs[i&itemMask : i&itemMask+min(batch, n-i)])
				if k == 0 {
					backoff(&spin)
				}
				i += k
			}
		}()
		var dst [batch]*int
		bad, spin := 0, 0
		for i := 0; i < n; {
			k := r.ConsumeBatch(dst[:])
			if k == 0 {
				backoff(&spin)
				continue
			}
			for _, p := range dst[:k] {
				if p != ptrs[i&itemMask] {
					bad++
				}
				i++
			}
		}
		report(b, bad)
	})
	b.Run("impl=workiva-ringbuffer", func(b *testing.B) {
		// No batch API: a batch is 32 Offers and 32 Gets.
		q := wq.NewRingBuffer(ringSize)
		n := b.N
		b.ReportAllocs()
		b.ResetTimer()
		go func() {
			spin := 0
			for i := 0; i < n; {
				m := min(batch, n-i)
				for _, p := range ptrs[i&itemMask : i&itemMask+m] {
					for {
						ok, err := q.Offer(p)
						if err != nil {
							panic(err)
						}
						if ok {
							break
						}
						backoff(&spin)
					}
				}
				i += m
			}
		}()
		var dst [batch]*int
		bad := 0
		for i := 0; i < n; {
			m := min(batch, n-i)
			for j := range dst[:m] {
				v, err := q.Get()
				if err != nil {
					b.Fatal(err)
				}
				dst[j] = v.(*int)
			}
			for _, p := range dst[:m] {
				if p != ptrs[i&itemMask] {
					bad++
				}
				i++
			}
		}
		report(b, bad)
	})
	b.Run("impl=chan-slices", func(b *testing.B) {
		const depth = ringSize / batch
		c := make(chan []*int, depth)
		bufs := make([][]*int, depth+2) // see ptrring's bench_test.go for why depth+2
		for i := range bufs {
			bufs[i] = make([]*int, batch)
		}
		n := b.N
		b.ReportAllocs()
		b.ResetTimer()
		go func() {
			for i, k := 0, 0; i < n; k++ {
				m := min(batch, n-i)
				buf := bufs[k%len(bufs)][:m]
				copy(buf, ptrs[i&itemMask:])
				c <- buf
				i += m
			}
		}()
		bad := 0
		for i := 0; i < n; {
			for _, p := range <-c {
				if p != ptrs[i&itemMask] {
					bad++
				}
				i++
			}
		}
		report(b, bad)
	})
}

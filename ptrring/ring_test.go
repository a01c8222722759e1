package ptrring

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/vhostd/vhostd/internal/testutil"
)

func mustNew[T any](t testing.TB, size int) *Ring[T] {
	t.Helper()
	r, err := New[T](size)
	if err != nil {
		t.Fatalf("New(%d): %v", size, err)
	}
	return r
}

// vals returns n distinct items whose values are 1..n.
func vals(n int) []*int {
	s := make([]*int, n)
	for i := range s {
		v := i + 1
		s[i] = &v
	}
	return s
}

func TestNewSizes(t *testing.T) {
	for _, tc := range []struct {
		size int
		ok   bool
	}{
		{-1, false}, {0, false}, {1, true}, {2, true}, {3, false}, {4, true},
		{6, false}, {1000, false}, {1024, true}, {MaxSize, true}, {MaxSize + 1, false},
		{MaxSize * 2, false},
	} {
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			if tc.size == MaxSize {
				t.Skip("8 GiB allocation")
			}
			r, err := New[int](tc.size)
			if tc.ok != (err == nil) {
				t.Fatalf("New(%d) err = %v, want ok=%v", tc.size, err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrSize) {
					t.Fatalf("error %v does not wrap ErrSize", err)
				}
				return
			}
			if r.Cap() != tc.size || r.Full() || !r.Empty() {
				t.Fatalf("new ring: Cap %d Full %v Empty %v", r.Cap(), r.Full(), r.Empty())
			}
		})
	}
}

func TestLayout(t *testing.T) {
	var r Ring[int]
	offs := []uintptr{0, unsafe.Offsetof(r.slots), unsafe.Offsetof(r.tail),
		unsafe.Offsetof(r.next), unsafe.Offsetof(r.head), unsafe.Sizeof(r)}
	for i := 1; i < len(offs); i++ {
		if offs[i]-offs[i-1] < padSize {
			t.Fatalf("state groups at offsets %v: closer than %d bytes", offs, padSize)
		}
	}
}

func TestSequential(t *testing.T) {
	for _, size := range []int{1, 2, 4, 8, 64, 128} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			r := mustNew[int](t, size)
			items := vals(size*5 + 1)
			next := 0 // next value expected out
			in := 0
			for round := 0; round < 5; round++ {
				// Fill to full.
				for r.Produce(items[in]) {
					in++
				}
				if got := in - next; got != size {
					t.Fatalf("round %d: ring took %d items before full, want %d", round, got, size)
				}
				if r.Produce(items[0]) {
					t.Fatal("Produce succeeded on a full ring")
				}
				if !r.Full() || r.Empty() {
					t.Fatalf("full ring: Full %v Empty %v", r.Full(), r.Empty())
				}
				if p := r.Peek(); p == nil || *p != next+1 {
					t.Fatalf("Peek = %v, want %d", p, next+1)
				}
				// Drain to empty.
				for {
					p := r.Consume()
					if p == nil {
						break
					}
					next++
					if *p != next {
						t.Fatalf("Consume = %d, want %d", *p, next)
					}
				}
				if next != in {
					t.Fatalf("drained to %d, produced %d", next, in)
				}
				if !r.Empty() || r.Peek() != nil || r.Full() {
					t.Fatalf("after drain: Empty %v Peek %v Full %v", r.Empty(), r.Peek(), r.Full())
				}
				checkInvariant(t, r)
			}
		})
	}
}

// TestInterleaved alternates single produce and consume so head and tail cross every slot
// boundary, including releases deferred by Consume.
func TestInterleaved(t *testing.T) {
	for _, size := range []int{1, 2, 8, 64} {
		r := mustNew[int](t, size)
		items := vals(1000)
		out := 0
		for in := 0; in < len(items); {
			for k := 0; k <= in%3 && in < len(items); k++ {
				if !r.Produce(items[in]) {
					break
				}
				in++
			}
			checkInvariant(t, r)
			for k := 0; k <= in%2; k++ {
				p := r.Consume()
				if p == nil {
					break
				}
				out++
				if *p != out {
					t.Fatalf("size %d: got %d want %d", size, *p, out)
				}
			}
		}
		for p := r.Consume(); p != nil; p = r.Consume() {
			out++
			if *p != out {
				t.Fatalf("size %d: got %d want %d", size, *p, out)
			}
		}
		if out != len(items) {
			t.Fatalf("size %d: consumed %d of %d", size, out, len(items))
		}
	}
}

// TestDeferredRelease checks that slots read by Consume but not yet released come back to
// the producer when the consumer finds the ring empty.
// checkInvariant checks what the consumer relies on: the slots holding items are non-nil
// and the slot after the last item is nil.
func checkInvariant[T any](t *testing.T, r *Ring[T]) {
	t.Helper()
	for i := r.next; i < r.tail; i++ {
		if r.slots[i&r.mask] == nil {
			t.Fatalf("item %d (slot %d) is nil; next %d tail %d", i, i&r.mask, r.next, r.tail)
		}
	}
	if r.slots[r.tail&r.mask] != nil {
		t.Fatalf("slot after the last item (%d) is not empty", r.tail&r.mask)
	}
	if r.tail-r.next > r.size {
		t.Fatalf("%d items in a ring of %d", r.tail-r.next, r.size)
	}
}

func TestDeferredRelease(t *testing.T) {
	r := mustNew[int](t, 64) // release every 16
	items := vals(64)
	if n := r.ProduceBatch(items); n != 64 {
		t.Fatalf("ProduceBatch = %d", n)
	}
	for i := 0; i < 5; i++ {
		r.Consume()
	}
	if r.Produce(items[0]) {
		t.Fatal("producer reused a slot before the consumer released it")
	}
	if !r.Full() {
		t.Fatal("Full = false with 5 read and not released")
	}
	for i := 0; i < 11; i++ {
		r.Consume()
	}
	if n := r.ProduceBatch(items); n != 16 {
		t.Fatalf("after 16 consumed ProduceBatch = %d, want 16", n)
	}
	for r.Consume() != nil {
	}
	if r.Full() {
		t.Fatal("Full after drain")
	}
	if n := r.ProduceBatch(items); n != 64 {
		t.Fatalf("ProduceBatch after drain = %d, want 64", n)
	}
}

func TestBatchEdges(t *testing.T) {
	for _, size := range []int{1, 2, 4, 32, 64} {
		for _, pb := range []int{1, 3, 7, 32, 33, 64} {
			for _, cb := range []int{1, 2, 5, 32, 64} {
				t.Run(fmt.Sprintf("size%d/prod%d/cons%d", size, pb, cb), func(t *testing.T) {
					testBatch(t, size, pb, cb)
				})
			}
		}
	}
}

func testBatch(t *testing.T, size, pb, cb int) {
	r := mustNew[int](t, size)
	items := vals(size*7 + 3)
	dst := make([]*int, cb)
	in, out := 0, 0
	for out < len(items) {
		// Produce a batch; it must take exactly min(free, len).
		if in < len(items) {
			src := items[in:min(in+pb, len(items))]
			// Room is what the consumer has released: all but fewer than release
			// of the items it took.
			held := int(r.next - r.chead)
			if held >= int(r.release) {
				t.Fatalf("consumer holds %d unreleased items, release is %d", held, r.release)
			}
			free := size - (in - out) - held
			n := r.ProduceBatch(src)
			if want := min(free, len(src)); n != want {
				t.Fatalf("ProduceBatch(%d) with %d free = %d, want %d", len(src), free, n, want)
			}
			in += n
		}
		checkInvariant(t, r)
		n := r.ConsumeBatch(dst)
		if want := min(cb, in-out); n != want {
			t.Fatalf("ConsumeBatch(%d) with %d queued = %d, want %d", cb, in-out, n, want)
		}
		for _, p := range dst[:n] {
			out++
			if *p != out {
				t.Fatalf("got %d want %d", *p, out)
			}
		}
	}
	if r.ConsumeBatch(dst) != 0 || r.ProduceBatch(nil) != 0 || r.ConsumeBatch(nil) != 0 {
		t.Fatal("empty batches moved items")
	}
}

// TestWrapInsideBatch places a batch so it straddles the end of the slot array on both
// the produce and the consume side.
func TestWrapInsideBatch(t *testing.T) {
	const size = 8
	for start := 0; start < size; start++ {
		r := mustNew[int](t, size)
		items := vals(start + size)
		dst := make([]*int, size)
		// Move the cursors to start.
		for i := 0; i < start; i++ {
			r.Produce(items[i])
			r.Consume()
		}
		r.Consume() // finds the ring empty: releases what single Consumes held back
		if n := r.ProduceBatch(items[start:]); n != size {
			t.Fatalf("start %d: ProduceBatch = %d", start, n)
		}
		if n := r.ConsumeBatch(dst); n != size {
			t.Fatalf("start %d: ConsumeBatch = %d", start, n)
		}
		for i, p := range dst {
			if *p != start+i+1 {
				t.Fatalf("start %d: dst[%d] = %d, want %d", start, i, *p, start+i+1)
			}
		}
	}
}

func TestNilItem(t *testing.T) {
	r := mustNew[int](t, 4)
	one := vals(1)[0]
	mustPanic(t, "Produce(nil)", func() { r.Produce(nil) })
	mustPanic(t, "ProduceBatch with nil", func() { r.ProduceBatch([]*int{one, nil}) })
	if !r.Empty() {
		t.Fatalf("a batch with a nil item appended items")
	}
	// A nil late in a batch that wraps the slot array: nothing of it is seen.
	w := mustNew[int](t, 4) // 8 slots
	its := vals(12)
	for i := 0; i < 6; i++ {
		w.Produce(its[i])
		w.Consume()
	}
	mustPanic(t, "wrapping ProduceBatch with nil", func() {
		w.ProduceBatch([]*int{its[6], its[7], its[8], nil})
	})
	if !w.Empty() {
		t.Fatal("consumer sees part of a batch that panicked")
	}
	if n := w.ProduceBatch(its[8:12]); n != 4 {
		t.Fatalf("ProduceBatch after panic = %d", n)
	}
	for i := 8; i < 12; i++ {
		if p := w.Consume(); p == nil || *p != i+1 {
			t.Fatalf("got %v, want %d", p, i+1)
		}
	}
	// A nil beyond what fits is not looked at.
	r.ProduceBatch([]*int{one, one, one})
	if n := r.ProduceBatch([]*int{one, nil}); n != 1 {
		t.Fatalf("ProduceBatch = %d, want 1", n)
	}
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s did not panic", what)
		}
	}()
	f()
}

func TestZeroAllocs(t *testing.T) {
	r := mustNew[int](t, 64)
	items := vals(32)
	dst := make([]*int, 32)
	if a := testing.AllocsPerRun(1000, func() {
		r.Produce(items[0])
		r.Consume()
	}); a != 0 {
		t.Fatalf("Produce+Consume: %v allocs per run", a)
	}
	if a := testing.AllocsPerRun(1000, func() {
		r.ProduceBatch(items)
		r.ConsumeBatch(dst)
		r.Peek()
		r.Empty()
		r.Full()
	}); a != 0 {
		t.Fatalf("batches: %v allocs per run", a)
	}
}

// TestStress moves 1..N from one goroutine to another through small rings with mixed
// single and batch calls, checking order and completeness.
func TestStress(t *testing.T) {
	full := 2_000_000
	if testing.Short() || testutil.Race {
		full = 100_000
	}
	items := vals(full)
	for _, size := range []int{1, 2, 16, 256} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			n := full
			if size <= 2 {
				n /= 8 // every item is a hand-off between the two goroutines
			}
			r := mustNew[int](t, size)
			done := make(chan error, 1)
			go func() {
				spin := 0
				for in := 0; in < n; {
					var k int
					if in%5 == 0 {
						k = r.ProduceBatch(items[in:min(in+1+in%37, n)])
					} else if r.Produce(items[in]) {
						k = 1
					}
					in += k
					if k == 0 {
						stressBackoff(&spin)
					}
				}
				done <- nil
			}()
			dst := make([]*int, 40)
			deadline := time.Now().Add(2 * time.Minute)
			spin := 0
			for out := 0; out < n; {
				var got []*int
				if out%3 == 0 {
					got = dst[:r.ConsumeBatch(dst[:1+out%40])]
				} else if p := r.Consume(); p != nil {
					dst[0] = p
					got = dst[:1]
				}
				if len(got) == 0 && stressBackoff(&spin) && time.Now().After(deadline) {
					t.Fatalf("stalled after %d of %d items", out, n)
				}
				for _, p := range got {
					out++
					if *p != out {
						t.Fatalf("item %d arrived as %d", out, *p)
					}
				}
			}
			<-done
			if p := r.Consume(); p != nil {
				t.Fatalf("extra item %d", *p)
			}
		})
	}
}

// stressBackoff yields every 64 failed attempts and sleeps every 4096, so that on a
// machine with other work the side that waits gives its core to the side it waits for.
// It reports whether it yielded.
func stressBackoff(spin *int) bool {
	*spin++
	switch {
	case *spin%4096 == 0:
		time.Sleep(10 * time.Microsecond)
	case *spin%64 == 0:
		runtime.Gosched()
	default:
		return false
	}
	return true
}

// TestBatchRelease checks when ConsumeBatch hands slots back: after 128 unreleased items
// on a large ring, or at once when it comes up short.
func TestBatchRelease(t *testing.T) {
	r := mustNew[int](t, 1024)
	items := vals(1024)
	dst := make([]*int, 32)
	if n := r.ProduceBatch(items); n != 1024 {
		t.Fatalf("ProduceBatch = %d", n)
	}
	for i := 0; i < 3; i++ {
		r.ConsumeBatch(dst)
		if !r.Full() {
			t.Fatalf("%d items released before the release threshold", 32*(i+1))
		}
	}
	r.ConsumeBatch(dst)
	if r.Full() {
		t.Fatal("128 consumed items not released")
	}
	if n := r.ProduceBatch(items[:128]); n != 128 {
		t.Fatalf("ProduceBatch after release = %d, want 128", n)
	}
	for r.ConsumeBatch(dst[:5]) == 5 {
	}
	if n := r.ProduceBatch(items); n != 1024 {
		t.Fatalf("after a short batch ProduceBatch = %d, want 1024", n)
	}
}

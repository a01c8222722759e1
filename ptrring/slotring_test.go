package ptrring

import "sync/atomic"

// slotRing is the design Ring was measured against and did not keep (see doc.go): Linux
// ptr_ring's "an empty slot is the signal". There are no shared indices at all; the
// producer owns its cursor and stores into a slot only when it reads nil there, the
// consumer owns its cursor and takes a slot when it reads non-nil, and frees the slots it
// read in groups, last first, so the producer does not start writing into a cache line the
// consumer is still reading. It lives in a test file so the comparison benchmarks can be
// rerun.
type slotRing[T any] struct {
	_     [padSize]byte
	slots []atomic.Pointer[T]
	mask  int
	batch int
	_     [padSize - 40]byte
	prod  int
	_     [padSize - 8]byte
	head  int // next slot to read
	tail  int // first slot read but not yet freed
	_     [padSize - 16]byte
}

func newSlotRing[T any](size int) *slotRing[T] {
	r := &slotRing[T]{slots: make([]atomic.Pointer[T], size), mask: size - 1}
	r.batch = maxRelease
	if r.batch > size/2 {
		r.batch = 1
	}
	return r
}

func (r *slotRing[T]) Produce(x *T) bool {
	s := &r.slots[r.prod]
	if s.Load() != nil {
		return false
	}
	s.Store(x)
	r.prod = (r.prod + 1) & r.mask
	return true
}

func (r *slotRing[T]) ProduceBatch(src []*T) int {
	for i, x := range src {
		if !r.Produce(x) {
			return i
		}
	}
	return len(src)
}

func (r *slotRing[T]) Consume() *T {
	x := r.slots[r.head].Load()
	if x == nil {
		return nil
	}
	r.discard(1)
	return x
}

func (r *slotRing[T]) ConsumeBatch(dst []*T) int {
	// One slot at a time, as ptr_ring's consume_batched does: discard frees the slots
	// read so far before the cursor wraps, so the cursor never meets a slot it read but
	// did not free.
	for i := range dst {
		x := r.slots[r.head].Load()
		if x == nil {
			return i
		}
		dst[i] = x
		r.discard(1)
	}
	return len(dst)
}

// discard marks k more slots read; 0 < k <= len(slots)-head.
func (r *slotRing[T]) discard(k int) {
	r.head += k
	if r.head-r.tail >= r.batch || r.head >= len(r.slots) {
		for i := r.head - 1; i >= r.tail; i-- {
			r.slots[i].Store(nil)
		}
		if r.head >= len(r.slots) {
			r.head = 0
		}
		r.tail = r.head
	}
}

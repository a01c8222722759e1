package ptrring

import "sync/atomic"

// idxRing is the second design Ring was measured against (see doc.go): a Lamport ring
// with free-running head and tail indices, each side caching the other's index and
// publishing its own once per batch (single Consume calls release every min(16, size/4)),
// slots plain. The consumer learns of new items by loading tail and never writes slots.
// It lives in a test file so the comparison benchmarks can be rerun.
type idxRing[T any] struct {
	_ [padSize]byte

	// Read-only after New; read by both sides, so it sits on lines nobody writes.
	slots   []*T
	mask    uint64
	release uint64 // Consume publishes head after this many unreleased items
	_       [padSize - 40]byte

	// Producer-private: only the producer reads or writes these.
	ptail     uint64 // the producer's copy of tail
	headCache uint64 // producer's last load of head; never ahead of the real head
	_         [padSize - 16]byte

	// Published by the producer. tail counts items ever produced; only the producer
	// stores it, the consumer loads it when its cached copy says the ring is empty. The
	// Store in Produce/ProduceBatch pairs with the Load in Consume/ConsumeBatch/Peek: it
	// publishes the slot writes that precede it.
	tail atomic.Uint64
	_    [padSize - 8]byte

	// Consumer-private: only the consumer reads or writes these.
	next      uint64 // consumer's cursor: slots in [chead, next) are read but not released
	chead     uint64 // the consumer's copy of head
	tailCache uint64 // consumer's last load of tail; never ahead of the real tail
	_         [padSize - 24]byte

	// Published by the consumer. head counts slots released to the producer; only the
	// consumer stores it, the producer loads it when its cached copy says the ring is
	// full. The Store in release pairs with the Load in Produce/ProduceBatch: it
	// publishes that the slots before head were read, so the producer may
	// overwrite them.
	head atomic.Uint64
	_    [padSize - 8]byte
}

func newIdxRing[T any](size int) *idxRing[T] {
	r := &idxRing[T]{slots: make([]*T, size), mask: uint64(size - 1)}
	r.release = uint64(min(maxRelease, max(1, size/4)))
	return r
}

// Cap returns the number of slots, the size given to New.
func (r *idxRing[T]) Cap() int { return len(r.slots) }

// Len returns an approximate count of items in the ring: produced and not yet released by
// the consumer. It may count up to 15 items that Consume has already returned (releases are
// batched) and is stale by the time it returns; use it for statistics, not for control.
// Safe from any goroutine.
func (r *idxRing[T]) Len() int {
	h := r.head.Load()
	t := r.tail.Load()
	if t < h { // tail loaded after head, so this cannot happen; stay defensive
		return 0
	}
	return int(t - h)
}

// Produce appends x and reports whether there was room. It never blocks and never
// allocates. Producer only. It panics if x is nil.
func (r *idxRing[T]) Produce(x *T) bool {
	if x == nil {
		panic(errNil)
	}
	t := r.ptail
	size := r.mask + 1
	if t-r.headCache == size {
		r.headCache = r.head.Load()
		if t-r.headCache == size {
			return false
		}
	}
	r.slots[t&r.mask] = x
	r.ptail = t + 1
	r.tail.Store(t + 1)
	return true
}

// ProduceBatch appends as many items from the front of src as fit and returns how many it
// appended (0 when full); src[n:] were not taken. The items become visible to the consumer
// together, with one publication. The ring keeps copies of the pointers, not of src.
// Producer only. It panics, before appending anything, if one of the items that would be
// appended is nil.
func (r *idxRing[T]) ProduceBatch(src []*T) int {
	t := r.ptail
	size := r.mask + 1
	free := size - (t - r.headCache)
	if free < uint64(len(src)) {
		r.headCache = r.head.Load()
		free = size - (t - r.headCache)
	}
	n := int(min(free, uint64(len(src))))
	if n == 0 {
		return 0
	}
	src = src[:n]
	for _, x := range src {
		if x == nil {
			panic(errNil)
		}
	}
	i := int(t & r.mask)
	k := copy(r.slots[i:], src)
	copy(r.slots, src[k:])
	r.ptail = t + uint64(n)
	r.tail.Store(r.ptail)
	return n
}

// Consume removes and returns the oldest item, or nil if the ring is empty. It never blocks
// and never allocates. Consumer only.
//
// Slots are handed back to the producer in groups (every min(16, Cap/4) items, at least 1),
// and always when Consume finds the ring empty, so a producer that sees a full ring makes
// progress as long as the consumer keeps polling.
func (r *idxRing[T]) Consume() *T {
	n := r.next
	if n == r.tailCache {
		r.tailCache = r.tail.Load()
		if n == r.tailCache {
			r.flush()
			return nil
		}
	}
	i := n & r.mask
	x := r.slots[i]
	r.slots[i] = nil // do not keep consumed items reachable
	n++
	r.next = n
	if n-r.chead >= r.release {
		r.chead = n
		r.head.Store(n)
	}
	return x
}

// ConsumeBatch moves up to len(dst) of the oldest items into dst[:n] and returns n (0 when
// the ring is empty). The slots are released to the producer before it returns.
// Consumer only.
func (r *idxRing[T]) ConsumeBatch(dst []*T) int {
	n := r.next
	avail := r.tailCache - n
	if avail < uint64(len(dst)) {
		r.tailCache = r.tail.Load()
		avail = r.tailCache - n
	}
	k := int(min(avail, uint64(len(dst))))
	if k == 0 {
		r.flush()
		return 0
	}
	i := int(n & r.mask)
	first := min(k, len(r.slots)-i)
	copy(dst, r.slots[i:i+first])
	copy(dst[first:k], r.slots[:k-first])
	n += uint64(k)
	r.next = n
	r.chead = n
	r.head.Store(n)
	return k
}

// Peek returns the oldest item without removing it, or nil if the ring is empty.
// Consumer only.
func (r *idxRing[T]) Peek() *T {
	n := r.next
	if n == r.tailCache {
		r.tailCache = r.tail.Load()
		if n == r.tailCache {
			r.flush()
			return nil
		}
	}
	return r.slots[n&r.mask]
}

// Empty reports whether the consumer would find nothing to consume right now. A false
// answer stays true-to-life until the consumer consumes (the producer only adds); a true
// answer can be stale at once. Consumer only.
func (r *idxRing[T]) Empty() bool {
	return r.Peek() == nil
}

// flush publishes the consumer's cursor so the producer can reuse every slot read so far.
func (r *idxRing[T]) flush() {
	if r.chead != r.next {
		r.chead = r.next
		r.head.Store(r.next)
	}
}

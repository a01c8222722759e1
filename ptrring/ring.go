package ptrring

import (
	"errors"
	"fmt"
	"sync/atomic"
)

const (
	// padSize separates producer-owned, consumer-owned and read-only state. A cache line is
	// 64 bytes on amd64 and arm64; we pad to two lines because Intel's adjacent-line
	// prefetcher (and AMD's equivalent) pulls lines in 128-byte aligned pairs, which would
	// otherwise make neighbours on one pair share.
	padSize = 128

	// MaxSize is the largest ring New accepts: 2^30 slots of 8 bytes is 8 GiB, far past any
	// sensible queue, and keeps every index computation well inside uint64.
	MaxSize = 1 << 30

	// maxRelease is how many single Consume calls may pass before the consumer publishes
	// its index: 16 slots of 8 bytes are two cache lines, the figure ptr_ring uses for the
	// same purpose (SMP_CACHE_BYTES * 2 / sizeof(void *)).
	maxRelease = 16
)

// ErrSize is returned by New for a size that is not a power of two in [1, MaxSize]. The
// caller should round its configured size up (or down) to a power of two.
var ErrSize = errors.New("ptrring: size must be a power of two between 1 and 2^30")

// errNil is the panic value for a nil item: nil is what Consume returns on an empty ring,
// so a nil item could never be told apart from "nothing there".
var errNil = errors.New("ptrring: nil item produced")

// Ring is a bounded single-producer, single-consumer queue of non-nil *T.
//
// One goroutine at a time may call the producer methods (Produce, ProduceBatch) and one
// goroutine at a time may call the consumer methods (Consume, ConsumeBatch, Peek, Empty).
// Handing either role to another goroutine needs a happens-before edge (a mutex, a channel,
// busypoll's Pause). Cap and Len may be called from any goroutine.
//
// The zero Ring is not usable; build one with New.
type Ring[T any] struct {
	_ [padSize]byte

	// Read-only after New; read by both sides, so it sits on lines nobody writes.
	slots   []*T
	mask    uint64
	release uint64 // Consume publishes head after this many unreleased items
	_       [padSize - 40]byte

	// Producer-owned. tail counts items ever produced; only the producer stores it, the
	// consumer loads it when its cached copy says the ring is empty. The Store in
	// Produce/ProduceBatch pairs with the Load in Consume/ConsumeBatch/Peek/Empty: it
	// publishes the slot writes that precede it.
	tail      atomic.Uint64
	headCache uint64 // producer's last load of head; never ahead of the real head
	_         [padSize - 16]byte

	// Consumer-owned. head counts slots released to the producer; only the consumer
	// stores it, the producer loads it when its cached copy says the ring is full. The
	// Store in release pairs with the Load in Produce/ProduceBatch: it publishes that the
	// slots before head were read and cleared, so the producer may overwrite them.
	head      atomic.Uint64
	next      uint64 // consumer's cursor: slots in [head, next) are read but not released
	tailCache uint64 // consumer's last load of tail; never ahead of the real tail
	_         [padSize - 24]byte
}

// New returns an empty ring with room for size items. size must be a power of two between
// 1 and MaxSize; otherwise New returns an error wrapping ErrSize. All the memory the ring
// will ever use is allocated here.
func New[T any](size int) (*Ring[T], error) {
	if size < 1 || size > MaxSize || size&(size-1) != 0 {
		return nil, fmt.Errorf("ptrring: new ring of %d: %w", size, ErrSize)
	}
	r := &Ring[T]{
		slots: make([]*T, size),
		mask:  uint64(size - 1),
	}
	// Defer releases only when the ring is large enough that holding them back does not
	// make the producer see "full" early in a way that matters (ptr_ring's rule: at most
	// half the ring).
	r.release = uint64(min(maxRelease, max(1, size/4)))
	return r, nil
}

// Cap returns the number of slots, the size given to New.
func (r *Ring[T]) Cap() int { return len(r.slots) }

// Len returns an approximate count of items in the ring: produced and not yet released by
// the consumer. It may count up to 15 items that Consume has already returned (releases are
// batched) and is stale by the time it returns; use it for statistics, not for control.
// Safe from any goroutine.
func (r *Ring[T]) Len() int {
	h := r.head.Load()
	t := r.tail.Load()
	if t < h { // tail loaded after head, so this cannot happen; stay defensive
		return 0
	}
	return int(t - h)
}

// Produce appends x and reports whether there was room. It never blocks and never
// allocates. Producer only. It panics if x is nil.
func (r *Ring[T]) Produce(x *T) bool {
	if x == nil {
		panic(errNil)
	}
	t := r.tail.Load()
	size := r.mask + 1
	if t-r.headCache == size {
		r.headCache = r.head.Load()
		if t-r.headCache == size {
			return false
		}
	}
	r.slots[t&r.mask] = x
	r.tail.Store(t + 1)
	return true
}

// ProduceBatch appends as many items from the front of src as fit and returns how many it
// appended (0 when full); src[n:] were not taken. The items become visible to the consumer
// together, with one publication. The ring keeps copies of the pointers, not of src.
// Producer only. It panics, before appending anything, if one of the items that would be
// appended is nil.
func (r *Ring[T]) ProduceBatch(src []*T) int {
	t := r.tail.Load()
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
	r.tail.Store(t + uint64(n))
	return n
}

// Consume removes and returns the oldest item, or nil if the ring is empty. It never blocks
// and never allocates. Consumer only.
//
// Slots are handed back to the producer in groups (every min(16, Cap/4) items, at least 1),
// and always when Consume finds the ring empty, so a producer that sees a full ring makes
// progress as long as the consumer keeps polling.
func (r *Ring[T]) Consume() *T {
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
	if n-r.head.Load() >= r.release {
		r.head.Store(n)
	}
	return x
}

// ConsumeBatch moves up to len(dst) of the oldest items into dst[:n] and returns n (0 when
// the ring is empty). The slots are released to the producer before it returns.
// Consumer only.
func (r *Ring[T]) ConsumeBatch(dst []*T) int {
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
	clear(r.slots[i : i+first])
	copy(dst[first:k], r.slots[:k-first])
	clear(r.slots[:k-first])
	n += uint64(k)
	r.next = n
	r.head.Store(n)
	return k
}

// Peek returns the oldest item without removing it, or nil if the ring is empty.
// Consumer only.
func (r *Ring[T]) Peek() *T {
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
func (r *Ring[T]) Empty() bool {
	return r.Peek() == nil
}

// flush publishes the consumer's cursor so the producer can reuse every slot read so far.
func (r *Ring[T]) flush() {
	if r.head.Load() != r.next {
		r.head.Store(r.next)
	}
}

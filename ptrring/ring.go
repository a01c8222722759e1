package ptrring

import (
	"errors"
	"fmt"
	"sync/atomic"
)

const (
	// padSize separates producer-owned, consumer-owned and read-only state. A cache line is
	// 64 bytes on amd64 and arm64; we pad to two lines because the adjacent-line
	// prefetchers of current x86 cores pull lines in 128-byte aligned pairs, which would
	// otherwise make neighbours on one pair share.
	padSize = 128

	// MaxSize is the largest ring New accepts: 2^28 items take 2^29 slots of 8 bytes, 4 GiB,
	// far past any sensible queue.
	MaxSize = 1 << 28

	// maxRelease is how many items the consumer may hold back before it publishes its
	// index: 128 slots of 8 bytes are 16 cache lines. ptr_ring frees 16 (two lines) at a
	// time because its consumer writes every slot it frees; ours writes only head, and
	// publishing it less often measured better up to 128 (doc.go).
	maxRelease = 128
)

// ErrSize is returned by New for a size that is not a power of two in [1, MaxSize]. The
// caller should round its configured size up (or down) to a power of two.
var ErrSize = errors.New("ptrring: size must be a power of two between 1 and 2^28")

// errNil is the panic value for a nil item: an empty slot is how the consumer knows there
// is nothing to take, so a nil item can never be queued.
var errNil = errors.New("ptrring: nil item produced")

// Ring is a bounded single-producer, single-consumer queue of non-nil *T.
//
// One goroutine at a time may call the producer methods (Produce, ProduceBatch, Full) and
// one goroutine at a time may call the consumer methods (Consume, ConsumeBatch, Peek,
// Empty). Handing either role to another goroutine needs a happens-before edge (a mutex, a
// channel, busypoll's Pause). Cap may be called from any goroutine.
//
// The ring keeps the pointers of up to 2*Cap consumed items until the producer overwrites
// their slots; items that must become garbage sooner should not go through a ring.
//
// The zero Ring is not usable; build one with New.
type Ring[T any] struct {
	_ [padSize]byte

	// Read-only after New; read by both sides, so it sits on lines nobody writes. The
	// slot contents are shared: see slot_unsafe.go for the protocol.
	slots   []*T   // 2*size slots: see slot_unsafe.go for why twice the capacity
	mask    uint64 // len(slots) - 1
	size    uint64 // capacity in items
	release uint64 // the consumer publishes head once this many items are unreleased
	_       [padSize - 48]byte

	// Producer-private: only the producer reads or writes these.
	tail      uint64 // items ever produced; the next slot to fill is tail&mask
	headCache uint64 // the producer's last load of head; never ahead of the real head
	_         [padSize - 16]byte

	// Consumer-private: only the consumer reads or writes these.
	next  uint64 // items ever consumed; items in [chead, next) are read but not released
	chead uint64 // the consumer's copy of head
	_     [padSize - 16]byte

	// Published by the consumer. head counts items handed back to the producer; only the
	// consumer stores it (release), the producer loads it when headCache says the ring is
	// full. The Store pairs with that Load: it tells the producer that the consumer is
	// done reading the slots before head, so the producer may fill them again.
	head atomic.Uint64
	_    [padSize - 8]byte
}

// New returns an empty ring with room for size items. size must be a power of two between
// 1 and MaxSize; otherwise New returns an error wrapping ErrSize. All the memory the ring
// will ever use (2*size pointers and a few cache lines) is allocated here.
func New[T any](size int) (*Ring[T], error) {
	if size < 1 || size > MaxSize || size&(size-1) != 0 {
		return nil, fmt.Errorf("ptrring: new ring of %d: %w", size, ErrSize)
	}
	r := &Ring[T]{
		slots: make([]*T, 2*size),
		mask:  uint64(2*size - 1),
		size:  uint64(size),
	}
	// Holding releases back must not make the producer see "full" early in a way that
	// matters: at most a quarter of the ring (ptr_ring allows half).
	r.release = uint64(min(maxRelease, max(1, size/4)))
	return r, nil
}

// Cap returns the capacity in items, the size given to New.
func (r *Ring[T]) Cap() int { return int(r.size) }

// Full reports whether Produce would fail now. Producer only.
func (r *Ring[T]) Full() bool {
	if r.tail-r.headCache < r.size {
		return false
	}
	r.headCache = r.head.Load()
	return r.tail-r.headCache == r.size
}

// Produce appends x and reports whether there was room. It never blocks and never
// allocates. Producer only. It panics if x is nil.
func (r *Ring[T]) Produce(x *T) bool {
	if x == nil {
		panic(errNil)
	}
	t := r.tail
	if t-r.headCache == r.size {
		r.headCache = r.head.Load()
		if t-r.headCache == r.size {
			return false
		}
	}
	r.slots[(t+1)&r.mask] = nil // the slot after the last item stays empty
	publishSlot(&r.slots[t&r.mask], x)
	r.tail = t + 1
	return true
}

// ProduceBatch appends as many items from the front of src as fit and returns how many it
// appended (0 when full); src[n:] were not taken. The consumer sees the n items together:
// the first is published last. The ring keeps copies of the pointers, not src.
// Producer only. It panics, before appending anything, if one of the items that would be
// appended is nil.
func (r *Ring[T]) ProduceBatch(src []*T) int {
	t := r.tail
	free := r.size - (t - r.headCache)
	if free < uint64(len(src)) {
		r.headCache = r.head.Load()
		free = r.size - (t - r.headCache)
	}
	n := int(min(free, uint64(len(src))))
	if n == 0 {
		return 0
	}
	src = src[:n]
	if src[0] == nil {
		panic(errNil)
	}
	slots, mask := r.slots, r.mask
	i := int(t & mask)
	// Slots after the first, and the empty one after the batch: plain stores, published
	// by the store of the first. A nil found on the way panics before that store, so
	// the consumer sees nothing of the batch.
	if first := len(slots) - i; first < n {
		putSlots(slots[i+1:], src[1:first])
		putSlots(slots[:n-first], src[first:])
	} else {
		putSlots(slots[i+1:i+n], src[1:])
	}
	slots[(t+uint64(n))&mask] = nil
	publishSlot(&slots[i], src[0])
	r.tail = t + uint64(n)
	return n
}

// putSlots copies src into dst (len(dst) == len(src)), panicking at the first nil.
func putSlots[T any](dst, src []*T) {
	dst = dst[:len(src)]
	for j, x := range src {
		if x == nil {
			panic(errNil)
		}
		dst[j] = x
	}
}

// Consume removes and returns the oldest item, or nil if the ring is empty. It never blocks,
// never allocates and never writes to the slots. Consumer only.
//
// Slots go back to the producer in groups: once min(128, Cap/4) (at least 1) items are
// consumed and not yet released, and whenever Consume, ConsumeBatch or Peek finds the ring
// empty. Until then the producer may find the ring full while it holds up to 127 fewer
// items than Cap; a consumer that keeps polling always releases them.
func (r *Ring[T]) Consume() *T {
	n := r.next
	x := loadSlot(&r.slots[n&r.mask])
	if x == nil {
		r.flush()
		return nil
	}
	n++
	r.next = n
	if n-r.chead >= r.release {
		r.chead = n
		r.head.Store(n)
	}
	return x
}

// ConsumeBatch moves up to len(dst) of the oldest items into dst[:n] and returns n (0 when
// the ring is empty). It never allocates and never writes to the slots. It releases slots
// to the producer as Consume does, and also whenever it returns fewer than len(dst).
// Consumer only.
func (r *Ring[T]) ConsumeBatch(dst []*T) int {
	n := r.next
	i := int(n & r.mask)
	k := takeSlots(dst, r.slots[i:])
	if k == len(r.slots)-i && k < len(dst) { // ran off the end of the array: wrap
		k += takeSlots(dst[k:], r.slots)
	}
	if k == 0 {
		r.flush()
		return 0
	}
	n += uint64(k)
	r.next = n
	if n-r.chead >= r.release || k < len(dst) {
		r.chead = n
		r.head.Store(n)
	}
	return k
}

// takeSlots copies the items at the front of slots into dst, stopping at the first empty
// slot or when either slice ends, and returns how many it copied.
func takeSlots[T any](dst, slots []*T) int {
	slots = slots[:min(len(slots), len(dst))]
	for k := range slots {
		x := loadSlot(&slots[k])
		if x == nil {
			return k
		}
		dst[k] = x
	}
	return len(slots)
}

// Peek returns the oldest item without removing it, or nil if the ring is empty.
// Consumer only.
func (r *Ring[T]) Peek() *T {
	x := loadSlot(&r.slots[r.next&r.mask])
	if x == nil {
		r.flush()
	}
	return x
}

// Empty reports whether Consume would return nil now. A false answer stays true until the
// consumer consumes (the producer only adds); a true answer can be stale at once.
// Consumer only.
func (r *Ring[T]) Empty() bool {
	return r.Peek() == nil
}

// flush hands every slot read so far back to the producer.
func (r *Ring[T]) flush() {
	if r.chead != r.next {
		r.chead = r.next
		r.head.Store(r.next)
	}
}

package ptrring

import (
	"sync/atomic"
	"unsafe"
)

// The slot protocol. The consumer learns that an item is there by loading its slot,
// never from a shared index: a slot is nil when it holds no item. It is the producer, not
// the consumer, that empties slots, so the consumer only ever reads slot memory.
//
//   - Invariant: the slot just after the last item (tail&mask) is nil. The ring has 2*Cap
//     slots so that this slot is always one the consumer has finished with (at most Cap
//     items are queued), and a ring of one item still works.
//   - The producer fills slots only below head+Cap (head loaded in Produce/ProduceBatch),
//     so it never writes a slot the consumer may still read from an older lap.
//   - Produce of x at t: plain store of nil to t+1, then publishSlot(t, x). ProduceBatch
//     of n items at t: plain stores to t+1..t+n-1 and of nil to t+n, then publishSlot on
//     t. Until that publishing store the consumer stops at slot t (nil by the invariant),
//     and it reads slot j+1 only after loading slot j non-nil, so every plain store it can
//     observe is ordered before a publishSlot it has loaded.
//   - The consumer reads with loadSlot and writes nothing; releasing head tells the
//     producer it is done with the slots below it.
//
// On amd64 loadSlot compiles to a plain MOV and publishSlot to an XCHG: a batch costs one
// locked instruction on each side (publishSlot, and the consumer's store of head).

// loadSlot loads *s; it pairs with publishSlot.
func loadSlot[T any](s **T) *T {
	return (*T)(atomic.LoadPointer((*unsafe.Pointer)(unsafe.Pointer(s))))
}

// publishSlot stores x into *s, ordering every earlier write of the producer before it.
func publishSlot[T any](s **T, x *T) {
	atomic.StorePointer((*unsafe.Pointer)(unsafe.Pointer(s)), unsafe.Pointer(x))
}

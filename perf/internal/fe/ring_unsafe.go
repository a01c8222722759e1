package fe

import (
	"sync/atomic"
	"unsafe"
)

// The ring words shared with the back-end are read and written with 32-bit
// atomics on 4-aligned words (sync/atomic has no 16-bit operations): the
// avail ring's {flags, idx}, the used ring's {flags, idx}, used_event and
// avail_event (each followed by 2 bytes of padding in the layout vqdriver
// uses). On amd64 an atomic store is an XCHG, a full fence: the store that
// publishes avail.idx orders the ring writes before it and the read of
// avail_event after it.

func word(b []byte, off int) *uint32 {
	_ = b[off+3]
	return (*uint32)(unsafe.Pointer(&b[off]))
}

func load32(b []byte, off int) uint32     { return atomic.LoadUint32(word(b, off)) }
func store32(b []byte, off int, v uint32) { atomic.StoreUint32(word(b, off), v) }

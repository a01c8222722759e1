package virtqueue

import "unsafe"

// inside reports whether b lies wholly inside mem (by address).
func inside(b, mem []byte) bool {
	if len(b) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	hi := lo + uintptr(len(mem))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p <= hi && uintptr(len(b)) <= hi-p
}

// heapMem returns n bytes of Go heap memory starting at a 4096-aligned
// address. Unlike mmap'd memory, the race detector watches Go heap
// memory, so tests that play the guest from another goroutine use this.
func heapMem(n int) []byte {
	b := make([]byte, n+4096)
	off := int((4096 - uintptr(unsafe.Pointer(unsafe.SliceData(b)))&4095) & 4095)
	return b[off : off+n : off+n]
}

// offsetIn is the offset of b's first byte in mem; b must be inside mem.
func offsetIn(b, mem []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(mem))))
}

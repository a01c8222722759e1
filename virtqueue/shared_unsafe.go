// Every load and store virtqueue makes on the rings and descriptor tables
// (memory the guest shares with us and may change at any moment) goes
// through this file.
//
// Rules kept here:
//   - Each ring word and descriptor is read exactly once into a Go local;
//     callers validate and use only that copy (BAD-INPUTS 39). The Go memory
//     model forbids a compiler from letting one read observe several values,
//     so the copy cannot be re-fetched behind our back.
//   - Where the containing aligned word lies inside the slice, accesses are
//     sync/atomic operations. They are sequentially consistent in Go, which
//     gives the load-acquire of avail.idx and the store-release of used.idx
//     the virtio ring protocol needs (virtio 1.x section 2.7.13), and keeps
//     tests that play the guest from another goroutine race-detector clean.
//   - Where it does not (a ring at an odd host address, a 16-bit field that
//     is the last thing in the ring), a single plain load or store of the
//     field is used. Those layouts are legal but rare; they get the same
//     single-read guarantee, just not the race detector's blessing.
//
// Guest memory is little-endian (virtio 1.x). The atomic paths extract
// 16-bit halves of native 32-bit words, so this file only builds on
// little-endian architectures; on others the package does not compile.

//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package virtqueue

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// word32 returns the aligned 32-bit word of b that contains the 16-bit
// field at b[off:off+2] and the field's bit shift inside it, or nil when
// that word is not wholly inside b or the field straddles two words.
func word32(b []byte, off int) (*uint32, uint) {
	mis := int(uintptr(unsafe.Pointer(&b[off])) & 3)
	if mis == 3 {
		return nil, 0
	}
	w := off - mis
	if w < 0 || w+4 > len(b) {
		return nil, 0
	}
	return (*uint32)(unsafe.Pointer(&b[w])), uint(mis) * 8
}

// load16 reads the little-endian uint16 at b[off:off+2] once.
func load16(b []byte, off int) uint16 {
	_ = b[off : off+2] // bounds check without a memory access the race detector would see
	if p, sh := word32(b, off); p != nil {
		return uint16(atomic.LoadUint32(p) >> sh)
	}
	return binary.LittleEndian.Uint16(b[off:])
}

// store16 writes v to the little-endian uint16 at b[off:off+2], leaving
// the other half of the containing word untouched even if the guest
// writes it concurrently (atomic AND then OR: a reader may see an
// intermediate value; every 16-bit field we store this way is a hint, see
// EnableNotify for why that cannot lose a wake-up).
func store16(b []byte, off int, v uint16) {
	_ = b[off : off+2]
	if p, sh := word32(b, off); p != nil {
		atomic.AndUint32(p, ^(uint32(0xffff) << sh))
		atomic.OrUint32(p, uint32(v)<<sh)
		return
	}
	binary.LittleEndian.PutUint16(b[off:], v)
}

// store32 writes v to the little-endian uint32 at b[off:off+4] in one store.
func store32(b []byte, off int, v uint32) {
	_ = b[off : off+4]
	if uintptr(unsafe.Pointer(&b[off]))&3 == 0 {
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[off])), v)
		return
	}
	binary.LittleEndian.PutUint32(b[off:], v)
}

// loadDesc reads the 16-byte descriptor at b[off:off+16] once: addr and
// the word holding len (bits 0-31), flags (32-47) and next (48-63).
// Indirect tables need no alignment (BAD-INPUTS 32), hence the fallback.
func loadDesc(b []byte, off int) (addr, w uint64) {
	_ = b[off : off+16]
	if uintptr(unsafe.Pointer(&b[off]))&7 == 0 {
		return atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off]))),
			atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off+8])))
	}
	return binary.LittleEndian.Uint64(b[off:]), binary.LittleEndian.Uint64(b[off+8:])
}

// fence is a full memory barrier (StoreLoad included). Go has no fence
// primitive, but every sync/atomic operation is sequentially consistent:
// all of them appear in one total order that respects program order, so an
// atomic store before fence and an atomic load after it cannot be
// reordered. In machine terms the read-modify-write is a LOCK XADD on amd64,
// which drains the store buffer before any later load. The word is per
// queue so queues on different CPUs do not bounce a shared cache line.
func (f *fenceWord) fence() {
	atomic.AddUint64(&f.v, 1)
}

// hostAligned reports whether b starts at a host address that is a
// multiple of a (a power of two). b must not be empty.
func hostAligned(b []byte, a uintptr) bool {
	return uintptr(unsafe.Pointer(&b[0]))&(a-1) == 0
}

// fenceWord is the private target of fence, padded to its own cache line.
type fenceWord struct {
	_ [64]byte
	v uint64
	_ [56]byte
}

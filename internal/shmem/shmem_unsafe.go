// Package shmem is the one accessor of memory vhostd shares with another
// party that may change it at any moment: the guest's rings and descriptor
// tables (package virtqueue, the device side), the device's used ring (the
// driver sides: virtqueue/vqdriver for tests, perf/internal/fe for
// benchmarks). Every load and store on such memory goes through here, so
// this file is where its ordering rules live:
//
//   - Each field is read exactly once into a Go local; callers validate and
//     use only that copy (BAD-INPUTS 39). The Go memory model forbids a
//     compiler from letting one read observe several values, so the copy
//     cannot be re-fetched behind our back.
//   - Load* and Store* are one sync/atomic operation on the aligned word
//     that contains the field, when that word lies inside the slice. They
//     are sequentially consistent in Go, which gives the load-acquire of an
//     index and the store-release that publishes one (virtio 1.x 2.7.13),
//     and keeps tests that play the other side from a goroutine
//     race-detector clean. Where the word is not inside the slice (a ring
//     at an odd host address, a 16-bit field that is the last thing in the
//     ring: legal but rare layouts) a single plain load or store of the
//     field is used: the same single-read guarantee, not the race
//     detector's blessing.
//   - Get* and Put* are plain accesses, for fields the other side reads or
//     writes only before an atomic publish that orders them (a used
//     element, written before the Store of used.idx that publishes it).
//   - Fence.Full is the full barrier (StoreLoad) of the lost-wakeup checks.
//
// Memory is little-endian (virtio 1.x). The atomic paths extract 16-bit
// halves of native 32-bit words, so this package only builds on
// little-endian architectures; on others its users do not compile.

//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package shmem

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

// Load16 reads the little-endian uint16 at b[off:off+2] once.
func Load16(b []byte, off int) uint16 {
	_ = b[off : off+2] // bounds check without a memory access the race detector would see
	if p, sh := word32(b, off); p != nil {
		return uint16(atomic.LoadUint32(p) >> sh)
	}
	return binary.LittleEndian.Uint16(b[off:])
}

// Store16 writes v to the little-endian uint16 at b[off:off+2], leaving
// the other half of the containing word untouched even if the guest
// writes it concurrently (atomic AND then OR: a reader may see an
// intermediate value; every 16-bit field we store this way is a hint, see
// EnableNotify for why that cannot lose a wake-up).
func Store16(b []byte, off int, v uint16) {
	_ = b[off : off+2]
	if p, sh := word32(b, off); p != nil {
		atomic.AndUint32(p, ^(uint32(0xffff) << sh))
		atomic.OrUint32(p, uint32(v)<<sh)
		return
	}
	binary.LittleEndian.PutUint16(b[off:], v)
}

// Store32 writes v to the little-endian uint32 at b[off:off+4] in one store.
func Store32(b []byte, off int, v uint32) {
	_ = b[off : off+4]
	if uintptr(unsafe.Pointer(&b[off]))&3 == 0 {
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[off])), v)
		return
	}
	binary.LittleEndian.PutUint32(b[off:], v)
}

// Load32 reads the little-endian uint32 at b[off:off+4] once.
func Load32(b []byte, off int) uint32 {
	_ = b[off : off+4]
	if uintptr(unsafe.Pointer(&b[off]))&3 == 0 {
		return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[off])))
	}
	return binary.LittleEndian.Uint32(b[off:])
}

// Get32 reads the little-endian uint32 at b[off:off+4] with a plain load:
// only for a field the other side wrote before an atomic Store this side
// has already loaded (a used element, after used.idx).
func Get32(b []byte, off int) uint32 {
	return binary.LittleEndian.Uint32(b[off : off+4])
}

// Put32 writes v to the little-endian uint32 at b[off:off+4] with a plain
// store: only for a field the other side reads after a later Store
// publishes it (a used element, before used.idx). Cheaper than Store32,
// which on amd64 is an XCHG, a full fence.
func Put32(b []byte, off int, v uint32) {
	binary.LittleEndian.PutUint32(b[off:off+4], v)
}

// Put16 writes v to the little-endian uint16 at b[off:off+2] with a plain
// store, under Put32's rule (an avail slot, before avail.idx).
func Put16(b []byte, off int, v uint16) {
	binary.LittleEndian.PutUint16(b[off:off+2], v)
}

// PutDesc writes the descriptor at b[off:off+16] with plain stores, as the
// two words LoadDesc reads, under Put32's rule: for a driver that writes a
// descriptor only before publishing its head.
func PutDesc(b []byte, off int, addr, w uint64) {
	_ = b[off : off+16]
	binary.LittleEndian.PutUint64(b[off:], addr)
	binary.LittleEndian.PutUint64(b[off+8:], w)
}

// LoadDesc reads the 16-byte virtqueue descriptor at b[off:off+16] once, as
// two 64-bit words: addr, and the word holding len (bits 0-31), flags
// (32-47) and next (48-63). Atomic when b[off] is 8-aligned; indirect
// tables need no alignment (BAD-INPUTS 32), hence the plain fallback.
func LoadDesc(b []byte, off int) (addr, w uint64) {
	_ = b[off : off+16]
	if uintptr(unsafe.Pointer(&b[off]))&7 == 0 {
		return atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off]))),
			atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off+8])))
	}
	return binary.LittleEndian.Uint64(b[off:]), binary.LittleEndian.Uint64(b[off+8:])
}

// StoreDesc writes the descriptor at b[off:off+16] as the two words
// LoadDesc reads, atomically when b[off] is 8-aligned, so a driver may
// rewrite descriptors while the device reads them (BAD-INPUTS 39).
func StoreDesc(b []byte, off int, addr, w uint64) {
	_ = b[off : off+16]
	if uintptr(unsafe.Pointer(&b[off]))&7 == 0 {
		atomic.StoreUint64((*uint64)(unsafe.Pointer(&b[off])), addr)
		atomic.StoreUint64((*uint64)(unsafe.Pointer(&b[off+8])), w)
		return
	}
	binary.LittleEndian.PutUint64(b[off:], addr)
	binary.LittleEndian.PutUint64(b[off+8:], w)
}

// Aligned reports whether b starts at a host address that is a multiple
// of a (a power of two). b must not be empty.
func Aligned(b []byte, a uintptr) bool {
	return uintptr(unsafe.Pointer(&b[0]))&(a-1) == 0
}

// Fence is the private target of a full memory barrier, padded to its own
// cache line so that queues on different CPUs do not bounce a shared one.
// The zero value is ready to use.
type Fence struct {
	_ [64]byte
	v uint64
	_ [56]byte
}

// Full is a full memory barrier (StoreLoad included; virtio_mb). Go has no
// fence primitive, but every sync/atomic operation is sequentially
// consistent: all of them appear in one total order that respects program
// order, so an atomic store before Full and an atomic load after it cannot
// be reordered. In machine terms the read-modify-write is a LOCK XADD on
// amd64, which drains the store buffer before any later load.
func (f *Fence) Full() {
	atomic.AddUint64(&f.v, 1)
}

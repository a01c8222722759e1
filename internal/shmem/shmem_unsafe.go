// Package shmem reads and writes little-endian ring fields in memory shared
// with another party that may change them at any moment: a guest (for the
// device side, package virtqueue) or a device (for the test driver,
// virtqueue/vqdriver).
//
// Each access is one sync/atomic operation on the aligned 32-bit word that
// contains the field, when that word lies inside the slice: sequentially
// consistent, so it gives the load-acquire and store-release the virtio ring
// protocol needs (virtio 1.x 2.7.13), reads each field once, and keeps tests
// that play the other side from a goroutine race-detector clean. Where the
// word is not inside the slice (a legal but rare layout) a single plain load
// or store of the field is used. Little-endian hosts only.

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

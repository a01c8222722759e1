//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package shmem

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// LoadPackedDesc reads the 16-byte packed-ring descriptor at b[off:off+16]
// once, flags first (virtio 1.x 2.8.21: the device reads a descriptor's
// other fields only after it has seen the flags that make it available).
// It returns w, the second 64-bit word (len in bits 0-31, buffer id in
// 32-47, flags in 48-63), loaded first, and then addr. With b[off]
// 8-aligned both loads are atomic and, being sequentially consistent, the
// load of addr cannot be performed before the load of w: if w holds the
// flags the driver stored last, addr holds what it stored before them.
func LoadPackedDesc(b []byte, off int) (w, addr uint64) {
	_ = b[off : off+16]
	if uintptr(unsafe.Pointer(&b[off]))&7 == 0 {
		w = atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off+8])))
		return w, atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off])))
	}
	return binary.LittleEndian.Uint64(b[off+8:]), binary.LittleEndian.Uint64(b[off:])
}

// Store64 writes v to the little-endian uint64 at b[off:off+8] in one
// store: atomic (a store-release) when b[off] is 8-aligned. A packed
// ring's used descriptor is written this way, len, id and flags together,
// so the driver that sees the flags sees the rest.
func Store64(b []byte, off int, v uint64) {
	p := unsafe.Pointer(&b[off : off+8][0])
	if uintptr(p)&7 != 0 {
		binary.LittleEndian.PutUint64(b[off:], v) // not atomic: no aligned word to store
		return
	}
	atomic.StoreUint64((*uint64)(p), v)
}

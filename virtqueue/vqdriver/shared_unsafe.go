// Shared-memory accesses of the driver side. They mirror the device's
// (virtqueue/shared_unsafe.go): every ring word the device may read or
// write concurrently is accessed with sync/atomic on its containing aligned
// 32-bit word, so tests that run the driver and the device in different
// goroutines are race-detector clean. Little-endian hosts only.

//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package vqdriver

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"github.com/vhostd/vhostd/internal/shmem"
)

func load16(b []byte, off int) uint16     { return shmem.Load16(b, off) }
func store16(b []byte, off int, v uint16) { shmem.Store16(b, off, v) }
func store32(b []byte, off int, v uint32) { shmem.Store32(b, off, v) }

// storeDesc writes a descriptor as two 64-bit words, atomically when the
// address is 8-aligned, so a test may rewrite descriptors while the device
// reads them (BAD-INPUTS 39).
func storeDesc(b []byte, addr, w uint64) {
	_ = b[:16]
	if uintptr(unsafe.Pointer(&b[0]))&7 == 0 {
		atomic.StoreUint64((*uint64)(unsafe.Pointer(&b[0])), addr)
		atomic.StoreUint64((*uint64)(unsafe.Pointer(&b[8])), w)
		return
	}
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint64(b[8:], w)
}

var fenceWord uint64

// fence is a full barrier (virtio_mb): see virtqueue's fence.
func fence() { atomic.AddUint64(&fenceWord, 1) }

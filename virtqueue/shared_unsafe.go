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

	"github.com/vhostd/vhostd/internal/shmem"
)

func load16(b []byte, off int) uint16     { return shmem.Load16(b, off) }
func store16(b []byte, off int, v uint16) { shmem.Store16(b, off, v) }
func store32(b []byte, off int, v uint32) { shmem.Store32(b, off, v) }

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

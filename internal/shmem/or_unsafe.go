//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package shmem

import (
	"sync/atomic"
	"unsafe"
)

// Or8 sets the bits of v in the byte b[off] with one atomic OR on the
// aligned 32-bit word that holds it, so that bits another party sets or
// clears in the same word at the same time are kept (a dirty-page log the
// front-end reads and clears while the device marks it). Where that word is
// not wholly inside b, a plain read-modify-write of the byte is used.
func Or8(b []byte, off int, v byte) {
	_ = b[off]
	mis := int(uintptr(unsafe.Pointer(&b[off])) & 3)
	w := off - mis
	if w < 0 || w+4 > len(b) {
		b[off] |= v
		return
	}
	atomic.OrUint32((*uint32)(unsafe.Pointer(&b[w])), uint32(v)<<(8*mis))
}

package netdev

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// iovec returns an iovec for b, which must be non-empty. The pointer is to
// guest memory (mmap'd, not tracked by the GC) or to a buffer the pair
// keeps alive.
func iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: unsafe.SliceData(b)}
	v.SetLen(len(b))
	return v
}

// signal writes 1 to an eventfd without allocating; a full counter
// (EAGAIN) already means "signalled".
func signal(fd int) {
	one := uint64(1)
	unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&one)), 8)
}

// drain reads an eventfd's counter, returning it (0 if nothing was
// pending), without allocating.
func drain(fd int) uint64 {
	var v uint64
	_, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&v)), 8)
	if e != 0 {
		return 0
	}
	return v
}

// readable reports whether fd has data to read now (poll with a zero
// timeout), without allocating.
func readable(fd int) bool {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	n, _, e := unix.RawSyscall(unix.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, 0)
	return e == 0 && n == 1 && pfd.Revents&unix.POLLIN != 0
}

package rawio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Iovec returns the iovec that covers b.
//
// Precondition: b is not empty (the kernel takes a zero-length iovec, but
// every caller means a real buffer, and an empty slice has no address).
func Iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: unsafe.SliceData(b)}
	v.SetLen(len(b))
	return v
}

// AppendIovecs appends one iovec per non-empty buffer of bufs to dst and
// returns the extended slice. Empty buffers are skipped. It allocates only
// if dst lacks capacity: give it caller storage of len(bufs) entries and
// reuse it.
func AppendIovecs(dst []unix.Iovec, bufs [][]byte) []unix.Iovec {
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		dst = append(dst, Iovec(b))
	}
	return dst
}

// Writev writes the buffers of iov to fd in one call and returns the bytes
// written. One buffer goes through write(2), which does not import an
// iovec array.
//
// Preconditions: fd is non-blocking; iov is not empty.
func Writev(fd int, iov []unix.Iovec) (int, unix.Errno) {
	return vectored(unix.SYS_WRITE, unix.SYS_WRITEV, fd, iov)
}

// Readv reads into the buffers of iov from fd in one call and returns the
// bytes read. One buffer goes through read(2).
//
// Preconditions: fd is non-blocking; iov is not empty.
func Readv(fd int, iov []unix.Iovec) (int, unix.Errno) {
	return vectored(unix.SYS_READ, unix.SYS_READV, fd, iov)
}

// vectored makes the call single (read or write) for one buffer, vector
// (readv or writev) for more. Preconditions: Readv's and Writev's.
func vectored(single, vector uintptr, fd int, iov []unix.Iovec) (int, unix.Errno) {
	if len(iov) == 1 {
		n, _, e := unix.RawSyscall(single, uintptr(fd),
			uintptr(unsafe.Pointer(iov[0].Base)), uintptr(iov[0].Len))
		return int(n), e
	}
	n, _, e := unix.RawSyscall(vector, uintptr(fd),
		uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(n), e
}

// Write writes b to fd with write(2) and returns the bytes written.
//
// Preconditions: fd is non-blocking; b is not empty.
func Write(fd int, b []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// Read reads from fd into b with read(2) and returns the bytes read.
//
// Preconditions: fd is non-blocking; b is not empty.
func Read(fd int, b []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// Signal adds 1 to the eventfd fd's counter. EAGAIN means the counter is
// saturated, which already wakes any waiter, so callers may ignore it.
//
// Precondition: fd is a non-blocking eventfd (a blocking one would sleep
// in the call while the counter is saturated).
func Signal(fd int) unix.Errno {
	one := uint64(1)
	_, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&one)), 8)
	return e
}

// Drain reads and resets the eventfd fd's counter and returns it: 0 with
// EAGAIN when nothing was pending (or a racing reader got it first).
//
// Precondition: fd is a non-blocking eventfd (a blocking one would sleep
// in the call until signalled).
func Drain(fd int) (uint64, unix.Errno) {
	var v uint64
	_, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&v)), 8)
	if e != 0 {
		return 0, e
	}
	return v, 0
}

// Readable reports whether fd has data to read now: poll(2) for POLLIN
// with a zero timeout, so the call never waits.
//
// Precondition: none on fd: a zero timeout never sleeps, whatever the fd.
// An error (EBADF, EFAULT) reads as not readable with the errno.
func Readable(fd int) (bool, unix.Errno) {
	return pollNow(fd, unix.POLLIN)
}

// pollNow reports whether fd is ready for events now: poll(2) with a zero
// timeout, which never waits.
func pollNow(fd int, events int16) (bool, unix.Errno) {
	pfd := unix.PollFd{Fd: int32(fd), Events: events}
	n, _, e := unix.RawSyscall(unix.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, 0)
	if e != 0 {
		return false, e
	}
	return n == 1 && pfd.Revents&events != 0, 0
}

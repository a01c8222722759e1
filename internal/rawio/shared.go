package rawio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Eventfds shared with another process (a vhost-user front-end's kick,
// call and error fds) do not meet Signal's and Drain's precondition for
// good: O_NONBLOCK lives on the open file description, which the peer
// holds too, so the peer can clear it at any time, and it can fill the
// counter to its maximum (0xfffffffffffffffe) so that a write would wait
// for it to read. A RawSyscall that blocks keeps its P: the next garbage
// collection waits for it forever and the process stops handling signals.
// SignalShared and DrainShared never block on such an fd, whatever its
// flags (BAD-INPUTS 62).

// rwfNowait is preadv2's RWF_NOWAIT: fail with EAGAIN instead of waiting,
// whatever O_NONBLOCK says. Eventfds and pipes honour it for reads (Linux
// 5.12 and later); eventfd has no write_iter, so pwritev2 with it fails
// with EOPNOTSUPP (measured on 6.18), hence the poll in SignalShared.
const rwfNowait = unix.RWF_NOWAIT

// SignalShared adds 1 to the counter of an eventfd that another process
// shares. It first asks poll(2), with a zero timeout, whether a write
// would succeed now: if not (the counter is saturated, which already
// leaves the fd readable for its reader), it writes nothing and returns
// EAGAIN; the caller may retry later. The write goes through Syscall, not
// RawSyscall: should the peer saturate the counter and clear O_NONBLOCK in
// the microsecond between the poll and the write, the thread waits until
// the peer reads, but the Go scheduler hands its P on, so the collector
// and signal handling go on.
//
// Precondition: none on fd's flags. An fd that poll reports writable and
// that is not an eventfd gets an 8-byte write.
func SignalShared(fd int) unix.Errno {
	if !Writable(fd) {
		return unix.EAGAIN
	}
	one := uint64(1)
	_, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&one)), 8)
	return e
}

// DrainShared reads and resets the counter of an eventfd that another
// process shares and returns it: 0 with EAGAIN when nothing was pending.
// It reads with preadv2(RWF_NOWAIT), which never waits whatever the fd's
// flags; on a file that does not support RWF_NOWAIT (EOPNOTSUPP, or ENOSYS
// before Linux 4.14) it reads only if poll(2) says the fd is readable, and
// through Syscall, so that a race lost to the peer costs an OS thread and
// not the runtime.
//
// Precondition: none on fd's flags.
func DrainShared(fd int) (uint64, unix.Errno) {
	var v uint64
	iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(&v)), Len: 8}
	_, _, e := unix.RawSyscall6(unix.SYS_PREADV2, uintptr(fd), uintptr(unsafe.Pointer(&iov)), 1,
		^uintptr(0), ^uintptr(0), rwfNowait)
	if e == unix.EOPNOTSUPP || e == unix.ENOSYS {
		if ok, _ := Readable(fd); !ok {
			return 0, unix.EAGAIN
		}
		_, _, e = unix.Syscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&v)), 8)
	}
	if e != 0 {
		return 0, e
	}
	return v, 0
}

// Writable reports whether poll(2) finds fd writable now (zero timeout: it
// never waits). An error reads as not writable.
func Writable(fd int) bool {
	ok, _ := pollNow(fd, unix.POLLOUT)
	return ok
}

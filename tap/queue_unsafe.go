package tap

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The hot path: one readv/writev per frame through unix.RawSyscall, returning unix.Errno
// so that nothing is boxed or allocated. RawSyscall is right here because every queue fd is
// O_NONBLOCK: tun and macvtap complete the call inline and never sleep in it (gVisor's
// rawfile.NonBlockingWriteIovec does the same).

// writev writes one frame; iov must be non-empty. A frame in one buffer goes
// through write(2), which does not import an iovec array.
func writev(fd int, iov []unix.Iovec) (int, unix.Errno) {
	if len(iov) == 1 {
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd),
			uintptr(unsafe.Pointer(iov[0].Base)), uintptr(iov[0].Len))
		return int(n), e
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd),
		uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(n), e
}

// readv reads one frame; iov must be non-empty. One buffer goes through
// read(2).
func readv(fd int, iov []unix.Iovec) (int, unix.Errno) {
	if len(iov) == 1 {
		n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd),
			uintptr(unsafe.Pointer(iov[0].Base)), uintptr(iov[0].Len))
		return int(n), e
	}
	n, _, e := unix.RawSyscall(unix.SYS_READV, uintptr(fd),
		uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(n), e
}

// tungetiff asks the driver which interface fd is attached to (TUNGETIFF), into a stack
// ifreq (struct ifreq is 40 bytes on 64-bit Linux), so that Probe does not allocate.
func tungetiff(fd int) unix.Errno {
	var ifr [40]byte
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TUNGETIFF), uintptr(unsafe.Pointer(&ifr[0])))
	return e
}

package tap

import (
	"sync/atomic"

	"github.com/vhostd/vhostd/internal/rawio"
	"golang.org/x/sys/unix"
)

// Queue is one TAP or macvtap queue: one nonblocking file descriptor that carries frames in
// both directions (the host side of one virtio-net queue pair). A Queue has a single owner
// (one worker); it has no locks and its I/O methods do not allocate.
type Queue struct {
	fd     int
	index  int
	closed atomic.Bool
	ring   *WriteRing // nil: WriteFrames writes with writev(2) (UseWriteRing)
}

// Fd returns the queue's file descriptor for epoll (EPOLLIN: frames to read; EPOLLOUT:
// room to write after EAGAIN; EPOLLERR/EPOLLHUP: the device is gone). The fd stays owned by
// the Queue: do not close it.
func (q *Queue) Fd() int { return q.fd }

// Index returns the queue's position in its Device (queue pair index).
func (q *Queue) Index() int { return q.index }

// Close closes the queue's fd. It is idempotent and returns nil after the first call.
// Precondition: no WriteBatch or ReadBatch is running on q (the owner stops first; the fd
// number could otherwise be reused under it).
func (q *Queue) Close() error {
	if !q.closed.CompareAndSwap(false, true) {
		return nil
	}
	if q.ring != nil {
		q.ring.Close()
	}
	return unix.Close(q.fd)
}

// WriteBatch writes frames to the TAP, one writev(2) per frame. Each frame is a list of
// iovecs that the kernel reads once, in order: the 12-byte virtio-net header first, then the
// Ethernet frame; they may point straight into guest memory. The caller owns frames and
// every buffer; WriteBatch keeps no reference after it returns.
//
// It returns n, the number of frames the kernel took (frames[:n]), and errno:
//   - 0: n == len(frames), everything was written;
//   - EAGAIN: the queue is full; frames[n:] were not written. The caller chooses the policy
//     (BAD-INPUTS 52): drop them and count tx_dropped_tap_full, or keep them and wait for
//     EPOLLOUT on Fd() before calling again (back-pressure). WriteBatch never retries or
//     spins. tun itself almost never says EAGAIN on write: it hands the frame to the stack
//     and the stack drops on overload (see TestWriteQueueFull); macvtap can, when the
//     socket's send buffer is full.
//   - IsGone(errno): the device was deleted or the queue detached (BAD-INPUTS 51):
//     frames[n:] were not written; remove Fd() from the poller, drop or return the frames,
//     and reopen with backoff. Further calls return the same errno at once.
//   - IsDown(errno): the link is set down: frames[n:] were not written; drop them and keep
//     the queue, whose writes succeed again once the link is up.
//   - anything else (EINVAL: a malformed frame or header, EFAULT: a bad buffer, EMSGSIZE):
//     frame n was rejected by the kernel and not sent; drop it, count it, and continue with
//     frames[n+1:].
//
// An empty frame (no iovecs) is reported as EINVAL at its index. EINTR is retried.
func (q *Queue) WriteBatch(frames [][]unix.Iovec) (n int, errno unix.Errno) {
	for ; n < len(frames); n++ {
		if _, e := frameIO(q.fd, frames[n], true); e != 0 {
			return n, e
		}
	}
	return n, 0
}

// ReadBatch reads frames from the TAP, one read per frame (read(2) for one buffer, readv(2)
// for more), into the caller's iovecs, until the queue is empty or len(frames) frames were
// read. Each frame arrives as the 12-byte virtio-net header followed by the Ethernet frame;
// sizes[i] is set to the number of bytes the kernel reports for frame i, header included.
// A frame longer than frames[i] is truncated silently: tun reports the bytes it copied, not
// the frame's length (TestReadTruncatedReportsCopiedLength, Linux 6.18). To see truncation,
// give each frame one byte more than the largest frame expected (65550+12 bytes when GSO
// offloads are on): sizes[i] equal to the capacity then means the frame was cut.
// Only len(sizes) frames are read at most.
//
// It returns n and errno:
//   - 0: n == min(len(frames), len(sizes));
//   - EAGAIN: the queue ran empty after n frames; wait for EPOLLIN on Fd();
//   - IsGone(errno): the device is gone (see WriteBatch); remove Fd() from the poller;
//   - anything else (EINVAL: frame n's iovecs are shorter than the 12-byte header, or frame
//     n has no iovecs; EFAULT: a bad buffer): the kernel dropped the frame it was delivering
//     (tun.c frees it); frames[n] holds nothing usable. Fix the buffers, count, continue.
func (q *Queue) ReadBatch(frames [][]unix.Iovec, sizes []int) (n int, errno unix.Errno) {
	max := min(len(frames), len(sizes))
	for ; n < max; n++ {
		r, e := frameIO(q.fd, frames[n], false)
		if e != 0 {
			return n, e
		}
		sizes[n] = r
	}
	return n, 0
}

// frameIO writes (write) or reads one frame f on fd in one call, retrying on
// EINTR, and returns the bytes moved. A frame with no iovecs is EINVAL.
func frameIO(fd int, f []unix.Iovec, write bool) (int, unix.Errno) {
	if len(f) == 0 {
		return 0, unix.EINVAL
	}
	for {
		var n int
		var e unix.Errno
		if write {
			n, e = rawio.Writev(fd, f)
		} else {
			n, e = rawio.Readv(fd, f)
		}
		if e != unix.EINTR {
			return n, e
		}
	}
}

// Probe asks the driver whether the queue is still attached to its device (one TUNGETIFF
// ioctl; no allocation). It returns 0 when it is, else an errno for which IsGone is true:
// EBADFD from tun, ENOLINK from macvtap. Use it when I/O cannot tell: a macvtap whose link
// was deleted swallows writes (they succeed) and never becomes readable, so an event loop
// on a macvtap should Probe on a slow timer or when netlink reports the link gone.
func (q *Queue) Probe() unix.Errno {
	if q.closed.Load() {
		return unix.EBADF
	}
	return tungetiff(q.fd)
}

// IsGone reports whether errno from WriteBatch, ReadBatch or Probe means the device behind
// the queue no longer carries traffic, for good (BAD-INPUTS 51). Measured on Linux 6.x:
//   - TAP deleted (ip link del) or queue detached: EBADFD on write and read, and poll reports
//     EPOLLERR at once and forever;
//   - macvtap deleted: writes succeed (the frames are dropped) and reads see EAGAIN; only
//     Probe tells (ENOLINK);
//   - our own fd closed: EBADF.
//
// ENODEV, ENXIO and EPIPE are included for other drivers and kernels. A link set down is not
// gone: see IsDown.
// On true the caller removes Fd() from its poller (EPOLLERR would wake it forever), returns
// the frames it holds (TX chains with length 0, counted tx_dropped_tap), and reopens with
// backoff; it must not retry in a loop.
func IsGone(errno unix.Errno) bool {
	switch errno {
	case unix.EBADFD, unix.ENOLINK, unix.ENODEV, unix.ENXIO, unix.EBADF, unix.EPIPE:
		return true
	}
	return false
}

// IsDown reports whether errno from WriteBatch means the link is set down (tun: EIO; ENETDOWN
// from other drivers). The queue stays attached and usable: reads just find nothing, and
// writes succeed again once the link is up. The caller drops the frames (counting them) and
// keeps the queue in its poller; it does not retry the frames.
func IsDown(errno unix.Errno) bool {
	return errno == unix.EIO || errno == unix.ENETDOWN
}

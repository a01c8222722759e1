package tap

import (
	"fmt"
	"unsafe"

	"github.com/vhostd/vhostd/internal/uring"
	"golang.org/x/sys/unix"
)

// WriteRing writes a Queue's frames through io_uring: a batch of frames is one io_uring_enter
// instead of one writev(2) per frame, and the queue's fd is registered with the ring as a fixed
// file, so no write looks the file up or touches its reference count (in a multithreaded
// process, every Go program, write(2) pays two atomic operations per call for that).
//
// tun and macvtap complete a write inline, and every write asks for RWF_NOWAIT (a full queue is
// EAGAIN, never a parked write), so the ring needs no polling thread and a batch is finished
// when the enter returns. The ring is internal/uring's minimal one; a batch is
// IORING_OP_WRITEV entries, or IORING_OP_WRITE for a frame in one buffer (cheaper: measured in
// perf/FINDINGS.md).
//
// A WriteRing has a single owner, like its Queue; its methods do not allocate. Queue.UseWriteRing
// gives a Queue one, which Queue.WriteFrames then uses and Queue.Close closes (the ring holds a
// reference to the fd's file, so it must not outlive the Queue).
//
// WriteFrames returns only once every frame it submitted has its completion: the buffers of a
// frame (guest memory, zero-copy) are never handed back while the kernel may still read them.
type WriteRing struct {
	ring *uring.Ring
	// broken: a failed submission left completions the ring could not wait for (withdraw).
	broken bool
	closed bool
	// batches counts the batches submitted (tests).
	batches uint64
}

// MaxWriteRingEntries bounds NewWriteRing's entries.
const MaxWriteRingEntries = uring.MaxEntries

// NewWriteRing sets up an io_uring of entries slots (a power of two, 1..MaxWriteRingEntries)
// for writes to q: a WriteFrames call of more frames than that is several enters.
// It fails when the kernel has no io_uring or forbids it (sysctl kernel.io_uring_disabled,
// seccomp): the caller falls back to Queue.WriteBatch or reports the error.
func (q *Queue) NewWriteRing(entries int) (*WriteRing, error) {
	if q.closed.Load() {
		return nil, fmt.Errorf("tap: io_uring for queue %d: %w", q.index, unix.EBADF)
	}
	ring, err := uring.New(entries)
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	if err := ring.RegisterFile(q.fd); err != nil {
		ring.Close()
		return nil, fmt.Errorf("tap: queue %d: %w", q.index, err)
	}
	return &WriteRing{ring: ring}, nil
}

// Entries returns the ring's size: the most frames one io_uring_enter carries.
func (r *WriteRing) Entries() int { return r.ring.Entries() }

// WriteFrames writes frames to the ring's queue, in order, each frame a list of iovecs as for
// Queue.WriteBatch (the 12-byte virtio-net header first; the buffers may be guest memory, and
// must stay valid until WriteFrames returns). Unlike WriteBatch, every frame is tried: errs[i]
// receives frame i's result, 0 when the kernel took it, else its errno, with the meanings
// WriteBatch documents (EAGAIN: the queue was full; IsGone: the device is gone; EINVAL: an
// empty or malformed frame; EFAULT: a bad buffer). Only min(len(frames), len(errs)) frames are
// written. It returns how many were taken.
//
// If the ring itself fails (io_uring_enter errors other than EINTR, EAGAIN and EBUSY), the
// frames not yet submitted get that errno and were not written.
func (r *WriteRing) WriteFrames(frames [][]unix.Iovec, errs []unix.Errno) (ok int) {
	total := len(frames)
	if len(errs) < total {
		total = len(errs)
	}
	if r.closed || r.broken {
		for i := 0; i < total; i++ {
			errs[i] = unix.EBADF
		}
		return 0
	}
	for base := 0; base < total; {
		k := total - base
		if k > r.ring.Entries() {
			k = r.ring.Entries()
		}
		ok += r.batch(frames[base:base+k], errs[base:base+k])
		base += k
	}
	return ok
}

// batch writes len(frames) <= r.Entries() frames with as few enters as the kernel allows.
func (r *WriteRing) batch(frames [][]unix.Iovec, errs []unix.Errno) (ok int) {
	tail := r.ring.Tail()
	queued := uint32(0)
	for i, f := range frames {
		if len(f) == 0 {
			errs[i] = unix.EINVAL
			continue
		}
		errs[i] = 0
		sqe := uring.SQE{
			Opcode: uring.OpWritev, Flags: uring.FixedFile, Fd: 0,
			Addr: uint64(uintptr(unsafe.Pointer(&f[0]))), Len: uint32(len(f)),
			Off: ^uint64(0), RWFlags: uring.NoWait, UserData: uint64(i),
		}
		if len(f) == 1 {
			// One buffer: a plain write, which skips importing an iovec array.
			sqe.Opcode, sqe.Addr, sqe.Len = uring.OpWrite, uint64(uintptr(unsafe.Pointer(f[0].Base))), uint32(f[0].Len)
		}
		*r.ring.Entry(tail + queued) = sqe
		queued++
	}
	if queued == 0 {
		return 0
	}
	end := tail + queued
	r.batches++
	r.ring.Publish(end)
	pending := queued // completions still to reap
	for pending > 0 {
		e := r.ring.Enter(end-r.ring.Head(), pending)
		pending -= r.reap(errs, &ok)
		if e != 0 && e != unix.EINTR && e != unix.EAGAIN && e != unix.EBUSY {
			r.withdraw(errs, e, end, &pending, &ok)
			return ok
		}
	}
	return ok
}

// withdraw handles a ring that refused a submission with errno e: the entries it did not take
// are taken back and their frames fail with e; the ones it took still owe a completion, which
// is waited for, so that no frame's buffers are handed back while the kernel may read them and
// the ring's next batch does not reap this one's completions. If even the wait fails, the ring
// is marked broken: every later frame fails with EBADF (IsGone) and the owner retires the queue.
func (r *WriteRing) withdraw(errs []unix.Errno, e unix.Errno, end uint32, pending *uint32, ok *int) {
	head := r.ring.Head()
	for s := head; s != end; s++ {
		errs[r.ring.Entry(s).UserData] = e
		*pending--
	}
	r.ring.Publish(head)
	for tries := 0; *pending > 0; tries++ {
		e2 := r.ring.Enter(0, *pending)
		*pending -= r.reap(errs, ok)
		if e2 != 0 && e2 != unix.EINTR && e2 != unix.EAGAIN && e2 != unix.EBUSY || tries > 1000 {
			r.broken = true
			return
		}
	}
}

// reap consumes the completion queue into errs and counts the frames taken.
func (r *WriteRing) reap(errs []unix.Errno, ok *int) uint32 {
	head, tail := r.ring.Completions()
	n := tail - head
	for ; head != tail; head++ {
		c := r.ring.Completion(head)
		if c.Res < 0 {
			errs[c.UserData] = unix.Errno(-c.Res)
		} else {
			*ok++
		}
	}
	r.ring.Consumed(tail)
	return n
}

// Close closes the ring (uring.Ring.Close: the TAP fd is unregistered first, so a TAP vhostd
// created is deleted with its last file when vhostd exits); it is idempotent. Nothing may be
// writing through it.
func (r *WriteRing) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	return r.ring.Close()
}

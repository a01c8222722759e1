package tap

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WriteRing writes a Queue's frames through io_uring: a batch of frames is one io_uring_enter
// instead of one writev(2) per frame, and the queue's fd is registered with the ring as a fixed
// file, so no write looks the file up or touches its reference count (in a multithreaded
// process, every Go program, write(2) pays two atomic operations per call for that).
//
// tun and macvtap complete a write inline, and every write asks for RWF_NOWAIT (a full queue is
// EAGAIN, never a parked write), so the ring needs no polling thread and a batch is finished
// when the enter returns. The ring is a minimal one over raw syscalls
// (include/uapi/linux/io_uring.h): one submission queue whose slot i always holds entry i,
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
	fd      int
	entries uint32

	sqMem, cqMem, sqeMem []byte
	sqHead, sqTail       *uint32
	sqMask               uint32
	sqes                 []uringSQE
	cqHead, cqTail       *uint32
	cqMask               uint32
	cqes                 []uringCQE
	closed               bool
	// broken: a failed submission left completions the ring could not wait for (withdraw).
	broken bool
}

const (
	sysIOUringSetup    = 425
	sysIOUringEnter    = 426
	sysIOUringRegister = 427

	uringOffSQRing = 0
	uringOffCQRing = 0x8000000
	uringOffSQEs   = 0x10000000

	uringEnterGetEvents  = 1
	uringOpWritev        = 2
	uringOpWrite         = 23
	uringRegisterFiles   = 2
	uringUnregisterFiles = 3
	uringSQEFixedFile    = 1
	// rwfNoWait (RWF_NOWAIT) makes a write that cannot proceed complete with EAGAIN. Without
	// it the ring parks the write until the fd is writable, O_NONBLOCK or not (seen with a
	// full socket on Linux 6.18), and the enter waiting for it blocks the worker.
	rwfNoWait = 0x8
	// uringFeatSingleMmap and uringFeatNoDrop: kernel 5.5; with them the CQ cannot lose a
	// completion while we wait for fewer than it holds.
	uringFeatSingleMmap = 1 << 0
	uringFeatNoDrop     = 1 << 1

	// MaxWriteRingEntries bounds NewWriteRing's entries.
	MaxWriteRingEntries = 4096
)

type uringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type uringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  uringSQOffsets
	cqOff                                                                  uringCQOffsets
}

// uringSQE is struct io_uring_sqe (64 bytes).
type uringSQE struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off           uint64
	addr          uint64
	len           uint32
	rwFlags       uint32
	userData      uint64
	pad           [3]uint64
}

// uringCQE is struct io_uring_cqe (16 bytes).
type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// NewWriteRing sets up an io_uring of entries slots (a power of two, 1..MaxWriteRingEntries)
// for writes to q: a WriteFrames call of more frames than that is several enters.
// It fails when the kernel has no io_uring or forbids it (sysctl kernel.io_uring_disabled,
// seccomp): the caller falls back to Queue.WriteBatch or reports the error.
func (q *Queue) NewWriteRing(entries int) (*WriteRing, error) {
	if entries < 1 || entries > MaxWriteRingEntries || entries&(entries-1) != 0 {
		return nil, fmt.Errorf("tap: io_uring entries %d: want a power of two in 1..%d", entries, MaxWriteRingEntries)
	}
	if q.closed.Load() {
		return nil, fmt.Errorf("tap: io_uring for queue %d: %w", q.index, unix.EBADF)
	}
	var p uringParams
	fd, _, e := unix.Syscall(sysIOUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("tap: io_uring_setup (%d entries): %w (is io_uring disabled by sysctl kernel.io_uring_disabled or seccomp?)", entries, e)
	}
	r := &WriteRing{fd: int(fd), entries: p.sqEntries}
	fail := func(what string, err error) (*WriteRing, error) {
		r.Close()
		return nil, fmt.Errorf("tap: io_uring %s: %w", what, err)
	}
	if p.features&(uringFeatSingleMmap|uringFeatNoDrop) != uringFeatSingleMmap|uringFeatNoDrop {
		return fail("setup", fmt.Errorf("kernel lacks IORING_FEAT_SINGLE_MMAP/NODROP (features %#x; Linux 5.5 or newer needed)", p.features))
	}
	var err error
	// One mapping holds both rings (IORING_FEAT_SINGLE_MMAP).
	size := int(p.sqOff.array + p.sqEntries*4)
	if cq := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(uringCQE{}))); cq > size {
		size = cq
	}
	if r.sqMem, err = unix.Mmap(r.fd, uringOffSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fail("mmap rings", err)
	}
	r.cqMem = r.sqMem
	if r.sqeMem, err = unix.Mmap(r.fd, uringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fail("mmap entries", err)
	}
	r.sqHead = (*uint32)(unsafe.Pointer(&r.sqMem[p.sqOff.head]))
	r.sqTail = (*uint32)(unsafe.Pointer(&r.sqMem[p.sqOff.tail]))
	r.sqMask = *(*uint32)(unsafe.Pointer(&r.sqMem[p.sqOff.ringMask]))
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Pointer(&r.cqMem[p.cqOff.head]))
	r.cqTail = (*uint32)(unsafe.Pointer(&r.cqMem[p.cqOff.tail]))
	r.cqMask = *(*uint32)(unsafe.Pointer(&r.cqMem[p.cqOff.ringMask]))
	r.cqes = unsafe.Slice((*uringCQE)(unsafe.Pointer(&r.cqMem[p.cqOff.cqes])), p.cqEntries)
	// Slot i of the submission queue always names entry i.
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&r.sqMem[p.sqOff.array])), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	fds := [1]int32{int32(q.fd)}
	if _, _, e := unix.Syscall6(sysIOUringRegister, uintptr(r.fd), uringRegisterFiles, uintptr(unsafe.Pointer(&fds[0])), 1, 0, 0); e != 0 {
		return fail(fmt.Sprintf("register queue %d's fd", q.index), e)
	}
	return r, nil
}

// Entries returns the ring's size: the most frames one io_uring_enter carries.
func (r *WriteRing) Entries() int { return int(r.entries) }

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
		if k > int(r.entries) {
			k = int(r.entries)
		}
		ok += r.batch(frames[base:base+k], errs[base:base+k])
		base += k
	}
	return ok
}

// batch writes len(frames) <= r.entries frames with as few enters as the kernel allows.
func (r *WriteRing) batch(frames [][]unix.Iovec, errs []unix.Errno) (ok int) {
	tail := atomic.LoadUint32(r.sqTail)
	queued := uint32(0)
	for i, f := range frames {
		if len(f) == 0 {
			errs[i] = unix.EINVAL
			continue
		}
		errs[i] = 0
		sqe := uringSQE{
			opcode: uringOpWritev, flags: uringSQEFixedFile, fd: 0,
			addr: uint64(uintptr(unsafe.Pointer(&f[0]))), len: uint32(len(f)),
			off: ^uint64(0), rwFlags: rwfNoWait, userData: uint64(i),
		}
		if len(f) == 1 {
			// One buffer: a plain write, which skips importing an iovec array.
			sqe.opcode, sqe.addr, sqe.len = uringOpWrite, uint64(uintptr(unsafe.Pointer(f[0].Base))), uint32(f[0].Len)
		}
		r.sqes[(tail+queued)&r.sqMask] = sqe
		queued++
	}
	if queued == 0 {
		return 0
	}
	end := tail + queued
	atomic.StoreUint32(r.sqTail, end)
	pending := queued // completions still to reap
	for pending > 0 {
		toSubmit := end - atomic.LoadUint32(r.sqHead)
		// RawSyscall: the writes complete inline and the enter waits only for them. With
		// Syscall the runtime may hand the P to another thread mid-batch, which costs more
		// than the batch saves.
		_, _, e := unix.RawSyscall6(sysIOUringEnter, uintptr(r.fd), uintptr(toSubmit), uintptr(pending), uringEnterGetEvents, 0, 0)
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
// is marked closed: every later frame fails with EBADF (IsGone) and the owner retires the queue.
func (r *WriteRing) withdraw(errs []unix.Errno, e unix.Errno, end uint32, pending *uint32, ok *int) {
	head := atomic.LoadUint32(r.sqHead)
	for s := head; s != end; s++ {
		errs[r.sqes[s&r.sqMask].userData] = e
		*pending--
	}
	atomic.StoreUint32(r.sqTail, head)
	for tries := 0; *pending > 0; tries++ {
		_, _, e2 := unix.RawSyscall6(sysIOUringEnter, uintptr(r.fd), 0, uintptr(*pending), uringEnterGetEvents, 0, 0)
		*pending -= r.reap(errs, ok)
		if e2 != 0 && e2 != unix.EINTR && e2 != unix.EAGAIN && e2 != unix.EBUSY || tries > 1000 {
			r.broken = true
			return
		}
	}
}

// reap consumes the completion queue into errs and counts the frames taken.
func (r *WriteRing) reap(errs []unix.Errno, ok *int) uint32 {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	n := tail - head
	for ; head != tail; head++ {
		c := &r.cqes[head&r.cqMask]
		if c.res < 0 {
			errs[c.userData] = unix.Errno(-c.res)
		} else {
			*ok++
		}
	}
	atomic.StoreUint32(r.cqHead, tail)
	return n
}

// Close unmaps and closes the ring; it is idempotent. Nothing may be writing through it.
func (r *WriteRing) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	// The ring's own teardown is asynchronous (a kernel worker drops its files after the
	// close returns), so a TAP whose last queue the ring holds would outlive Close, and
	// vhostd's exit: a TAP vhostd created is deleted with its last file. Unregistering
	// drops the ring's reference before Close returns.
	unix.Syscall6(sysIOUringRegister, uintptr(r.fd), uringUnregisterFiles, 0, 0, 0, 0)
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.sqMem != nil {
		unix.Munmap(r.sqMem)
	}
	return unix.Close(r.fd)
}

// Package uring is a minimal io_uring (include/uapi/linux/io_uring.h) over raw system calls,
// for the TAP's batched I/O (tap.WriteRing) and the perf harness's raw limit loops: one
// submission queue whose slot i always names entry i, one mapping for both rings
// (IORING_FEAT_SINGLE_MMAP), files registered as fixed files. It knows the layouts and the
// set-up; what goes into an entry and what a completion means is its callers' business.
//
// A Ring has a single owner; its methods do not allocate.
package uring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opcodes, entry flags and read/write flags used by vhostd.
const (
	OpWritev = 2  // IORING_OP_WRITEV
	OpRead   = 22 // IORING_OP_READ
	OpWrite  = 23 // IORING_OP_WRITE

	// FixedFile (IOSQE_FIXED_FILE): the entry's fd is an index into the registered files.
	FixedFile = 1
	// NoWait (RWF_NOWAIT): a read or write that cannot proceed completes with EAGAIN. Without
	// it the ring parks the request until the fd is ready, O_NONBLOCK or not (seen with a full
	// socket on Linux 6.18), and an enter that waits for it blocks its caller.
	NoWait = 0x8

	// MaxEntries bounds New's entries.
	MaxEntries = 4096
)

const (
	sysSetup    = 425
	sysEnter    = 426
	sysRegister = 427

	offSQRing = 0
	offSQEs   = 0x10000000

	enterGetEvents  = 1
	registerFiles   = 2
	unregisterFiles = 3
	// featSingleMmap and featNoDrop: kernel 5.5; with them the CQ cannot lose a completion
	// while the owner waits for fewer than it holds.
	featSingleMmap = 1 << 0
	featNoDrop     = 1 << 1
)

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// SQE is struct io_uring_sqe (64 bytes).
type SQE struct {
	Opcode, Flags uint8
	Ioprio        uint16
	Fd            int32
	Off           uint64
	Addr          uint64
	Len           uint32
	RWFlags       uint32
	UserData      uint64
	pad           [3]uint64
}

// CQE is struct io_uring_cqe (16 bytes): Res is the result, or -errno.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Ring is one io_uring.
type Ring struct {
	fd      int
	entries uint32
	mem     []byte // both rings (IORING_FEAT_SINGLE_MMAP)
	sqeMem  []byte
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	sqes    []SQE
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []CQE
	closed  bool
}

// New sets up a ring of entries slots (a power of two, 1..MaxEntries). It fails when the
// kernel has no io_uring or forbids it (sysctl kernel.io_uring_disabled, seccomp), or lacks
// IORING_FEAT_SINGLE_MMAP and IORING_FEAT_NODROP (Linux 5.5).
func New(entries int) (*Ring, error) {
	if entries < 1 || entries > MaxEntries || entries&(entries-1) != 0 {
		return nil, fmt.Errorf("io_uring entries %d: want a power of two in 1..%d", entries, MaxEntries)
	}
	var p params
	fd, _, e := unix.Syscall(sysSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup (%d entries): %w (is io_uring disabled by sysctl kernel.io_uring_disabled or seccomp?)", entries, e)
	}
	r := &Ring{fd: int(fd), entries: p.sqEntries}
	fail := func(what string, err error) (*Ring, error) {
		r.Close()
		return nil, fmt.Errorf("io_uring %s: %w", what, err)
	}
	if p.features&(featSingleMmap|featNoDrop) != featSingleMmap|featNoDrop {
		return fail("setup", fmt.Errorf("kernel lacks IORING_FEAT_SINGLE_MMAP/NODROP (features %#x; Linux 5.5 or newer needed)", p.features))
	}
	size := int(p.sqOff.array + p.sqEntries*4)
	if cq := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(CQE{}))); cq > size {
		size = cq
	}
	var err error
	if r.mem, err = unix.Mmap(r.fd, offSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fail("mmap rings", err)
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fail("mmap entries", err)
	}
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(p.sqOff.head), u32(p.sqOff.tail), *u32(p.sqOff.ringMask)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead, r.cqTail, r.cqMask = u32(p.cqOff.head), u32(p.cqOff.tail), *u32(p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&r.mem[p.cqOff.cqes])), p.cqEntries)
	// Slot i of the submission queue always names entry i.
	array := unsafe.Slice(u32(p.sqOff.array), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	return r, nil
}

// Entries returns the submission queue's size.
func (r *Ring) Entries() int { return int(r.entries) }

// RegisterFile makes fd the ring's fixed file 0 (entries then name it with Fd 0 and
// FixedFile): no request looks the file up or touches its reference count, which a
// multithreaded process (every Go program) otherwise pays with two atomic operations per
// read or write.
func (r *Ring) RegisterFile(fd int) error {
	fds := [1]int32{int32(fd)}
	if _, _, e := unix.Syscall6(sysRegister, uintptr(r.fd), registerFiles, uintptr(unsafe.Pointer(&fds[0])), 1, 0, 0); e != 0 {
		return fmt.Errorf("io_uring register fd %d: %w", fd, e)
	}
	return nil
}

// Tail returns the submission queue's tail: the entry Entry(Tail()) is the next free one
// (the caller never queues more than Entries() beyond Head()).
func (r *Ring) Tail() uint32 { return atomic.LoadUint32(r.sqTail) }

// Head returns the submission queue's head: entries before it were taken by the kernel.
func (r *Ring) Head() uint32 { return atomic.LoadUint32(r.sqHead) }

// Entry returns the entry of submission slot i (taken modulo the ring's size).
func (r *Ring) Entry(i uint32) *SQE { return &r.sqes[i&r.sqMask] }

// Publish makes the entries before end visible to the kernel (or, with end below the
// current tail, withdraws the ones not yet taken).
func (r *Ring) Publish(end uint32) { atomic.StoreUint32(r.sqTail, end) }

// Enter submits toSubmit entries and waits until minComplete completions are posted. It is a
// RawSyscall: the requests vhostd makes complete inline (RWF_NOWAIT), the enter waits only for
// them, and with Syscall the runtime may hand the P to another thread mid-batch, which costs
// more than the batch saves.
func (r *Ring) Enter(toSubmit, minComplete uint32) unix.Errno {
	_, _, e := unix.RawSyscall6(sysEnter, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), enterGetEvents, 0, 0)
	return e
}

// Completions returns the posted completions' range [head, tail): Completion(i) for i in it,
// then Consumed(tail).
func (r *Ring) Completions() (head, tail uint32) {
	return atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
}

// Completion returns the completion in slot i.
func (r *Ring) Completion(i uint32) *CQE { return &r.cqes[i&r.cqMask] }

// Consumed hands the completion slots before tail back to the kernel.
func (r *Ring) Consumed(tail uint32) { atomic.StoreUint32(r.cqHead, tail) }

// Close unregisters the ring's files, unmaps and closes it; it is idempotent. Nothing may be
// using it. The ring's own teardown is asynchronous (a kernel worker drops its files after
// the close returns), so a file that only the ring still held would outlive Close (a TAP
// whose last queue it is would outlive its owner); unregistering drops that reference first.
func (r *Ring) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	unix.Syscall6(sysRegister, uintptr(r.fd), unregisterFiles, 0, 0, 0, 0)
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.mem != nil {
		unix.Munmap(r.mem)
	}
	return unix.Close(r.fd)
}

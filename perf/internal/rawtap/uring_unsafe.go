package rawtap

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring (include/uapi/linux/io_uring.h) for the batched raw
// write limit: one submission queue of IORING_OP_WRITE entries on one fd,
// submitted and waited for with one io_uring_enter per batch. It is the
// limit a tap/ with io_uring could reach, not a general ring.

const (
	sysIOUringSetup = 425
	sysIOUringEnter = 426

	ioringOffSQRing = 0
	ioringOffCQRing = 0x8000000
	ioringOffSQEs   = 0x10000000

	ioringEnterGetEvents = 1
	ioringOpWrite        = 23

	sysIOUringRegister  = 427
	ioringRegisterFiles = 2
	iosqeFixedFile      = 1
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
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

// Uring is one io_uring with n entries.
type Uring struct {
	fd                   int
	sqMem, cqMem, sqeMem []byte
	sqHead, sqTail       *uint32
	sqMask               uint32
	sqArray              []uint32
	sqes                 []sqe
	cqHead, cqTail       *uint32
	cqMask               uint32
	cqes                 unsafe.Pointer
	n                    uint32
}

// NewUring sets up a ring of n entries (a power of two).
func NewUring(n uint32) (*Uring, error) {
	var p uringParams
	fd, _, e := unix.Syscall(sysIOUringSetup, uintptr(n), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	u := &Uring{fd: int(fd), n: n}
	var err error
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	if u.sqMem, err = unix.Mmap(u.fd, ioringOffSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		unix.Close(u.fd)
		return nil, err
	}
	cqSize := int(p.cqOff.cqes + p.cqEntries*16)
	if u.cqMem, err = unix.Mmap(u.fd, ioringOffCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		u.Close()
		return nil, err
	}
	if u.sqeMem, err = unix.Mmap(u.fd, ioringOffSQEs, int(p.sqEntries)*64, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		u.Close()
		return nil, err
	}
	u.sqHead = (*uint32)(unsafe.Pointer(&u.sqMem[p.sqOff.head]))
	u.sqTail = (*uint32)(unsafe.Pointer(&u.sqMem[p.sqOff.tail]))
	u.sqMask = *(*uint32)(unsafe.Pointer(&u.sqMem[p.sqOff.ringMask]))
	u.sqArray = unsafe.Slice((*uint32)(unsafe.Pointer(&u.sqMem[p.sqOff.array])), p.sqEntries)
	u.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&u.sqeMem[0])), p.sqEntries)
	u.cqHead = (*uint32)(unsafe.Pointer(&u.cqMem[p.cqOff.head]))
	u.cqTail = (*uint32)(unsafe.Pointer(&u.cqMem[p.cqOff.tail]))
	u.cqMask = *(*uint32)(unsafe.Pointer(&u.cqMem[p.cqOff.ringMask]))
	u.cqes = unsafe.Pointer(&u.cqMem[p.cqOff.cqes])
	return u, nil
}

// RegisterFile makes fd the ring's fixed file 0. A write to a fixed file
// skips the file lookup and its reference count, which a multithreaded
// process (every Go program) otherwise pays with two atomic operations per
// write.
func (u *Uring) RegisterFile(fd int) error {
	fds := [1]int32{int32(fd)}
	if _, _, e := unix.Syscall6(sysIOUringRegister, uintptr(u.fd), ioringRegisterFiles, uintptr(unsafe.Pointer(&fds[0])), 1, 0, 0); e != 0 {
		return fmt.Errorf("io_uring_register files: %w", e)
	}
	return nil
}

// WriteBatch queues k writes of buf to fd (to fixed file 0 when fixed),
// submits them with one io_uring_enter that waits for all k, and returns
// how many succeeded.
func (u *Uring) WriteBatch(fd int, fixed bool, buf []byte, k uint32) (ok int, err error) {
	tail := atomic.LoadUint32(u.sqTail)
	var fl uint8
	if fixed {
		fd, fl = 0, iosqeFixedFile
	}
	for i := uint32(0); i < k; i++ {
		idx := (tail + i) & u.sqMask
		u.sqes[idx] = sqe{opcode: ioringOpWrite, flags: fl, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&buf[0]))), len: uint32(len(buf)), off: ^uint64(0)}
		u.sqArray[idx] = idx
	}
	atomic.StoreUint32(u.sqTail, tail+k)
	// RawSyscall: tun completes the writes inline, so the enter does not
	// block for long; a plain Syscall lets the runtime hand the P to
	// another thread mid-batch, which costs more than the batch saves.
	if _, _, e := unix.RawSyscall6(sysIOUringEnter, uintptr(u.fd), uintptr(k), uintptr(k), ioringEnterGetEvents, 0, 0); e != 0 && e != unix.EINTR {
		return 0, e
	}
	head := atomic.LoadUint32(u.cqHead)
	ctail := atomic.LoadUint32(u.cqTail)
	for ; head != ctail; head++ {
		res := *(*int32)(unsafe.Add(u.cqes, uintptr(head&u.cqMask)*16+8))
		if res > 0 {
			ok++
		}
	}
	atomic.StoreUint32(u.cqHead, head)
	return ok, nil
}

// Close unmaps and closes the ring.
func (u *Uring) Close() {
	for _, m := range [][]byte{u.sqeMem, u.cqMem, u.sqMem} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	unix.Close(u.fd)
}

// WriteLoopUring is WriteLoop with batches of k writes per io_uring_enter,
// to fd registered as a fixed file when fixed.
func WriteLoopUring(fd int, buf []byte, k uint32, fixed bool, stop *atomic.Bool, n *Counters) error {
	u, err := NewUring(k)
	if err != nil {
		return err
	}
	defer u.Close()
	if fixed {
		if err := u.RegisterFile(fd); err != nil {
			return err
		}
	}
	var fr, er uint64
	frame := uint64(len(buf) - 12)
	for it := 0; ; it++ {
		if it&15 == 0 {
			if stop.Load() {
				return nil
			}
			n.publish(fr, fr*frame, er)
		}
		ok, err := u.WriteBatch(fd, fixed, buf, k)
		if err != nil {
			return err
		}
		fr += uint64(ok)
		er += uint64(k) - uint64(ok)
	}
}

// ioringOpRead is IORING_OP_READ; rwfNoWait (RWF_NOWAIT) makes a read of
// an empty queue complete with EAGAIN instead of waiting for a frame.
const (
	ioringOpRead = 22
	rwfNoWait    = 0x8
)

// ReadBatch queues one read into each of bufs from fd (fixed file 0 when
// fixed), each RWF_NOWAIT, submits them with one io_uring_enter that waits
// for all, and returns the frames and bytes read (headers included).
func (u *Uring) ReadBatch(fd int, fixed bool, bufs [][]byte) (frames int, bytes uint64, err error) {
	tail := atomic.LoadUint32(u.sqTail)
	var fl uint8
	if fixed {
		fd, fl = 0, iosqeFixedFile
	}
	k := uint32(len(bufs))
	for i, b := range bufs {
		idx := (tail + uint32(i)) & u.sqMask
		u.sqes[idx] = sqe{opcode: ioringOpRead, flags: fl, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&b[0]))), len: uint32(len(b)), off: ^uint64(0), rwFlags: rwfNoWait}
		u.sqArray[idx] = idx
	}
	atomic.StoreUint32(u.sqTail, tail+k)
	if _, _, e := unix.RawSyscall6(sysIOUringEnter, uintptr(u.fd), uintptr(k), uintptr(k), ioringEnterGetEvents, 0, 0); e != 0 && e != unix.EINTR {
		return 0, 0, e
	}
	head := atomic.LoadUint32(u.cqHead)
	ctail := atomic.LoadUint32(u.cqTail)
	for ; head != ctail; head++ {
		res := *(*int32)(unsafe.Add(u.cqes, uintptr(head&u.cqMask)*16+8))
		if res > 12 {
			frames++
			bytes += uint64(res - 12)
		}
	}
	atomic.StoreUint32(u.cqHead, head)
	return frames, bytes, nil
}

// ReadLoopUring is ReadLoop with batches of k reads per io_uring_enter
// (k buffers of bufSize bytes), from fd registered as a fixed file when
// fixed. A batch that finds the queue empty part-way costs the reads that
// return EAGAIN, as a back-end's batch would.
func ReadLoopUring(fd int, bufSize int, k uint32, fixed bool, stop *atomic.Bool, n *Counters) error {
	u, err := NewUring(k)
	if err != nil {
		return err
	}
	defer u.Close()
	if fixed {
		if err := u.RegisterFile(fd); err != nil {
			return err
		}
	}
	bufs := make([][]byte, k)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	var fr, by uint64
	for it := 0; ; it++ {
		if it&15 == 0 {
			if stop.Load() {
				return nil
			}
			n.publish(fr, by, 0)
		}
		f, b, err := u.ReadBatch(fd, fixed, bufs)
		if err != nil {
			return err
		}
		fr += uint64(f)
		by += b
	}
}

package rawtap

import (
	"sync/atomic"
	"unsafe"

	"github.com/vhostd/vhostd/internal/uring"
	"golang.org/x/sys/unix"
)

// Uring is the batched raw limit's io_uring (internal/uring, the ring
// tap.WriteRing uses): one batch of writes or reads on one fd, submitted
// and waited for with one io_uring_enter. It is the limit a back-end with
// io_uring could reach, not a general ring.
type Uring struct {
	r     *uring.Ring
	fixed bool
}

// NewUring sets up a ring of n entries (a power of two) for fd, registered
// as the ring's fixed file when fixed: a request on a fixed file skips the
// file lookup and its reference count, which a multithreaded process
// (every Go program) otherwise pays with two atomic operations.
func NewUring(n uint32, fd int, fixed bool) (*Uring, error) {
	r, err := uring.New(int(n))
	if err != nil {
		return nil, err
	}
	if fixed {
		if err := r.RegisterFile(fd); err != nil {
			r.Close()
			return nil, err
		}
	}
	return &Uring{r: r, fixed: fixed}, nil
}

// batch queues one request per buffer (op on fd, RWF_NOWAIT), submits them
// with one enter that waits for all, and returns the results' count of
// successes and their byte total.
func (u *Uring) batch(op uint8, fd int, bufs [][]byte) (ok int, bytes uint64, err error) {
	var fl uint8
	if u.fixed {
		fd, fl = 0, uring.FixedFile
	}
	tail := u.r.Tail()
	for i, b := range bufs {
		*u.r.Entry(tail + uint32(i)) = uring.SQE{Opcode: op, Flags: fl, Fd: int32(fd), Addr: uint64(uintptr(unsafe.Pointer(&b[0]))), Len: uint32(len(b)), Off: ^uint64(0), RWFlags: uring.NoWait}
	}
	k := uint32(len(bufs))
	u.r.Publish(tail + k)
	if e := u.r.Enter(k, k); e != 0 && e != unix.EINTR {
		return 0, 0, e
	}
	head, ctail := u.r.Completions()
	for ; head != ctail; head++ {
		if res := u.r.Completion(head).Res; res > 0 {
			ok++
			bytes += uint64(res)
		}
	}
	u.r.Consumed(ctail)
	return ok, bytes, nil
}

// Close closes the ring.
func (u *Uring) Close() { u.r.Close() }

// loopUring runs batches of op on bufs until stop is set, publishing the
// frames that succeeded (and their bytes, headers excluded) and the ones
// that failed; a read that finds the queue empty counts as neither.
func loopUring(op uint8, fd int, bufs [][]byte, fixed bool, stop *atomic.Bool, n *Counters) error {
	u, err := NewUring(uint32(len(bufs)), fd, fixed)
	if err != nil {
		return err
	}
	defer u.Close()
	var fr, by, er uint64
	for it := 0; ; it++ {
		if it&15 == 0 {
			if stop.Load() {
				return nil
			}
			n.publish(fr, by, er)
		}
		ok, b, err := u.batch(op, fd, bufs)
		if err != nil {
			return err
		}
		fr += uint64(ok)
		by += b - 12*uint64(ok)
		if op == uring.OpWrite {
			er += uint64(len(bufs) - ok)
		}
	}
}

// WriteLoopUring is WriteLoop with batches of k writes of buf per
// io_uring_enter, to fd registered as a fixed file when fixed.
func WriteLoopUring(fd int, buf []byte, k uint32, fixed bool, stop *atomic.Bool, n *Counters) error {
	bufs := make([][]byte, k)
	for i := range bufs {
		bufs[i] = buf
	}
	return loopUring(uring.OpWrite, fd, bufs, fixed, stop, n)
}

// ReadLoopUring is ReadLoop with batches of k reads (RWF_NOWAIT) per
// io_uring_enter into k buffers of bufSize bytes, from fd registered as a
// fixed file when fixed. A batch that finds the queue empty part-way pays
// for the reads that return EAGAIN, as a back-end's batch would.
func ReadLoopUring(fd int, bufSize int, k uint32, fixed bool, stop *atomic.Bool, n *Counters) error {
	bufs := make([][]byte, k)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	return loopUring(uring.OpRead, fd, bufs, fixed, stop, n)
}

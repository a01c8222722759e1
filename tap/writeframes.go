package tap

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// MinRingBatch is the smallest batch WriteFrames hands to a queue's io_uring: one or two frames
// go out by write(2), which costs less than an io_uring_enter for so few (perf/FINDINGS.md:
// with the TAP's XDP drop as sink, 64-byte frames, one CPU, in a window of about 1.3 s write(2)
// moved 2.25 M frames, about 580 ns each, and the ring 1.38 M with 1 frame per enter, 2.0 M
// with 2, 2.5 M with 4, 3.2 M with 16). A lone frame is what a latency-bound guest sends, a
// ping's request say: the ring added about 0.36 us to it.
const MinRingBatch = 3

// WriteMode is how Queue.WriteFrames hands frames to the kernel.
type WriteMode int

// The write modes.
const (
	// WriteSyscall is one write(2) or writev(2) per frame.
	WriteSyscall WriteMode = iota
	// WriteUring is one io_uring_enter per batch (WriteRing).
	WriteUring
)

func (m WriteMode) String() string {
	if m == WriteUring {
		return "uring"
	}
	return "write"
}

// UseWriteRing makes WriteFrames write through an io_uring of entries slots (see WriteRing);
// Close closes it with the queue. A queue that has a ring keeps it: a second call does nothing.
// It fails, leaving the queue on writev(2), when the kernel has no io_uring or forbids it.
// Control plane: nothing may be writing on q.
func (q *Queue) UseWriteRing(entries int) error {
	if q.closed.Load() {
		return fmt.Errorf("tap: io_uring for queue %d: %w", q.index, unix.EBADF)
	}
	if q.ring != nil {
		return nil
	}
	r, err := q.NewWriteRing(entries)
	if err != nil {
		return err
	}
	q.ring = r
	return nil
}

// WriteMode reports how WriteFrames writes.
func (q *Queue) WriteMode() WriteMode {
	if q.ring != nil {
		return WriteUring
	}
	return WriteSyscall
}

// WriteFrames writes frames as WriteBatch does, and reports every frame's result in errs:
// errs[i] is 0 when the kernel took frame i, else an errno with WriteBatch's meanings. Only
// min(len(frames), len(errs)) frames are written. It returns how many the kernel took.
//
// With an io_uring (UseWriteRing), a batch of MinRingBatch frames or more goes through it and
// every frame is tried, each with RWF_NOWAIT; with writev(2)
// the frames after an EAGAIN, IsDown or IsGone errno are not tried and get that same errno (a
// ring would most likely see the same answer for each), and the frames after any other errno
// are tried. Either way one mapping of errs to counters serves both modes. The buffers may be
// reused (or given back to the guest) once WriteFrames returns.
func (q *Queue) WriteFrames(frames [][]unix.Iovec, errs []unix.Errno) (ok int) {
	total := min(len(frames), len(errs))
	if q.ring != nil && total >= MinRingBatch {
		return q.ring.WriteFrames(frames, errs)
	}
	for done := 0; done < total; {
		w, e := q.WriteBatch(frames[done:total])
		for i := done; i < done+w; i++ {
			errs[i] = 0
		}
		ok += w
		done += w
		if e == 0 {
			break
		}
		errs[done] = e
		done++
		if e == unix.EAGAIN || IsDown(e) || IsGone(e) {
			for ; done < total; done++ {
				errs[done] = e
			}
		}
	}
	return ok
}

package virtqueue

import "errors"

// ErrBroken is what every error that breaks a queue matches (errors.Is).
// Once a queue is broken, PopBatch does nothing and returns the error that
// broke it. What the caller does: push the flagged chain PopBatch returned
// with it (if any) with length 0, count queue_broken, signal the vring's
// error eventfd, and stop polling the queue until the front-end resets it.
var ErrBroken = errors.New("virtqueue broken")

// brokenError is a reason a queue broke. The values are allocated once
// below, so breaking a queue on the hot path allocates nothing.
type brokenError struct{ msg string }

func (e *brokenError) Error() string        { return "virtqueue broken: " + e.msg }
func (e *brokenError) Is(target error) bool { return target == ErrBroken }

// Reasons a queue breaks (BAD-INPUTS section D, behaviour BROKEN-Q). Each
// matches ErrBroken.
var (
	ErrAvailIndex   error = &brokenError{"avail.idx moved more than queue size past last_avail"} // 27
	ErrHeadRange    error = &brokenError{"head index >= queue size"}                             // 28
	ErrNextRange    error = &brokenError{"descriptor next >= table size"}                        // 29
	ErrDescLoop     error = &brokenError{"descriptor chain longer than its table (loop)"}        // 30
	ErrIndirect     error = &brokenError{"malformed indirect descriptor"}                        // 32
	ErrRingUnmapped error = &brokenError{"ring no longer inside guest memory"}                   // 20
)

// Reasons a single chain is dropped (behaviour DROP). PopBatch returns such
// a chain with Chain.Err set and no iovecs; the caller pushes it with length
// 0 so the slot is not leaked (BAD-INPUTS 41), counts it, and carries on.
var (
	ErrBufferRange     = errors.New("virtqueue: buffer not inside guest memory")                // 33
	ErrChainTooLong    = errors.New("virtqueue: chain longer than 2^32-1 bytes")                // 34
	ErrOrder           = errors.New("virtqueue: device-readable descriptor after writable one") // 35
	ErrTooManySegments = errors.New("virtqueue: chain needs more iovecs than the Chain holds")
	ErrWritableInTX    = errors.New("virtqueue: device-writable descriptor in a TX chain")  // 35, CheckTX
	ErrReadableInRX    = errors.New("virtqueue: device-readable descriptor in an RX chain") // 35, CheckRX
	ErrInvalidConfig   = errors.New("virtqueue: invalid ring configuration")
	ErrRingAddress     = errors.New("virtqueue: ring address misaligned or not inside one region")
)

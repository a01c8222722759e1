package virtqueue

import (
	"math"

	"github.com/vhostd/vhostd/internal/shmem"
)

// Queue is the device side of one split virtqueue.
//
// A Queue is owned by one worker: none of its methods may run concurrently
// with another on the same Queue. The guest (the driver) runs concurrently
// on the other side of the shared rings; every access to them goes through
// internal/shmem.
//
// A Queue touches guest memory only inside its methods. A stopped ring
// (before SET_VRING_KICK/enable, after GET_VRING_BASE, BAD-INPUTS 43) is
// the caller's to leave alone: simply do not call the Queue.
type Queue struct {
	queueMem
	mask uint16 // cfg.Size - 1

	lastAvail  uint16 // next avail entry to consume (our private cursor)
	nextUsed   uint16 // next used entry to write; never read back from the guest (BAD-INPUTS 40)
	usedFlags  uint16 // our copy of used.flags
	lastPopped int    // chains returned by the last PopBatch that Unpop may still hand back

	signalled      uint16 // nextUsed when NeedsNotify last answered (EVENT_IDX)
	signalledValid bool

	f shmem.Fence
}

// NewQueue validates c against mem and returns a queue whose next avail
// entry to consume is nextAvail (SET_VRING_BASE). The used index starts at
// nextAvail too: a ring is (re)started only after every chain popped before
// it was stopped has been returned (BAD-INPUTS 46), and the guest's used.idx
// is never trusted (BAD-INPUTS 40). NewQueue writes nothing to guest memory.
func NewQueue(mem *Memory, c Config, nextAvail uint16) (*Queue, error) {
	if c.Packed {
		return nil, errPackedConfig
	}
	if err := c.Validate(nil); err != nil {
		return nil, err
	}
	r, err := c.rings(mem)
	if err != nil {
		return nil, err
	}
	return &Queue{
		queueMem:  queueMem{cfg: c, mem: mem, r: r},
		mask:      c.Size - 1,
		lastAvail: nextAvail,
		nextUsed:  nextAvail,
	}, nil
}

type setMemoryError struct{ err error }

func (e *setMemoryError) Error() string   { return "virtqueue: set memory: " + e.err.Error() }
func (e *setMemoryError) Unwrap() []error { return []error{ErrRingUnmapped, e.err} }

// NextAvail is the index of the next avail entry not yet consumed: what
// GET_VRING_BASE returns once in-flight chains are done.
func (q *Queue) NextAvail() uint16 { return q.lastAvail }

// NextUsed is the index of the next used entry the device will write.
func (q *Queue) NextUsed() uint16 { return q.nextUsed }

// Broken returns nil, or the reason (matching ErrBroken) the queue broke.
func (q *Queue) Broken() error { return q.broken }

// PopBatch pops up to len(chains) chains from the avail ring into the
// caller's chains and returns how many it filled: chains[:n]. It reads
// avail.idx once per call (load-acquire) and never allocates; len(chains)
// is the caller's work budget (BAD-INPUTS 42). n == 0 with a nil error
// means the ring is empty: arm notifications with EnableNotify.
//
// Every chain in chains[:n] must go back through PushBatch, or Unpop for
// the last ones. Chains with Err != nil were malformed: push them with
// length 0 (BAD-INPUTS 41).
//
// A non-nil error matches ErrBroken: the guest broke the queue during this
// call. chains[:n] are still valid to complete; if the fault was inside a
// chain whose head was valid, that chain is chains[n-1] with Err set to the
// same error. Later calls return (0, Broken()) and do nothing.
func (q *Queue) PopBatch(chains []Chain) (n int, err error) {
	q.lastPopped = 0
	if q.broken != nil {
		return 0, q.broken
	}
	if len(chains) == 0 {
		return 0, nil
	}
	idx := shmem.Load16(q.r.avail, 2)
	pending := idx - q.lastAvail
	if pending > q.cfg.Size {
		return 0, q.setBroken(ErrAvailIndex)
	}
	if int(pending) < len(chains) {
		chains = chains[:pending]
	}
	for i := range chains {
		head := shmem.Load16(q.r.avail, 4+2*int(q.lastAvail&q.mask))
		if head >= q.cfg.Size {
			return i, q.setBroken(ErrHeadRange)
		}
		q.lastAvail++
		q.lastPopped++
		if err := q.walk(&chains[i], head); err != nil {
			return i + 1, q.setBroken(err)
		}
	}
	return len(chains), nil
}

func (q *Queue) setBroken(err error) error {
	q.broken = err
	return err
}

// walk copies and validates the chain starting at head into c. Chain
// faults (DROP) are left in c.Err and walk returns nil; faults that break
// the queue are left in c.Err and returned.
func (q *Queue) walk(c *Chain, head uint16) error {
	c.reset(head)
	table := q.r.desc
	size := uint32(q.cfg.Size) // entries of the table being walked
	i := uint32(head)
	hops := uint32(0)
	indirect := false
	var total uint64
	segs := c.segs[:0]
	nOut := 0 // iovecs that are device-readable
	var outLen, inLen uint32
	for {
		hops++
		if hops > size { // a chain of exactly size descriptors is valid (31)
			c.fail(ErrDescLoop)
			return ErrDescLoop
		}
		// The one read of this descriptor (BAD-INPUTS 39).
		addr, w := shmem.LoadDesc(table, int(i)*descSize)
		dlen := uint32(w)
		flags := uint16(w >> 32)
		next := uint32(uint16(w >> 48))

		if flags&descFIndirect != 0 {
			t, err := q.indirectTable(indirect, flags, addr, dlen)
			if err != nil {
				c.fail(err)
				if err == ErrIndirect {
					return err
				}
				return nil
			}
			table, size, i, hops, indirect = t, dlen/descSize, 0, 0, true
			continue
		}

		write := flags&descFWrite != 0
		if err := c.countDesc(write); err != nil {
			c.fail(err)
			return nil
		}
		total += uint64(dlen)
		if total > math.MaxUint32 {
			c.fail(ErrChainTooLong)
			return nil
		}
		if dlen != 0 {
			var err error
			if segs, err = appendBuffer(q.mem, segs, addr, dlen); err != nil {
				c.fail(err)
				return nil
			}
			if write {
				inLen += dlen
			} else {
				outLen += dlen
				nOut = len(segs)
			}
		}

		if flags&descFNext == 0 {
			break
		}
		if next >= size {
			c.fail(ErrNextRange)
			return ErrNextRange
		}
		i = next
	}
	c.Out, c.In = segs[:nOut:nOut], segs[nOut:]
	c.OutLen, c.InLen = outLen, inLen
	return nil
}

// indirectTable checks an indirect descriptor (BAD-INPUTS 32) and returns
// the table it points to. nested says the walk is already inside an
// indirect table. A malformed indirect descriptor breaks the queue
// (ErrIndirect); a table outside guest memory drops the chain
// (ErrBufferRange). VRING_DESC_F_WRITE is ignored here (virtio 1.x
// 2.7.5.3.2).
func (q *Queue) indirectTable(nested bool, flags uint16, addr uint64, dlen uint32) ([]byte, error) {
	if nested || !q.cfg.Indirect || flags&descFNext != 0 ||
		dlen == 0 || dlen%descSize != 0 || dlen/descSize > maxIndirect {
		return nil, ErrIndirect
	}
	t, ok := q.mem.Slice(addr, uint64(dlen))
	if !ok {
		return nil, ErrBufferRange
	}
	return t, nil
}

// appendBuffer maps the guest buffer [addr, addr+dlen) and appends one
// iovec per memory region it crosses to segs (BAD-INPUTS 33: adjacent
// regions split, holes drop the chain). The error is the chain's DROP
// reason: ErrBufferRange for a buffer outside guest memory,
// ErrTooManySegments when segs is full.
func appendBuffer(mem *Memory, segs [][]byte, addr uint64, dlen uint32) ([][]byte, error) {
	if addr > math.MaxUint64-uint64(dlen) {
		return segs, ErrBufferRange
	}
	gpa, rem := addr, uint64(dlen)
	for rem != 0 {
		b, ok := mem.Contiguous(gpa, rem)
		if !ok || len(b) == 0 {
			return segs, ErrBufferRange
		}
		if len(segs) == cap(segs) {
			return segs, ErrTooManySegments
		}
		segs = append(segs, b)
		gpa += uint64(len(b))
		rem -= uint64(len(b))
	}
	return segs, nil
}

// Unpop hands back the last n chains of the most recent PopBatch, which
// the caller will not use (vhost-net's discard: RX popped more buffers than
// the frames needed). They will be popped again. n is clamped to the
// number of chains that call returned and not yet handed back.
func (q *Queue) Unpop(n int) {
	if n > q.lastPopped {
		n = q.lastPopped
	}
	if n <= 0 {
		return
	}
	q.lastPopped -= n
	q.lastAvail -= uint16(n)
}

// PushBatch writes one used element per entry of used, in order, then
// publishes the new used.idx once (store-release: the guest that sees the
// index sees the elements). It works on a broken queue too, so broken and
// dropped chains can be returned. It does not signal the guest: ask
// NeedsNotify. The caller must push only heads it popped, each once.
// With Config.InOrderTX (VIRTIO_F_IN_ORDER on a transmit queue: the
// entries are the chains in pop order, lengths 0) it writes one element,
// the last head, at the batch's first position, and used.idx moves past
// the whole batch, as the in-order rule allows.
func (q *Queue) PushBatch(used []Used) {
	if len(used) == 0 || q.r.used == nil {
		return
	}
	n := len(used)
	u := q.r.used
	old := q.nextUsed
	if q.cfg.InOrderTX {
		// One element, at the batch's first position, with the last
		// head; used.idx moves past the whole batch.
		used = used[len(used)-1:]
	}
	for _, e := range used {
		off := 4 + usedElemSize*int(q.nextUsed&q.mask)
		// Plain stores: the guest may read an element only after it has
		// seen the used.idx store that follows.
		shmem.Put32(u, off, uint32(e.Head))
		shmem.Put32(u, off+4, e.Len)
		q.nextUsed++
	}
	written := q.nextUsed - old
	q.nextUsed = old + uint16(n)
	q.publishUsed()
	if q.usedLog != nil {
		q.logUsedElems(old, written)
	}
	// If the index wrapped past the point NeedsNotify last answered for
	// (more than 32K entries without asking), that point means nothing any
	// more: make the next NeedsNotify say yes.
	if int16(q.nextUsed-q.signalled) < 0 || q.nextUsed-old > q.nextUsed-q.signalled {
		q.signalledValid = false
	}
}

// publishUsed stores used.flags and used.idx in one 32-bit store. Both
// halves are the device's to write (virtio 1.x 2.7.8).
func (q *Queue) publishUsed() {
	shmem.Store32(q.r.used, 0, uint32(q.usedFlags)|uint32(q.nextUsed)<<16)
	q.logUsedBytes(0, 4)
}

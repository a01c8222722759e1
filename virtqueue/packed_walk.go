package virtqueue

import (
	"math"

	"github.com/vhostd/vhostd/internal/shmem"
)

// available reports whether descriptor flags mark a descriptor available
// to a device expecting wrap counter wrap (0 or 1): AVAIL equal to it,
// USED not (virtio 1.x 2.8.1). A used descriptor (AVAIL == USED) is never
// available, whatever the counter.
func available(flags, wrap uint16) bool {
	return (flags>>7)&1 == wrap && (flags>>15)&1 != wrap
}

// walk copies and validates the chain at the avail position into c. It
// returns false when that slot holds no available descriptor (ring
// empty). Chain faults (DROP) are left in c.Err; faults that break the
// queue are returned and the chain is not recorded. Every descriptor is
// read once, flags first (shmem.LoadPackedDesc), and only the copy used.
func (q *PackedQueue) walk(c *Chain) (bool, error) {
	pos, wrap := q.avail, q.availWrap
	w, addr := shmem.LoadPackedDesc(q.r.desc, descSize*int(pos))
	if !available(uint16(w>>48), wrap) {
		return false, nil
	}
	// The driver may reuse a slot only once its used descriptor is
	// written: at most size - outstanding slots are free for new chains.
	free := q.size - q.outstanding
	if free == 0 {
		return false, ErrPackedOverrun
	}
	c.reset(0)
	a := descAcc{segs: c.segs[:0]}
	slots := uint16(1)
	for {
		flags := uint16(w >> 48)
		if flags&descFIndirect != 0 {
			if err := q.walkIndirect(c, &a, flags, addr, uint32(w)); err != nil {
				return false, err
			}
		} else {
			a.add(q.mem, c, flags, addr, uint32(w))
		}
		if flags&descFNext == 0 {
			break
		}
		if slots == free { // a chain of exactly size descriptors is valid
			if q.outstanding == 0 {
				return false, ErrDescLoop // longer than the ring
			}
			return false, ErrPackedOverrun
		}
		q.advance(&pos, &wrap, 1)
		w, addr = shmem.LoadPackedDesc(q.r.desc, descSize*int(pos))
		if !available(uint16(w>>48), wrap) {
			return false, ErrPackedChain
		}
		slots++
	}
	// The buffer id is the last descriptor's (virtio 1.x 2.8.6).
	id := uint16(w >> 32)
	if id >= q.size {
		return false, ErrPackedID
	}
	if q.inFlight[id] != 0 {
		return false, ErrPackedIDBusy
	}
	c.Head = id
	a.finish(c)
	q.record(id, slots)
	return true, nil
}

// walkIndirect adds the descriptors of the indirect table an INDIRECT
// descriptor points to (virtio 1.x 2.8.14): all len/16 entries in order,
// their NEXT flags and ids ignored. A malformed indirect descriptor (not
// negotiated, with NEXT, length 0 or not a multiple of 16 or over 65535
// entries) or an INDIRECT entry inside the table breaks the queue
// (ErrIndirect); a table outside guest memory drops the chain.
func (q *PackedQueue) walkIndirect(c *Chain, a *descAcc, flags uint16, addr uint64, dlen uint32) error {
	if !q.cfg.Indirect || flags&descFNext != 0 ||
		dlen == 0 || dlen%descSize != 0 || dlen/descSize > maxIndirect {
		return ErrIndirect
	}
	t, ok := q.mem.Slice(addr, uint64(dlen))
	if !ok {
		a.dropWith(ErrBufferRange)
		return nil
	}
	for off := 0; off < len(t); off += descSize {
		taddr, tw := shmem.LoadDesc(t, off)
		tflags := uint16(tw >> 48)
		if tflags&descFIndirect != 0 {
			return ErrIndirect
		}
		a.add(q.mem, c, tflags, taddr, uint32(tw))
	}
	return nil
}

// descAcc accumulates the buffers of one packed chain. Unlike the split
// walk, a DROP fault does not end the walk: the rest of the chain's ring
// descriptors must still be read to learn its buffer id and slot count.
type descAcc struct {
	segs          [][]byte
	nOut          int // iovecs that are device-readable
	outLen, inLen uint32
	total         uint64
	drop          error // the first DROP reason, if any
}

func (a *descAcc) dropWith(err error) {
	if a.drop == nil {
		a.drop = err
	}
}

// add adds one buffer descriptor (BAD-INPUTS 33-35 as for split rings).
func (a *descAcc) add(mem *Memory, c *Chain, flags uint16, addr uint64, dlen uint32) {
	if a.drop != nil {
		return
	}
	write := flags&descFWrite != 0
	if err := c.countDesc(write); err != nil {
		a.drop = err
		return
	}
	a.total += uint64(dlen)
	if a.total > math.MaxUint32 {
		a.drop = ErrChainTooLong
		return
	}
	if dlen == 0 {
		return
	}
	var err error
	if a.segs, err = appendBuffer(mem, a.segs, addr, dlen); err != nil {
		a.drop = err
		return
	}
	if write {
		a.inLen += dlen
	} else {
		a.outLen += dlen
		a.nOut = len(a.segs)
	}
}

// finish stores the accumulated chain in c, or its DROP reason.
func (a *descAcc) finish(c *Chain) {
	if a.drop != nil {
		c.fail(a.drop)
		return
	}
	c.Out, c.In = a.segs[:a.nOut:a.nOut], a.segs[a.nOut:]
	c.OutLen, c.InLen = a.outLen, a.inLen
}

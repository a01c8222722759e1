package virtqueue

import (
	"fmt"

	"github.com/vhostd/vhostd/internal/shmem"
)

// Reasons a packed queue breaks, besides those it shares with split rings
// (ErrDescLoop for a chain longer than the ring, ErrIndirect). Each
// matches ErrBroken.
var (
	ErrPackedChain   error = &brokenError{"packed: NEXT on the last available descriptor"}
	ErrPackedID      error = &brokenError{"packed: buffer id >= queue size"}
	ErrPackedIDBusy  error = &brokenError{"packed: buffer id already in flight"}
	ErrPackedOverrun error = &brokenError{"packed: descriptors made available in slots still in flight"}
)

// PackedQueue is the device side of one packed virtqueue (virtio 1.x
// section 2.8, VIRTIO_F_RING_PACKED). It has the methods of Queue, with
// the same contracts except where doc.go ("Packed rings") says otherwise,
// so the data path drives either through Ring.
//
// Ring positions (NextAvail, NextUsed) are 16-bit values: the slot index
// in bits 0-14 and the wrap counter in bit 15, as in off_wrap and in the
// halves of the GET/SET_VRING_BASE value (Base).
type PackedQueue struct {
	queueMem // r.desc: descriptor ring; r.avail: driver area; r.used: device area
	size     uint16

	avail, availWrap uint16 // next slot to read, the wrap counter it must carry (0 or 1)
	used, usedWrap   uint16 // next slot to write a used descriptor in, its wrap counter
	devEvent         uint32 // our copy of the device area (off_wrap | flags<<16)

	// inFlight[id] is the number of ring slots the chain with buffer id
	// took (0: id not in flight). popOrder[seq % size] is the id of the
	// seq-th chain popped: Unpop and Rewind walk it back.
	inFlight    []uint16
	outstanding uint16 // ring slots of the chains in flight
	popOrder    []uint16
	popSeq      uint32
	lastPopped  int

	signalled      uint16 // NextUsed when NeedsNotify last answered
	signalledValid bool
	sincePush      uint32 // slots used since NeedsNotify last answered

	f shmem.Fence
}

// NewPackedQueue validates c (Packed set) against mem and returns a queue
// that starts at base, the SET_VRING_BASE value: bits 0-14 the next avail
// slot, bit 15 its wrap counter (virtio 1.x: both wrap counters start at
// 1, so a fresh ring's base is 0x8000). The high half (the used position
// QEMU reports in GET_VRING_BASE) is ignored: a ring restarts only with
// every chain returned (BAD-INPUTS 46), so used starts where avail does,
// as DPDK does. NewPackedQueue writes nothing to guest memory.
func NewPackedQueue(mem *Memory, c Config, base uint32) (*PackedQueue, error) {
	if !c.Packed {
		return nil, fmt.Errorf("%w: NewPackedQueue on a split ring", ErrInvalidConfig)
	}
	if err := c.Validate(nil); err != nil {
		return nil, err
	}
	idx, wrap := uint16(base)&^wrapBit, uint16(base)>>15&1
	if idx >= c.Size {
		return nil, fmt.Errorf("%w: base %#x, size %d", ErrPackedBase, base, c.Size)
	}
	r, err := c.packedRings(mem)
	if err != nil {
		return nil, err
	}
	return &PackedQueue{
		queueMem: queueMem{cfg: c, mem: mem, r: r}, size: c.Size,
		avail: idx, availWrap: wrap, used: idx, usedWrap: wrap,
		inFlight: make([]uint16, c.Size),
		popOrder: make([]uint16, c.Size),
	}, nil
}

// NextAvail is the next descriptor slot to read, wrap counter in bit 15.
func (q *PackedQueue) NextAvail() uint16 { return q.avail | q.availWrap<<15 }

// NextUsed is the next slot a used descriptor goes to, wrap counter in
// bit 15.
func (q *PackedQueue) NextUsed() uint16 { return q.used | q.usedWrap<<15 }

// Base is the GET_VRING_BASE value: NextAvail in the low half, NextUsed in
// the high half (QEMU's virtio_queue_packed_get_last_avail_idx layout).
func (q *PackedQueue) Base() uint32 { return uint32(q.NextAvail()) | uint32(q.NextUsed())<<16 }

// Broken returns nil, or the reason (matching ErrBroken) the queue broke.
func (q *PackedQueue) Broken() error { return q.broken }

func (q *PackedQueue) setBroken(err error) error {
	q.broken = err
	return err
}

// advance moves the position (idx, wrap) n slots forward.
func (q *PackedQueue) advance(idx, wrap *uint16, n uint16) {
	*idx += n
	if *idx >= q.size {
		*idx -= q.size
		*wrap ^= 1
	}
}

// PopBatch is Queue.PopBatch for a packed ring: it reads descriptors at
// NextAvail while their flags say available (AVAIL bit equal to the wrap
// counter, USED bit not), one chain per Chain, each chain's Head being the
// buffer id of its last descriptor. A chain that breaks the queue is not
// returned: the device cannot trust its buffer id (doc.go, "Packed rings").
func (q *PackedQueue) PopBatch(chains []Chain) (n int, err error) {
	q.lastPopped = 0
	if q.broken != nil {
		return 0, q.broken
	}
	for i := range chains {
		ok, err := q.walk(&chains[i])
		if err != nil {
			return i, q.setBroken(err)
		}
		if !ok {
			return i, nil
		}
		q.lastPopped++
	}
	return len(chains), nil
}

// record marks the chain just walked (buffer id, slots ring slots) in
// flight and moves the avail position past it.
func (q *PackedQueue) record(id, slots uint16) {
	q.inFlight[id] = slots
	q.outstanding += slots
	q.popOrder[q.popSeq%uint32(q.size)] = id
	q.popSeq++
	q.advance(&q.avail, &q.availWrap, slots)
}

// Unpop is Queue.Unpop for a packed ring.
func (q *PackedQueue) Unpop(n int) {
	n = min(n, q.lastPopped)
	q.lastPopped -= max(n, 0)
	q.unwind(n)
}

// Rewind is Queue.Rewind for a packed ring: the n chains popped most
// recently go back, none of which may have been pushed. It stops early at
// a chain already pushed (a caller bug it does not let corrupt the ring).
func (q *PackedQueue) Rewind(n int) {
	q.lastPopped = 0
	q.unwind(n)
}

func (q *PackedQueue) unwind(n int) {
	for ; n > 0; n-- {
		id := q.popOrder[(q.popSeq-1)%uint32(q.size)]
		slots := q.inFlight[id]
		if slots == 0 {
			return
		}
		q.inFlight[id] = 0
		q.outstanding -= slots
		q.popSeq--
		if q.avail >= slots {
			q.avail -= slots
		} else {
			q.avail += q.size - slots
			q.availWrap ^= 1
		}
	}
}

// PushBatch is Queue.PushBatch for a packed ring: each entry becomes one
// used descriptor (id, len, flags with AVAIL and USED equal to the used
// wrap counter, WRITE when len > 0) written in place at NextUsed, which
// then moves past the slots the chain took. Each descriptor's len, id and
// flags go in one 64-bit store-release; the batch's first descriptor is
// stored last, so the driver sees the whole batch at once (virtio 1.x
// 2.8.20). The descriptor's addr is left alone. Entries whose Head is not a buffer id in
// flight are skipped.
func (q *PackedQueue) PushBatch(used []Used) {
	if len(used) == 0 || q.r.desc == nil {
		return
	}
	firstOff := -1
	var first uint64
	for _, e := range used {
		if e.Head >= q.size || q.inFlight[e.Head] == 0 {
			continue
		}
		slots := q.inFlight[e.Head]
		q.inFlight[e.Head] = 0
		q.outstanding -= slots
		off := descSize * int(q.used)
		flags := q.usedWrap * (packedFAvail | packedFUsed)
		if e.Len != 0 {
			flags |= descFWrite
		}
		// len, id and flags in one store-release.
		w := uint64(e.Len) | uint64(e.Head)<<32 | uint64(flags)<<48
		if firstOff < 0 {
			firstOff, first = off, w
		} else {
			shmem.Store64(q.r.desc, off+8, w)
		}
		q.logUsedDesc(off)
		if slots > 1 {
			q.markRest(e.Head, slots)
		}
		q.advance(&q.used, &q.usedWrap, slots)
		q.sincePush += uint32(slots)
	}
	if firstOff >= 0 {
		shmem.Store64(q.r.desc, firstOff+8, first)
	}
}

// markRest writes the slots after the first of a chain of slots slots,
// pushed at NextUsed, as used descriptors too (len 0, the chain's id):
// the driver skips them (it knows the chain's length), but RingPosition
// reads every slot's USED bit. They are stored before the batch's first
// descriptor, while the driver does not own them yet.
func (q *PackedQueue) markRest(id, slots uint16) {
	slot, wrap := q.used, q.usedWrap
	for j := uint16(1); j < slots; j++ {
		q.advance(&slot, &wrap, 1)
		off := descSize * int(slot)
		shmem.Store64(q.r.desc, off+8, uint64(id)<<32|uint64(wrap*(packedFAvail|packedFUsed))<<48)
		q.logUsedDesc(off)
	}
}

// logUsedDesc marks the len, id and flags of the used descriptor at
// offset off of the descriptor ring.
func (q *PackedQueue) logUsedDesc(off int) {
	if q.usedLog != nil {
		q.usedLog.Mark(q.logAddr+uint64(off)+8, 8)
	}
}

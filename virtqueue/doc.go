// Package virtqueue owns guest memory and the device side of split
// virtqueues (virtio 1.x section 2.7) and packed ones (2.8, see "Packed
// rings" below).
//
//	vhost memory table --> Memory (regions, GPA / front-end VA translation)
//	                         |
//	guest avail ring --> Queue.PopBatch --> []Chain (copied, validated descriptors)
//	                                          |  Out/In iovecs into guest memory
//	chains done --> Queue.PushBatch([]Used) --> used ring (one used.idx publish)
//	            --> Queue.NeedsNotify --> call eventfd, only if the guest asked
//
// Every address the guest or the front-end gives is translated through a
// bounds-checked accessor. Descriptors and ring entries are copied out of
// guest memory once and only the copies are used: the guest can rewrite its
// memory while we read it. Every load and store on the rings and descriptor
// tables goes through internal/shmem, where the ordering rules are written
// down (atomic for the indexes, flags and descriptors; plain stores for used
// elements, which the used.idx store publishes); this package has no unsafe
// code of its own. Guest memory is little-endian; the package builds only on
// little-endian hosts.
//
// # Using a Queue (one worker owns it)
//
//	chains := virtqueue.NewChains(64, 32)      // once: caller-owned, reused
//	used := make([]virtqueue.Used, 0, 64)
//	q, err := virtqueue.NewQueue(mem, cfg, base) // base: SET_VRING_BASE
//	for {
//		q.DisableNotify()
//		n, err := q.PopBatch(chains) // len(chains) is the work budget
//		for i := range chains[:n] {
//			c := &chains[i]
//			if c.Err != nil || c.CheckTX() != nil { // malformed: return it, len 0
//				used = append(used, virtqueue.Used{Head: c.Head})
//				continue
//			}
//			... c.Out / c.In, or AppendIovecs for writev/readv ...
//			used = append(used, virtqueue.Used{Head: c.Head, Len: written})
//		}
//		q.PushBatch(used); used = used[:0]
//		if q.NeedsNotify() { signal the call eventfd }
//		if err != nil { count queue_broken, signal the error eventfd, stop }
//		if n == 0 && !q.EnableNotify() { sleep on the kick eventfd }
//	}
//
// Two calls hand popped chains back, to be popped again; neither touches
// guest memory, and neither may hand back a chain already pushed:
//
//   - Unpop(n), right after a PopBatch, for the last n chains of that
//     batch: a hand-off took fewer chains than were popped (netdev's TX
//     queue and RX stock when their rings are short).
//   - Rewind(n), for the n chains popped most recently across any number of
//     PopBatch calls: a ring stops with chains stocked but never filled
//     (netdev's settle rewinds RX chains waiting for frames).
//
// # Faults
//
// Guest faults are of two kinds (docs/BAD-INPUTS.md, the guest-ring items; the
// mapping of items to tests is in BAD-INPUTS.md in this directory):
//
//   - DROP: one chain is malformed (a buffer outside guest memory, a
//     readable descriptor after a writable one, more than 2^32-1 bytes, more
//     iovecs than the Chain holds, an indirect table outside memory).
//     PopBatch returns it with Chain.Err set and no iovecs; the caller pushes
//     it with length 0 and the queue carries on.
//   - BROKEN-Q: the ring itself is corrupt (avail.idx moved more than the
//     queue size, a head or next index out of range, a descriptor loop, a
//     malformed indirect descriptor). PopBatch returns an error matching
//     ErrBroken, plus the faulting chain flagged if its head was valid;
//     from then on PopBatch does nothing. PushBatch still works so popped
//     chains can be returned.
//
// Decisions: a buffer that spans two adjacent memory regions becomes two
// iovecs; an indirect table must lie inside one region (else DROP) but
// needs no alignment; an indirect descriptor may end a chain of direct
// ones (as Linux vhost allows) but not appear inside an indirect table;
// zero-length descriptors map nothing and their address is not checked.
//
// # Packed rings
//
// With VIRTIO_F_RING_PACKED (feature bit 34) negotiated, Config.Packed is
// set and NewRing (or NewPackedQueue) returns a *PackedQueue; both it and
// *Queue implement Ring, which the data path drives through one interface
// call per batch, never per chain. Config's three addresses are then the
// descriptor ring, the driver event suppression area and the device's
// (4 bytes each, 4-aligned); the size is any value in 1..32768. For the
// caller the two layouts differ in:
//
//   - Ring state. A split ring's state is one 16-bit index. A packed ring's
//     is a position per side, the slot index (bits 0-14) and a wrap counter
//     (bit 15), starting at 0x8000. NextAvail and NextUsed return those
//     positions; GET_VRING_BASE returns RingBase: NextAvail in the low half
//     and NextUsed in the high half, as QEMU (hw/virtio/virtio.c) and DPDK
//     encode them. SET_VRING_BASE passes the same value to NewRing; the used
//     position restarts at the avail one, as for split rings.
//   - Chain.Head is the buffer id of the chain's last descriptor, not a
//     descriptor index; ids must be below the queue size and not in flight
//     (BAD-INPUTS 67). Used.Head is that id. A chain takes as many ring
//     slots as it has ring descriptors (one if indirect), and the used
//     position moves by the slots of each chain pushed, in push order: any
//     completion order is allowed.
//   - A chain that breaks the queue is not returned with Err set: its
//     buffer id is not to be trusted. DROP chains are returned, under
//     their id, as for split rings.
//   - PushBatch writes used descriptors in place in the descriptor ring
//     (len, id and flags in one 64-bit store-release), the batch's first
//     flags last, so the driver sees the batch at once. Dirty logging marks
//     them at the logged address plus their ring offset (give the
//     descriptor ring's address), and the device area at Config.Used.
//   - Notifications: NeedsNotify reads the driver area (ENABLE, DISABLE, or
//     under EVENT_IDX DESC with a position); EnableNotify writes ENABLE or
//     DESC at NextAvail to the device area, DisableNotify DISABLE (nothing
//     under EVENT_IDX, as for split rings). Their contracts are unchanged.
//   - Restart. Config.RingPosition reads the device's position from the
//     descriptors' USED bits (a front-end may not know it after a back-end
//     restart); PushBatch marks every slot of a multi-slot chain used, not
//     only its first, to keep those bits exact.
//
// Unpop, Rewind, SetMemory, SetLog and MarkWritten keep their contracts.
//
// # IN_ORDER
//
// With VIRTIO_F_IN_ORDER the device must use buffers in the order they
// were made available, which a caller that pushes in pop order does. On a
// transmit queue (Config.InOrderTX: every length 0) a split ring's
// PushBatch then writes one used element, the batch's last head, at the
// batch's first position, and moves used.idx past the whole batch. A
// packed ring still writes one used descriptor per chain (the spec allows
// one per batch; with RingPosition's marks it would save nothing), and
// receive rings keep one entry per buffer, each with its length.
//
// # What the caller must do
//
// A Queue is never touched unless called: a stopped ring (before
// SET_VRING_KICK / enable, after GET_VRING_BASE) is simply not called
// (BAD-INPUTS 43). GET_VRING_BASE returns NextAvail once every popped chain
// has been pushed (NextAvail == NextUsed). On a memory table change, call
// SetMemory at a quiescent point; the old table may be unmapped only after
// every chain popped through it is pushed.
package virtqueue

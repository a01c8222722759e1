package virtqueue

import "github.com/vhostd/vhostd/internal/shmem"

// Notification suppression for packed rings (virtio 1.x 2.8.10): the
// driver event suppression area (Config.Avail, written by the driver)
// says whether the device should call; the device event suppression area
// (Config.Used, written by us) says whether the driver should kick. Each
// is le16 off_wrap then le16 flags: ENABLE, DISABLE, or, with EVENT_IDX,
// DESC (notify when the ring position off_wrap is passed).

// NeedsNotify is Queue.NeedsNotify for a packed ring: DISABLE says no,
// ENABLE (or DESC without EVENT_IDX, or the reserved value 3) yes, DESC
// yes when the driver's off_wrap lies among the slots used since the last
// NeedsNotify. Like used_event, the area is a hint (BAD-INPUTS 40).
func (q *PackedQueue) NeedsNotify() bool {
	if q.r.avail == nil {
		return false
	}
	q.f.Full() // our used flags before the driver's area; see Queue.NeedsNotify
	v := shmem.Load32(q.r.avail, 0)
	old, valid, since := q.signalled, q.signalledValid, q.sincePush
	cur := q.NextUsed()
	q.signalled, q.signalledValid, q.sincePush = cur, true, 0
	flags := uint16(v>>16) & 3
	if flags != eventDesc || !q.cfg.EventIdx {
		return flags != eventDisable
	}
	if !valid || since >= uint32(q.size) {
		return true // more than a ring since: the positions mean nothing
	}
	return q.needEvent(uint16(v), old, cur)
}

// needEvent is vring_need_event over packed ring positions: whether the
// event position ev lies in [old, cur). A position (index, wrap) is
// mapped to a counter modulo 2*size, wrap 1 being the first lap (both
// counters start at 1), so the positions compare as split indexes do.
func (q *PackedQueue) needEvent(ev, old, cur uint16) bool {
	lap := 2 * uint32(q.size)
	lin := func(p uint16) uint32 {
		idx := uint32(p &^ wrapBit)
		if p&wrapBit == 0 {
			idx += uint32(q.size)
		}
		return idx
	}
	e, o, c := lin(ev), lin(old), lin(cur)
	return (c+lap-e-1)%lap < (c+lap-o)%lap
}

// DisableNotify is Queue.DisableNotify for a packed ring: without
// EVENT_IDX it stores DISABLE in the device area (once); with EVENT_IDX it
// leaves the event position EnableNotify wrote, which the driver passes
// without a kick, as split rings do.
func (q *PackedQueue) DisableNotify() {
	if q.r.used == nil || q.cfg.EventIdx || q.devEvent>>16 == eventDisable {
		return
	}
	q.setDevEvent(q.devEvent&0xffff | eventDisable<<16)
}

// EnableNotify is Queue.EnableNotify for a packed ring: it stores ENABLE,
// or with EVENT_IDX DESC at NextAvail, in the device area, then after a
// full fence reports whether the descriptor at NextAvail is available
// already (pending: do not sleep). On a broken queue it does nothing.
func (q *PackedQueue) EnableNotify() (pending bool) {
	if q.r.used == nil || q.broken != nil {
		return false
	}
	if q.cfg.EventIdx {
		q.setDevEvent(uint32(q.NextAvail()) | eventDesc<<16)
	} else if q.devEvent>>16 != eventEnable {
		q.setDevEvent(q.devEvent & 0xffff)
	}
	q.f.Full()
	flags := shmem.Load16(q.r.desc, descSize*int(q.avail)+14)
	return available(flags, q.availWrap)
}

// setDevEvent stores v (off_wrap | flags<<16) as the device area in one
// 32-bit store and marks it in the dirty log.
func (q *PackedQueue) setDevEvent(v uint32) {
	q.devEvent = v
	shmem.Store32(q.r.used, 0, v)
	if q.usedLog != nil {
		q.usedLog.Mark(q.cfg.Used, eventBytes)
	}
}

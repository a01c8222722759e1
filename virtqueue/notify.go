package virtqueue

import "github.com/vhostd/vhostd/internal/shmem"

// Notification suppression, virtio 1.x sections 2.7.7 (driver to device:
// used.flags NO_NOTIFY or avail_event) and 2.7.10 (device to driver:
// avail.flags NO_INTERRUPT or used_event). With EVENT_IDX the 16-bit
// event fields are the last fields of the two rings.

// NeedsNotify reports whether the guest wants a call (interrupt) for the
// used entries pushed since the previous NeedsNotify. Call it after
// PushBatch; if true, signal the call eventfd. Under EVENT_IDX it
// remembers what it answered for, so ask once per push batch (or once per
// several: one call covers everything pushed since the last).
//
// The guest's avail.flags and used_event are hints (BAD-INPUTS 40): any
// value they hold yields at worst one spurious or one missing call, and the
// guest that lies about them only delays its own interrupts.
func (q *Queue) NeedsNotify() bool {
	if q.r.used == nil {
		return false
	}
	// Our used.idx store must be visible before we read the guest's
	// suppression state; pairs with the full barrier the driver issues
	// between re-enabling interrupts and re-checking used.idx.
	q.f.Full()
	if !q.cfg.EventIdx {
		return shmem.Load16(q.r.avail, 0)&availFNoInterrupt == 0
	}
	old, cur := q.signalled, q.nextUsed
	valid := q.signalledValid
	q.signalled, q.signalledValid = cur, true
	if !valid {
		return true
	}
	ev := shmem.Load16(q.r.avail, 4+2*int(q.cfg.Size)) // used_event
	// vring_need_event: notify if used_event lies in [old, cur).
	return cur-ev-1 < cur-old
}

// DisableNotify asks the guest not to kick while the worker polls. Without
// EVENT_IDX it sets VRING_USED_F_NO_NOTIFY; with EVENT_IDX it does
// nothing: avail_event stays at the index EnableNotify left, which the
// guest's new avail entries pass without a kick. Kicks may still arrive
// (the guest may not have seen the change yet); they are harmless.
func (q *Queue) DisableNotify() {
	if q.r.used == nil || q.cfg.EventIdx || q.usedFlags&usedFNoNotify != 0 {
		return
	}
	q.usedFlags |= usedFNoNotify
	q.publishUsed()
}

// EnableNotify asks the guest to kick on the next new avail entry, then
// closes the lost-wakeup race: after a full fence it reads avail.idx once
// more and reports whether work arrived meanwhile. pending == true means
// do not sleep: call DisableNotify and PopBatch again. pending == false
// means sleep on the kick eventfd (BAD-INPUTS 44); a kick will come.
//
// Why no wake-up is lost: our store (flags or avail_event), the fence,
// and our load of avail.idx are ordered; the driver stores avail.idx, issues
// its own full barrier, then reads flags/avail_event. Either our load sees
// its new idx, or its read sees our store and it kicks. (Under EVENT_IDX
// avail_event is written as two atomic steps; the intermediate value is
// also written before our fence, so the argument is unchanged.)
//
// On a broken queue it does nothing and returns false.
func (q *Queue) EnableNotify() (pending bool) {
	if q.r.used == nil || q.broken != nil {
		return false
	}
	if q.cfg.EventIdx {
		off := 4 + usedElemSize*int(q.cfg.Size)
		shmem.Store16(q.r.used, off, q.lastAvail) // avail_event
		q.logUsedBytes(uint64(off), 2)
	} else if q.usedFlags&usedFNoNotify != 0 {
		q.usedFlags &^= usedFNoNotify
		q.publishUsed()
	}
	q.f.Full()
	return shmem.Load16(q.r.avail, 2) != q.lastAvail
}

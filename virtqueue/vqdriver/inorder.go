package vqdriver

import "github.com/vhostd/vhostd/internal/shmem"

// inOrderBatch is the used entry an IN_ORDER driver is working through:
// with VIRTIO_F_IN_ORDER the device may write one entry, at the first
// position of a batch, with the id of the batch's last buffer, and move
// used.idx past the whole batch (virtio 1.x, split ring, "In-order use
// of descriptors").
type inOrderBatch struct {
	open bool
	last uint16 // the id that ends the batch
	len  uint32 // its length; the buffers before it get 0
}

// usedInOrder is Used for an IN_ORDER driver: buffers come back in the
// order they were made available (the avail ring still holds their heads),
// the entry at the first position of a batch saying where it ends.
func (d *Driver) usedInOrder() (Completion, bool) {
	if d.UsedIdx() == d.lastUsed {
		d.batch.open = false
		return Completion{}, false
	}
	mask := int(d.cfg.Size - 1)
	if !d.batch.open {
		off := 4 + 8*(int(d.lastUsed)&mask)
		d.batch = inOrderBatch{open: true, last: uint16(shmem.Get32(d.used, off)), len: shmem.Get32(d.used, off+4)}
	}
	head := shmem.Load16(d.avail, 4+2*(int(d.lastUsed)&mask))
	n := uint32(0)
	if head == d.batch.last {
		n, d.batch.open = d.batch.len, false
	}
	d.lastUsed++
	return d.complete(uint32(head), n), true
}

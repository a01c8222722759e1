package vqdriver

import "github.com/vhostd/vhostd/internal/shmem"

// heap is a Driver that only places buffers in d's slabs.
func (d *PackedDriver) heap() *Driver {
	return &Driver{mem: d.mem, base: d.base, cfg: Config{Heap: d.cfg.Heap, Slab: d.cfg.Slab}}
}

// takeID reserves a buffer id and slots ring slots.
func (d *PackedDriver) takeID(slots int) (uint16, error) {
	if len(d.freeIDs) == 0 || slots > d.freeSlot {
		return 0, ErrNoDescs
	}
	id := d.freeIDs[len(d.freeIDs)-1]
	d.freeIDs = d.freeIDs[:len(d.freeIDs)-1]
	d.freeSlot -= slots
	return id, nil
}

// AddChain writes a chain of direct descriptors (out buffers copied into
// guest memory, then in writable buffers of in[i] bytes, all in the id's
// slab) into the next len(out)+len(in) ring slots. Every descriptor but
// the head is complete at once; the head gets its id and flags at
// Publish, so a batch becomes visible at once.
func (d *PackedDriver) AddChain(out [][]byte, in []int) (id uint16, err error) {
	n := len(out) + len(in)
	if n == 0 {
		return 0, ErrNoBuffers
	}
	if id, err = d.takeID(n); err != nil {
		return 0, err
	}
	bufs, err := d.heap().placeBuffers(id, 0, out, in)
	if err != nil {
		d.release(id, n)
		return 0, err
	}
	for i, b := range bufs {
		flags := b.Flags | AvailFlags(d.wrap)
		if i+1 < n {
			flags |= FlagNext
		}
		d.put(i == 0, PackedDesc{Addr: b.Addr, Len: b.Len, ID: id, Flags: flags})
	}
	d.track(id, n, bufs)
	return id, nil
}

// AddChainIndirect is AddChain with the buffers in an indirect table at
// the start of the id's slab: the chain takes one ring slot.
func (d *PackedDriver) AddChainIndirect(out [][]byte, in []int) (id uint16, err error) {
	n := len(out) + len(in)
	if n == 0 {
		return 0, ErrNoBuffers
	}
	if id, err = d.takeID(1); err != nil {
		return 0, err
	}
	tbl := uint64(n) * DescSize
	bufs, err := d.heap().placeBuffers(id, tbl, out, in)
	if err != nil {
		d.release(id, 1)
		return 0, err
	}
	at := d.cfg.Heap + uint64(id)*d.cfg.Slab
	for i, b := range bufs {
		d.WriteTableAt(at+uint64(i)*DescSize, PackedDesc{Addr: b.Addr, Len: b.Len, Flags: b.Flags})
	}
	d.put(true, PackedDesc{Addr: at, Len: uint32(tbl), ID: id, Flags: FlagIndirect | AvailFlags(d.wrap)})
	d.track(id, 1, bufs)
	return id, nil
}

func (d *PackedDriver) release(id uint16, slots int) {
	d.freeIDs = append(d.freeIDs, id)
	d.freeSlot += slots
}

// put writes x at the next slot and moves past it. A head keeps the
// slot's old id and flags (never available, never used under the
// driver's current counters) until Publish.
func (d *PackedDriver) put(head bool, x PackedDesc) {
	off := 16 * int(d.next)
	if head {
		shmem.StoreDesc(d.desc, off, x.Addr, uint64(x.Len)|uint64(shmem.Load32(d.desc, off+12))<<32)
		d.pending = append(d.pending, pendingHead{slot: d.next, id: x.ID, flags: x.Flags})
	} else {
		d.WriteRaw(d.next, x)
	}
	d.next++
	if d.next == d.cfg.Size {
		d.next, d.wrap = 0, d.wrap^1
	}
}

func (d *PackedDriver) track(id uint16, slots int, bufs []Desc) {
	c := packedInflight{slots: uint16(slots), live: true}
	for _, b := range bufs {
		if b.Flags&FlagWrite != 0 {
			c.in = append(c.in, [2]uint64{b.Addr, uint64(b.Len)})
		}
	}
	d.chains[id] = c
}

// Publish stores the flags of every head added since the last Publish,
// the first chain's last, and reports whether the device asked for a kick
// (its event suppression area, as Linux's virtqueue_kick_prepare_packed
// reads it).
func (d *PackedDriver) Publish() (kick bool) {
	for i := len(d.pending) - 1; i >= 0; i-- {
		h := d.pending[i]
		shmem.Store32(d.desc, 16*int(h.slot)+12, uint32(h.id)|uint32(h.flags)<<16)
	}
	d.pending = d.pending[:0]
	oldPos, cur := d.published, d.NextAvail()
	d.published = cur
	barrier.Full()
	v := shmem.Load32(d.dev, 0)
	flags := uint16(v>>16) & 3
	if flags != EventDesc || !d.cfg.EventIdx {
		return flags != EventDisable
	}
	size := d.cfg.Size
	newIdx, old := d.next, oldPos&^WrapBit
	if oldPos>>15 != d.wrap {
		old -= size
	}
	ev := uint16(v) &^ WrapBit
	if uint16(v)>>15 != d.wrap {
		ev -= size
	}
	return newIdx-ev-1 < newIdx-old
}

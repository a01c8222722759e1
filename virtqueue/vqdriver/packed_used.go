package vqdriver

import "github.com/vhostd/vhostd/internal/shmem"

// usedAt reads the id and len of slot's descriptor (one load with its
// flags) and whether the flags mark it used under the driver's used wrap
// counter.
func (d *PackedDriver) usedAt(slot uint16) (id uint16, n uint32, used bool) {
	w, _ := shmem.LoadPackedDesc(d.desc, 16*int(slot))
	id, flags := uint16(w>>32), uint16(w>>48)
	a, u := flags>>7&1, flags>>15&1
	return id, uint32(w), a == u && u == d.usedWrp
}

// Used returns the next used descriptor, if the device has written one,
// and moves past the slots its chain took (one slot for an id the driver
// did not have in flight).
func (d *PackedDriver) Used() (Completion, bool) {
	id, n, ok := d.usedAt(d.lastUsed)
	if !ok {
		return Completion{}, false
	}
	c := Completion{Head: id, Len: n}
	slots := uint16(1)
	if id < d.cfg.Size && d.chains[id].live {
		ch := d.chains[id]
		d.chains[id] = packedInflight{}
		c.Known, slots = true, ch.slots
		c.Written = gather(d.Mem, ch.in, n)
		d.release(id, int(ch.slots))
	}
	d.lastUsed += slots
	if d.lastUsed >= d.cfg.Size {
		d.lastUsed -= d.cfg.Size
		d.usedWrp ^= 1
	}
	return c, true
}

// UsedAll drains every used descriptor the device has written.
func (d *PackedDriver) UsedAll() []Completion { return drain(d.Used) }

// drain collects completions from next until it has none.
func drain(next func() (Completion, bool)) []Completion {
	var cs []Completion
	for {
		c, ok := next()
		if !ok {
			return cs
		}
		cs = append(cs, c)
	}
}

// gather copies the first n bytes of the writable buffers in (guest
// address, length) out of guest memory, in order.
func gather(mem func(gpa, n uint64) []byte, in [][2]uint64, n uint32) []byte {
	rem := uint64(n)
	out := []byte{}
	for _, b := range in {
		k := min(rem, b[1])
		out = append(out, mem(b[0], k)...)
		rem -= k
	}
	return out
}

// NextUsed is the driver's next slot to read a used descriptor from, wrap
// counter in bit 15.
func (d *PackedDriver) NextUsed() uint16 { return d.lastUsed | d.usedWrp<<15 }

// EnableInterrupts asks the device to call: with EVENT_IDX DESC at the
// next used position, else ENABLE; then, after a full fence, reports
// whether a used descriptor arrived meanwhile.
func (d *PackedDriver) EnableInterrupts() (pending bool) {
	if d.cfg.EventIdx {
		d.SetDriverEvent(d.NextUsed(), EventDesc)
	} else {
		d.SetDriverEvent(0, EventEnable)
	}
	barrier.Full()
	_, _, ok := d.usedAt(d.lastUsed)
	return ok
}

// DisableInterrupts asks the device not to call.
func (d *PackedDriver) DisableInterrupts() { d.SetDriverEvent(0, EventDisable) }

// SetDriverEvent writes the driver event suppression area (raw).
func (d *PackedDriver) SetDriverEvent(offWrap, flags uint16) {
	shmem.Store32(d.drv, 0, uint32(offWrap)|uint32(flags)<<16)
}

// DeviceEvent reads the device event suppression area.
func (d *PackedDriver) DeviceEvent() (offWrap, flags uint16) {
	v := shmem.Load32(d.dev, 0)
	return uint16(v), uint16(v >> 16)
}

// AddRaw writes ds into the next len(ds) ring slots as one chain, each
// with the AVAIL/USED pair of its slot's lap, the first (the head) last,
// and moves past them. Raw: no id or buffer bookkeeping and no
// allocation (benchmarks); reap such chains with UsedRaw.
func (d *PackedDriver) AddRaw(ds []PackedDesc) {
	head, wrap := d.next, d.wrap
	for i := len(ds) - 1; i >= 0; i-- {
		slot, w := head+uint16(i), wrap
		if slot >= d.cfg.Size {
			slot, w = slot-d.cfg.Size, w^1
		}
		x := ds[i]
		x.Flags |= AvailFlags(w)
		d.WriteRaw(slot, x)
	}
	d.next += uint16(len(ds))
	if d.next >= d.cfg.Size {
		d.next, d.wrap = d.next-d.cfg.Size, d.wrap^1
	}
}

// UsedRaw reads the next used descriptor, if written, and moves past the
// slots ring slots its chain took (no bookkeeping, no allocation).
func (d *PackedDriver) UsedRaw(slots uint16) (id uint16, n uint32, ok bool) {
	id, n, ok = d.usedAt(d.lastUsed)
	if !ok {
		return 0, 0, false
	}
	d.lastUsed += slots
	if d.lastUsed >= d.cfg.Size {
		d.lastUsed -= d.cfg.Size
		d.usedWrp ^= 1
	}
	return id, n, true
}

// DeviceUsed looks ahead of the driver, without moving: the number of used
// descriptors the device has written that Used has not returned yet, and
// the position (wrap counter in bit 15) past them, where the device's used
// position stands once they are counted.
func (d *PackedDriver) DeviceUsed() (n int, pos uint16) {
	slot, wrap := d.lastUsed, d.usedWrp
	for seen := 0; seen < int(d.cfg.Size); n++ {
		w, _ := shmem.LoadPackedDesc(d.desc, 16*int(slot))
		id, flags := uint16(w>>32), uint16(w>>48)
		if a, u := flags>>7&1, flags>>15&1; a != u || u != wrap {
			break
		}
		slots := uint16(1)
		if id < d.cfg.Size && d.chains[id].live {
			slots = d.chains[id].slots
		}
		seen += int(slots)
		if slot += slots; slot >= d.cfg.Size {
			slot, wrap = slot-d.cfg.Size, wrap^1
		}
	}
	return n, slot | wrap<<15
}

package vqdriver

import (
	"fmt"

	"github.com/vhostd/vhostd/internal/shmem"
)

// Packed ring constants, virtio 1.x 2.8.
const (
	FlagAvail = 1 << 7  // VRING_PACKED_DESC_F_AVAIL
	FlagUsed  = 1 << 15 // VRING_PACKED_DESC_F_USED

	// Event suppression flags (struct pvirtq_event_suppress).
	EventEnable  = 0
	EventDisable = 1
	EventDesc    = 2

	// WrapBit is the wrap counter's bit in a packed ring position.
	WrapBit = 1 << 15
)

// PackedDesc is one packed-ring descriptor as the guest writes it.
type PackedDesc struct {
	Addr  uint64
	Len   uint32
	ID    uint16
	Flags uint16
}

// PackedConfig places one packed ring and its buffer heap in guest memory.
type PackedConfig struct {
	Size           uint16 // queue size, any value in 1..32768
	Desc           uint64 // descriptor ring (16*Size bytes)
	Driver, Device uint64 // event suppression areas (4 bytes each)
	EventIdx       bool
	// Heap holds Size slabs of Slab bytes: the chain with buffer id i keeps
	// its buffers (and indirect table) in slab i.
	Heap, Slab uint64
}

// PackedLayout lays out a packed ring at base (rounded up to 16): the
// descriptor ring, the driver area, the device area, then the heap.
func PackedLayout(size uint16, base, slab uint64) PackedConfig {
	desc := (base + 15) &^ 15
	drv := desc + 16*uint64(size)
	return PackedConfig{Size: size, Desc: desc, Driver: drv, Device: drv + 4, Heap: drv + 16, Slab: slab}
}

// End is the first GPA past c's heap.
func (c PackedConfig) End() uint64 { return c.Heap + uint64(c.Size)*c.Slab }

type packedInflight struct {
	slots uint16 // ring slots the chain takes
	in    [][2]uint64
	live  bool
}

// pendingHead is a chain head whose flags Publish has yet to store.
type pendingHead struct {
	slot  uint16
	id    uint16
	flags uint16
}

// PackedDriver is the guest side of one packed ring, for tests: it plays
// the Linux driver's part (virtio 1.x 2.8.21-23), with the same buffer
// heap as Driver. Like Driver it may run in one goroutine while the
// device runs in another.
type PackedDriver struct {
	mem  []byte
	base uint64
	cfg  PackedConfig

	desc, drv, dev []byte

	freeIDs  []uint16
	chains   []packedInflight
	freeSlot int

	next, wrap        uint16 // next slot to write, the driver's avail wrap counter
	published         uint16 // next (with wrap in bit 15) at the last Publish
	pending           []pendingHead
	lastUsed, usedWrp uint16
}

// NewPacked builds a packed driver over mem (guest memory at GPA base)
// and zeroes the ring and both event areas.
func NewPacked(mem []byte, base uint64, c PackedConfig) (*PackedDriver, error) {
	if c.Size == 0 || c.Size > 32768 {
		return nil, fmt.Errorf("vqdriver: bad packed size %d", c.Size)
	}
	d := &PackedDriver{mem: mem, base: base, cfg: c, wrap: 1, usedWrp: 1, published: WrapBit}
	h := &Driver{mem: mem, base: base}
	var ok bool
	if d.desc, ok = h.slice(c.Desc, 16*uint64(c.Size)); !ok {
		return nil, fmt.Errorf("vqdriver: packed ring outside memory")
	}
	if d.drv, ok = h.slice(c.Driver, 4); !ok {
		return nil, fmt.Errorf("vqdriver: driver area outside memory")
	}
	if d.dev, ok = h.slice(c.Device, 4); !ok {
		return nil, fmt.Errorf("vqdriver: device area outside memory")
	}
	if _, ok = h.slice(c.Heap, uint64(c.Size)*c.Slab); !ok {
		return nil, fmt.Errorf("vqdriver: heap outside memory")
	}
	clear(d.desc)
	clear(d.drv)
	clear(d.dev)
	d.chains = make([]packedInflight, c.Size)
	d.freeIDs = make([]uint16, c.Size)
	for i := range d.freeIDs {
		d.freeIDs[i] = c.Size - 1 - uint16(i)
	}
	d.freeSlot = int(c.Size)
	return d, nil
}

// Config returns the ring's placement.
func (d *PackedDriver) Config() PackedConfig { return d.cfg }

// Mem returns the n bytes of guest memory at gpa (panics outside).
func (d *PackedDriver) Mem(gpa, n uint64) []byte {
	return (&Driver{mem: d.mem, base: d.base}).Mem(gpa, n)
}

// StartAt puts both positions at pos (slot in bits 0-14, wrap counter in
// bit 15), as a ring restarted with that SET_VRING_BASE value. Only with
// the device stopped and nothing in flight.
func (d *PackedDriver) StartAt(pos uint16) {
	d.next, d.wrap = pos&^WrapBit, pos>>15
	d.lastUsed, d.usedWrp = d.next, d.wrap
	d.published = pos
}

// NextAvail is the driver's next slot to write, wrap counter in bit 15.
func (d *PackedDriver) NextAvail() uint16 { return d.next | d.wrap<<15 }

// FreeSlots is the number of ring slots not held by a chain.
func (d *PackedDriver) FreeSlots() int { return d.freeSlot }

// AvailFlags is the AVAIL/USED pair that marks a descriptor available
// under wrap counter wrap.
func AvailFlags(wrap uint16) uint16 {
	if wrap&1 != 0 {
		return FlagAvail
	}
	return FlagUsed
}

// WriteRaw writes descriptor slot of the ring, flags last (addr, then
// len, id and flags in one atomic store). Raw: no bookkeeping; safe to call from a
// goroutine while another uses the driver.
func (d *PackedDriver) WriteRaw(slot uint16, x PackedDesc) {
	shmem.StoreDesc(d.desc, 16*int(slot), x.Addr, uint64(x.Len)|uint64(x.ID)<<32|uint64(x.Flags)<<48)
}

// ReadRaw reads descriptor slot of the ring.
func (d *PackedDriver) ReadRaw(slot uint16) PackedDesc {
	addr, w := shmem.LoadDesc(d.desc, 16*int(slot))
	return PackedDesc{Addr: addr, Len: uint32(w), ID: uint16(w >> 32), Flags: uint16(w >> 48)}
}

// WriteTableAt writes x as an indirect table entry at gpa (raw).
func (d *PackedDriver) WriteTableAt(gpa uint64, x PackedDesc) {
	shmem.StoreDesc(d.Mem(gpa, DescSize), 0, x.Addr, uint64(x.Len)|uint64(x.ID)<<32|uint64(x.Flags)<<48)
}

package virtqueue

import (
	"fmt"

	"github.com/vhostd/vhostd/internal/shmem"
)

// Split ring constants, virtio 1.x section 2.7 (include/uapi/linux/virtio_ring.h).
const (
	descFNext     = 1 // VRING_DESC_F_NEXT: the next field is valid
	descFWrite    = 2 // VRING_DESC_F_WRITE: device-writable buffer
	descFIndirect = 4 // VRING_DESC_F_INDIRECT: buffer is a descriptor table

	availFNoInterrupt = 1 // VRING_AVAIL_F_NO_INTERRUPT: driver asks for no calls
	usedFNoNotify     = 1 // VRING_USED_F_NO_NOTIFY: device asks for no kicks

	descSize     = 16 // struct virtq_desc: le64 addr, le32 len, le16 flags, le16 next
	usedElemSize = 8  // struct virtq_used_elem: le32 id, le32 len

	// MaxSize is the largest split queue (virtio 1.x 2.7: Queue Size <= 32768).
	MaxSize = 32768
	// maxIndirect bounds the entries of one indirect table (BAD-INPUTS 32;
	// Linux vhost and DPDK use the same 16-bit limit).
	maxIndirect = 65535
)

// Config is one split ring as the driver set it up. All fields come from
// the front-end and are checked by Validate.
type Config struct {
	Size     uint16 // queue size: a power of two, 1..32768 (0 is invalid)
	Desc     uint64 // guest physical address of the descriptor table (16*Size bytes, 16-aligned)
	Avail    uint64 // guest physical address of the avail ring (6+2*Size bytes, 2-aligned)
	Used     uint64 // guest physical address of the used ring (6+8*Size bytes, 4-aligned)
	EventIdx bool   // VIRTIO_RING_F_EVENT_IDX negotiated
	Indirect bool   // VIRTIO_RING_F_INDIRECT_DESC negotiated
	// InOrderTX: VIRTIO_F_IN_ORDER negotiated and the ring is a transmit
	// queue, every chain pushed with length 0: PushBatch of a split ring
	// then writes one used element for the whole batch (doc.go).
	InOrderTX bool
	// Packed: VIRTIO_F_RING_PACKED negotiated. Desc is then the descriptor
	// ring, Avail the driver event suppression area and Used the device
	// event suppression area (4 bytes each); see packed_config.go.
	Packed bool
}

// DescBytes, AvailBytes and UsedBytes are the extents of the three parts
// of a split ring of c.Size entries (virtio 1.x 2.7, the EVENT_IDX fields
// included whether or not the feature was negotiated, as vhost does).
func (c Config) DescBytes() uint64  { return descSize * uint64(c.Size) }
func (c Config) AvailBytes() uint64 { return c.areaBytes(6 + 2*uint64(c.Size)) }
func (c Config) UsedBytes() uint64  { return c.areaBytes(6 + usedElemSize*uint64(c.Size)) }

// Area is one of the three parts of a split ring: where it starts, how many
// bytes it spans and the alignment virtio 1.x 2.7 requires of its guest
// physical address.
type Area struct {
	Name  string // "desc", "avail" or "used"
	Addr  uint64 // the address c holds for this part
	Bytes uint64
	Align uint64
}

// Areas lists c's descriptor table, avail ring and used ring, in that
// order, with the extents DescBytes, AvailBytes and UsedBytes give and the
// alignments Validate checks. A caller that knows the parts by another
// address (vhost: the front-end's user addresses) fills c with those and
// translates each Area itself.
func (c Config) Areas() [3]Area {
	return [3]Area{
		{Name: "desc", Addr: c.Desc, Bytes: c.DescBytes(), Align: 16},
		{Name: "avail", Addr: c.Avail, Bytes: c.AvailBytes(), Align: c.areaAlign(2)},
		{Name: "used", Addr: c.Used, Bytes: c.UsedBytes(), Align: c.areaAlign(4)},
	}
}

// Validate checks c against mem (BAD-INPUTS 23, 24): size a power of two
// in 1..32768; desc 16-aligned, avail 2-aligned, used 4-aligned; each
// part's whole extent inside one region. vhost calls it to reject
// SET_VRING_NUM / SET_VRING_ADDR and again when a ring starts. A nil mem
// checks the size and alignment only.
func (c Config) Validate(mem *Memory) error {
	check := c.checkSplit
	if c.Packed {
		check = c.checkPacked
	}
	if err := check(); err != nil || mem == nil {
		return err
	}
	_, err := c.translate(mem)
	return err
}

// checkSplit is Validate's check of a split ring's size and alignment.
func (c Config) checkSplit() error {
	if c.Size == 0 || c.Size > MaxSize || c.Size&(c.Size-1) != 0 {
		return fmt.Errorf("%w: size %d is not a power of two in 1..%d", ErrInvalidConfig, c.Size, MaxSize)
	}
	if c.Desc%16 != 0 || c.Avail%2 != 0 || c.Used%4 != 0 {
		return fmt.Errorf("%w: desc %#x, avail %#x, used %#x need alignment 16, 2, 4", ErrRingAddress, c.Desc, c.Avail, c.Used)
	}
	return nil
}

// translate translates the ring's parts through mem, for either layout.
func (c Config) translate(mem *Memory) (rings, error) {
	if c.Packed {
		return c.packedRings(mem)
	}
	return c.rings(mem)
}

// rings holds the cached slices of one ring's three parts.
type rings struct {
	desc, avail, used []byte
}

// rings translates the three parts of the ring. The avail and used slices
// are two bytes longer than their extents when memory allows, so the
// trailing 16-bit used_event and avail_event fields sit in an aligned
// 32-bit word inside the slice and can be accessed atomically; those two
// extra bytes are never modified.
func (c Config) rings(mem *Memory) (rings, error) {
	var r rings
	var ok bool
	if r.desc, ok = mem.Slice(c.Desc, c.DescBytes()); !ok {
		return r, fmt.Errorf("%w: descriptor table %#x+%d", ErrRingAddress, c.Desc, c.DescBytes())
	}
	if _, ok = mem.Slice(c.Avail, c.AvailBytes()); !ok {
		return r, fmt.Errorf("%w: avail ring %#x+%d", ErrRingAddress, c.Avail, c.AvailBytes())
	}
	if r.avail, ok = mem.Slice(c.Avail, c.AvailBytes()+2); !ok {
		r.avail, _ = mem.Slice(c.Avail, c.AvailBytes())
	}
	if _, ok = mem.Slice(c.Used, c.UsedBytes()); !ok {
		return r, fmt.Errorf("%w: used ring %#x+%d", ErrRingAddress, c.Used, c.UsedBytes())
	}
	if r.used, ok = mem.Slice(c.Used, c.UsedBytes()+2); !ok {
		r.used, _ = mem.Slice(c.Used, c.UsedBytes())
	}
	// The descriptor table is read with 64-bit atomics; a region mapped at
	// a host address whose alignment differs from its guest address would
	// defeat that. mmap regions are page aligned, so this never fires in
	// practice; refuse rather than silently fall back on every descriptor.
	if !shmem.Aligned(r.desc, 8) {
		return r, fmt.Errorf("%w: descriptor table not 8-aligned in host memory", ErrRingAddress)
	}
	return r, nil
}

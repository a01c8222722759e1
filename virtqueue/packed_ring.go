package virtqueue

import "fmt"

// Ring is what a data path drives, split or packed: *Queue and
// *PackedQueue implement it with the same contracts (doc.go). Calls go
// through the interface once per batch, never per chain.
type Ring interface {
	Config() Config
	PopBatch(chains []Chain) (int, error)
	Unpop(n int)
	Rewind(n int)
	PushBatch(used []Used)
	NeedsNotify() bool
	DisableNotify()
	EnableNotify() bool
	NextAvail() uint16
	NextUsed() uint16
	Broken() error
	SetMemory(mem *Memory) error
	SetLog(log *DirtyLog, usedOn bool, usedGPA uint64)
	Logging() bool
	MarkWritten(bufs [][]byte, n uint32)
	HostContains(addr uintptr) bool
}

var (
	_ Ring = (*Queue)(nil)
	_ Ring = (*PackedQueue)(nil)
)

// NewRing builds the ring c describes from the SET_VRING_BASE value base:
// a PackedQueue when c.Packed (VIRTIO_F_RING_PACKED, feature bit 34), else
// a Queue, whose base must fit 16 bits.
func NewRing(mem *Memory, c Config, base uint32) (Ring, error) {
	if c.Packed {
		if q, err := NewPackedQueue(mem, c, base); err == nil {
			return q, nil
		} else {
			return nil, err
		}
	}
	if base > 0xffff {
		return nil, fmt.Errorf("%w: split ring base %#x over 16 bits", ErrInvalidConfig, base)
	}
	if q, err := NewQueue(mem, c, uint16(base)); err == nil {
		return q, nil
	} else {
		return nil, err
	}
}

// RingBase is the GET_VRING_BASE value of r: NextAvail for a split ring,
// PackedQueue.Base for a packed one.
func RingBase(r Ring) uint32 {
	if p, ok := r.(*PackedQueue); ok {
		return p.Base()
	}
	return uint32(r.NextAvail())
}

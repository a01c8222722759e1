package virtqueue

import (
	"errors"
	"fmt"

	"github.com/vhostd/vhostd/internal/shmem"
)

// Packed ring constants, virtio 1.x section 2.8
// (include/uapi/linux/virtio_ring.h). The NEXT, WRITE and INDIRECT
// descriptor flags keep their split-ring values.
const (
	packedFAvail = 1 << 7  // VRING_PACKED_DESC_F_AVAIL
	packedFUsed  = 1 << 15 // VRING_PACKED_DESC_F_USED

	// Event suppression flags (struct pvirtq_event_suppress, 2.8.10).
	eventEnable  = 0 // RING_EVENT_FLAGS_ENABLE: notify on every event
	eventDisable = 1 // RING_EVENT_FLAGS_DISABLE: do not notify
	eventDesc    = 2 // RING_EVENT_FLAGS_DESC: notify at off_wrap (EVENT_IDX)

	eventBytes = 4 // le16 off_wrap, le16 flags

	// wrapBit is where a ring position carries its wrap counter: bit 15 of
	// off_wrap, and of each half of the packed GET/SET_VRING_BASE value.
	wrapBit = 1 << 15
)

// Configuration errors of packed rings.
var (
	errPackedConfig = fmt.Errorf("%w: a packed ring (Config.Packed) needs NewPackedQueue or NewRing", ErrInvalidConfig)
	// ErrPackedBase is returned by NewPackedQueue for a ring base whose
	// index is not below the queue size.
	ErrPackedBase = errors.New("virtqueue: packed ring base index >= queue size")
)

// areaBytes is the extent of the avail (driver) or used (device) area:
// split, as given; packed, one event suppression structure.
func (c Config) areaBytes(split uint64) uint64 {
	if c.Packed {
		return eventBytes
	}
	return split
}

// areaAlign is the alignment of the avail or used area: split, as given;
// packed, 4 for both event suppression structures (virtio 1.x 2.8.10.1).
func (c Config) areaAlign(split uint64) uint64 {
	if c.Packed {
		return 4
	}
	return split
}

// checkPacked is Validate's check of a packed ring (BAD-INPUTS 23, 24):
// any size in 1..32768 (virtio 1.x 2.8: packed rings need no power of
// two), descriptor ring 16-aligned, event suppression areas 4-aligned;
// Validate then checks that each part lies inside one region.
func (c Config) checkPacked() error {
	if c.Size == 0 || c.Size > MaxSize {
		return fmt.Errorf("%w: packed ring size %d not in 1..%d", ErrInvalidConfig, c.Size, MaxSize)
	}
	if c.Desc%16 != 0 || c.Avail%4 != 0 || c.Used%4 != 0 {
		return fmt.Errorf("%w: packed desc %#x, driver area %#x, device area %#x need alignment 16, 4, 4", ErrRingAddress, c.Desc, c.Avail, c.Used)
	}
	return nil
}

// packedRings translates the three parts of a packed ring: rings.desc is
// the descriptor ring, rings.avail the driver event suppression area and
// rings.used the device's.
func (c Config) packedRings(mem *Memory) (rings, error) {
	var r rings
	var ok bool
	if r.desc, ok = mem.Slice(c.Desc, c.DescBytes()); !ok {
		return r, fmt.Errorf("%w: packed descriptor ring %#x+%d", ErrRingAddress, c.Desc, c.DescBytes())
	}
	if r.avail, ok = mem.Slice(c.Avail, eventBytes); !ok {
		return r, fmt.Errorf("%w: driver event suppression area %#x+%d", ErrRingAddress, c.Avail, eventBytes)
	}
	if r.used, ok = mem.Slice(c.Used, eventBytes); !ok {
		return r, fmt.Errorf("%w: device event suppression area %#x+%d", ErrRingAddress, c.Used, eventBytes)
	}
	if !shmem.Aligned(r.desc, 8) || !shmem.Aligned(r.avail, 4) || !shmem.Aligned(r.used, 4) {
		return r, fmt.Errorf("%w: packed ring misaligned in host memory", ErrRingAddress)
	}
	return r, nil
}

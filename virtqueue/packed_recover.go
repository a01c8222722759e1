package virtqueue

import (
	"fmt"

	"github.com/vhostd/vhostd/internal/shmem"
)

// RingPosition reads from a packed ring in guest memory (c.Packed) where
// its device side stands: the slot the next used descriptor goes to, wrap
// counter in bit 15, which is also where popping resumes once every
// chain popped has been pushed. A front-end may not know it: QEMU does not
// restore a packed ring's position after a back-end restart (it has no
// index in guest memory to read, as it has for split rings) and sends the
// position it last knew, from before any traffic the dead back-end moved.
//
// It reads only the USED flag bit of each descriptor. Over the N positions
// from the device's used position p on, every slot's USED bit is the
// inverse of the wrap counter of p: an available descriptor carries USED =
// !wrap (virtio 1.x 2.8.1), a used one, written a lap before, carries
// USED = its own lap's wrap, which is the inverse of the next lap's. So
// the bits are one value before the used slot and the other from it on,
// and the position is the first slot whose bit differs from slot 0's,
// with slot 0's bit as wrap counter; if none differs, slot 0 with the
// inverse of that bit (a fresh, zeroed ring reads 0x8000, as it should).
// This holds because PushBatch marks every slot of a chain used, not only
// the first. A back-end that died in the middle of a PushBatch leaves
// used descriptors the driver was never shown (the batch's first one is
// written last): the position read is the batch's start (unless the
// batch crossed slot 0, whose bit then misleads the scan), but the slots
// after it no longer read as available either way, and the queue can stall
// until the guest resets the device (README, Packed rings; in-flight
// tracking would be the cure). A guest that scribbles on its ring loses
// its own queue the same way.
func (c Config) RingPosition(mem *Memory) (uint16, error) {
	if !c.Packed {
		return 0, fmt.Errorf("%w: RingPosition on a split ring", ErrInvalidConfig)
	}
	if err := c.checkPacked(); err != nil {
		return 0, err
	}
	r, err := c.packedRings(mem)
	if err != nil {
		return 0, err
	}
	usedBit := func(slot uint16) uint16 {
		w, _ := shmem.LoadPackedDesc(r.desc, descSize*int(slot))
		return uint16(w>>48) / packedFUsed & 1
	}
	b0 := usedBit(0)
	for i := uint16(1); i < c.Size; i++ {
		if usedBit(i) != b0 {
			return i | b0<<15, nil
		}
	}
	return (b0 ^ 1) << 15, nil
}

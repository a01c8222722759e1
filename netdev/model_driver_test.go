package netdev

// The model's guest driver over either ring layout (model_test.go): the
// split vqdriver.Driver or the packed vqdriver.PackedDriver, behind what
// the model asks of a ring. Positions the model keeps (heads, seqs,
// reaped) count chains, which for a split ring is its avail index.

import (
	"fmt"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

type modelDriver interface {
	vqdriver.Guest
	FreeDescs() int
	// AvailIdx counts the chains posted, UsedIdx the chains the device
	// has used (read by the guest or not), both mod 2^16.
	AvailIdx() uint16
	UsedIdx() uint16
	// Base is the GET_VRING_BASE value of the ring stopped with every
	// chain popped returned.
	Base() uint32
	// area is where the ring lies: size and the three addresses of
	// SET_VRING_ADDR.
	area() (size uint16, desc, avail, used uint64)
	// usedMem is a copy of what the device writes when it returns
	// chains, to compare before and after.
	usedMem() []byte
}

// splitDriver is a split ring's driver as the model sees it.
type splitDriver struct{ *vqdriver.Driver }

func (d splitDriver) Base() uint32 { return uint32(d.UsedIdx()) }

func (d splitDriver) area() (uint16, uint64, uint64, uint64) {
	c := d.Config()
	return c.Size, c.Desc, c.Avail, c.Used
}

func (d splitDriver) usedMem() []byte {
	c := d.Config()
	return append([]byte(nil), d.Mem(c.Used, 4+8*uint64(c.Size))...)
}

// packedDriver counts the chains a packed driver posted and got back.
type packedDriver struct {
	*vqdriver.PackedDriver
	posted, used uint16
}

func (d *packedDriver) add(f func([][]byte, []int) (uint16, error), out [][]byte, in []int) (uint16, error) {
	id, err := f(out, in)
	if err == nil {
		d.posted++
	}
	return id, err
}

func (d *packedDriver) AddChain(out [][]byte, in []int) (uint16, error) {
	return d.add(d.PackedDriver.AddChain, out, in)
}

func (d *packedDriver) AddChainIndirect(out [][]byte, in []int) (uint16, error) {
	return d.add(d.PackedDriver.AddChainIndirect, out, in)
}

func (d *packedDriver) Used() (vqdriver.Completion, bool) {
	c, ok := d.PackedDriver.Used()
	if ok {
		d.used++
	}
	return c, ok
}

func (d *packedDriver) UsedAll() []vqdriver.Completion {
	var cs []vqdriver.Completion
	for c, ok := d.Used(); ok; c, ok = d.Used() {
		cs = append(cs, c)
	}
	return cs
}

func (d *packedDriver) FreeDescs() int   { return d.FreeSlots() }
func (d *packedDriver) AvailIdx() uint16 { return d.posted }

func (d *packedDriver) UsedIdx() uint16 {
	n, _ := d.DeviceUsed()
	return d.used + uint16(n)
}

func (d *packedDriver) Base() uint32 {
	_, pos := d.DeviceUsed()
	return uint32(pos) | uint32(pos)<<16
}

func (d *packedDriver) area() (uint16, uint64, uint64, uint64) {
	c := d.Config()
	return c.Size, c.Desc, c.Driver, c.Device
}

// usedMem is, for a packed ring, the device area and the used
// descriptors ahead of the driver (the guest's own posts change the rest
// of the descriptor ring).
func (d *packedDriver) usedMem() []byte {
	n, pos := d.DeviceUsed()
	return fmt.Appendf(append([]byte(nil), d.Mem(d.Config().Device, 4)...), " used=%d pos=%#x", n, pos)
}

package vhosttest

import (
	"errors"
	"fmt"
	"time"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/virtqueue/vqdriver"
	"golang.org/x/sys/unix"
)

// Ring is the driver side of one vring: where it lies in guest memory, the
// vqdriver.Driver that fills and drains it, and its eventfds.
type Ring struct {
	Index int
	// Driver adds chains (AddChain, Publish) and reads completions (Used)
	// on a split ring; nil on a packed one.
	Driver *vqdriver.Driver
	// Config is a split ring's placement in guest physical addresses.
	Config vqdriver.Config
	// Packed and PackedConfig are the same for a packed ring (the
	// front-end acked VIRTIO_F_RING_PACKED), else nil and zero.
	Packed       *vqdriver.PackedDriver
	PackedConfig vqdriver.PackedConfig
	// Guest is Driver or Packed, whichever the ring has.
	Guest vqdriver.Guest
	// DescVA, AvailVA and UsedVA are the user addresses SET_VRING_ADDR
	// sends (for a packed ring: descriptor ring, driver area, device area).
	DescVA, AvailVA, UsedVA uint64
	// Kick, Call and Err are this side's eventfds; the back-end gets
	// copies. They are closed by FrontEnd.Close.
	Kick, Call, Err int
}

func (r *Ring) close() {
	for _, fd := range []*int{&r.Kick, &r.Call, &r.Err} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// NewEventfd returns a non-blocking, close-on-exec eventfd.
func NewEventfd() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("eventfd: %w", err)
	}
	return fd, nil
}

// LayoutRing places ring i of the given size (with EVENT_IDX fields when
// eventIdx) in the first region with room, after the rings already there,
// with a heap of size slabs of f.Slab bytes, and creates its eventfds.
// Nothing is sent.
func (f *FrontEnd) LayoutRing(i int, size uint16, eventIdx bool) (*Ring, error) {
	if old := f.rings[i]; old != nil {
		old.close()
		delete(f.rings, i)
	}
	for _, reg := range f.regions {
		if reg.Mem == nil || !reg.Live {
			continue
		}
		r, end, err := f.layoutIn(reg, i, size, eventIdx)
		if err != nil {
			return nil, err
		}
		if r == nil {
			continue
		}
		reg.next = end - reg.GPA
		for _, fd := range []*int{&r.Kick, &r.Call, &r.Err} {
			if *fd, err = NewEventfd(); err != nil {
				r.close()
				return nil, err
			}
		}
		f.rings[i] = r
		return r, nil
	}
	return nil, fmt.Errorf("ring %d of size %d: no region has room", i, size)
}

// layoutIn places ring i in reg after what is there, split or packed as
// the acked features say: nil if it does not fit, and the first GPA past
// its heap.
func (f *FrontEnd) layoutIn(reg *Region, i int, size uint16, eventIdx bool) (*Ring, uint64, error) {
	va := func(gpa uint64) uint64 { return reg.UserAddr + (gpa - reg.GPA) }
	r := &Ring{Index: i, Kick: -1, Call: -1, Err: -1}
	if f.Features&(1<<vhost.FeatRingPacked) != 0 {
		c := vqdriver.PackedLayout(size, reg.GPA+reg.next, f.Slab)
		c.EventIdx = eventIdx
		if c.End() > reg.GPA+reg.Size {
			return nil, 0, nil
		}
		d, err := vqdriver.NewPacked(reg.Mem, reg.GPA, c)
		if err != nil {
			return nil, 0, err
		}
		r.Packed, r.PackedConfig, r.Guest = d, c, d
		r.DescVA, r.AvailVA, r.UsedVA = va(c.Desc), va(c.Driver), va(c.Device)
		return r, c.End(), nil
	}
	c := vqdriver.Layout(size, reg.GPA+reg.next, f.Slab)
	c.EventIdx = eventIdx
	// A front-end that acked IN_ORDER reads a batch's one used entry as
	// the whole batch.
	c.InOrder = f.Features&(1<<vhost.FeatInOrder) != 0
	if c.End() > reg.GPA+reg.Size {
		return nil, 0, nil
	}
	d, err := vqdriver.New(reg.Mem, reg.GPA, c)
	if err != nil {
		return nil, 0, err
	}
	r.Driver, r.Config, r.Guest = d, c, d
	r.DescVA, r.AvailVA, r.UsedVA = va(c.Desc), va(c.Avail), va(c.Used)
	return r, c.End(), nil
}

// Ring returns ring i, or nil if it was never laid out.
func (f *FrontEnd) Ring(i int) *Ring { return f.rings[i] }

// msg sends a request that has no reply of its own. Once REPLY_ACK is
// negotiated (f.Proto) it asks for one and fails on a refusal, so a test
// learns at once that a step was rejected; before, it only sends.
func (f *FrontEnd) msg(req vhost.Request, payload []byte, fds ...int) error {
	if f.Proto&(1<<vhost.ProtoReplyAck) != 0 {
		return f.Request(req, payload, fds...)
	}
	return f.Send(req, 0, payload, fds...)
}

// SetVringNum, SetVringBase and SetVringAddr send one message each for
// ring i (laid out by LayoutRing for SetVringAddr). Like every
// single-message helper without a reply of its own, they wait for a
// REPLY_ACK once REPLY_ACK is negotiated.
func (f *FrontEnd) SetVringNum(i int, num uint32) error {
	return f.msg(vhost.ReqSetVringNum, VringState(uint32(i), num))
}

func (f *FrontEnd) SetVringBase(i int, base uint32) error {
	return f.msg(vhost.ReqSetVringBase, VringState(uint32(i), base))
}

func (f *FrontEnd) SetVringAddr(i int) error {
	r := f.rings[i]
	if r == nil {
		return fmt.Errorf("ring %d not laid out", i)
	}
	return f.msg(vhost.ReqSetVringAddr, VringAddr(uint32(i), 0, r.DescVA, r.UsedVA, r.AvailVA, 0))
}

// SetVringKick, SetVringCall and SetVringErr send ring i's eventfd (fresh
// ones if the ring was not laid out yet: QEMU sends CALL and ERR long
// before the rings exist).
func (f *FrontEnd) SetVringKick(i int) error { return f.vringFd(vhost.ReqSetVringKick, i, 0) }
func (f *FrontEnd) SetVringCall(i int) error { return f.vringFd(vhost.ReqSetVringCall, i, 1) }
func (f *FrontEnd) SetVringErr(i int) error  { return f.vringFd(vhost.ReqSetVringErr, i, 2) }

func (f *FrontEnd) vringFd(req vhost.Request, i, which int) error {
	r := f.rings[i]
	if r == nil {
		r = &Ring{Index: i, Kick: -1, Call: -1, Err: -1}
		for _, fd := range []*int{&r.Kick, &r.Call, &r.Err} {
			var err error
			if *fd, err = NewEventfd(); err != nil {
				r.close()
				return err
			}
		}
		f.rings[i] = r
	}
	fd := [...]int{r.Kick, r.Call, r.Err}[which]
	if fd < 0 {
		return f.msg(req, U64(uint64(i)|1<<8))
	}
	return f.msg(req, U64(uint64(i)), fd)
}

// SetupRing lays out ring i and sends SET_VRING_NUM, SET_VRING_BASE (0),
// SET_VRING_ADDR, SET_VRING_CALL, SET_VRING_ERR and SET_VRING_KICK: the
// back-end starts the ring on the kick. Features must be negotiated and a
// memory table set.
func (f *FrontEnd) SetupRing(i int, size uint16) error {
	if _, err := f.LayoutRing(i, size, f.Features&(1<<vhost.FeatRingEventIdx) != 0); err != nil {
		return err
	}
	steps := []func() error{
		func() error { return f.SetVringNum(i, uint32(size)) },
		func() error { return f.SetVringBase(i, f.freshBase()) },
		func() error { return f.SetVringAddr(i) },
		func() error { return f.SetVringCall(i) },
		func() error { return f.SetVringErr(i) },
		func() error { return f.SetVringKick(i) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return fmt.Errorf("ring %d: %w", i, err)
		}
	}
	// A round trip makes sure the back-end has processed them all.
	return f.Sync()
}

// freshBase is the SET_VRING_BASE value of a ring that never ran: 0, or
// for packed rings both positions at slot 0 with wrap counter 1.
func (f *FrontEnd) freshBase() uint32 {
	if f.Features&(1<<vhost.FeatRingPacked) != 0 {
		return 0x8000 | 0x8000<<16
	}
	return 0
}

// SetupRings sets up rings 0..n-1.
func (f *FrontEnd) SetupRings(n int, size uint16) error {
	for i := 0; i < n; i++ {
		if err := f.SetupRing(i, size); err != nil {
			return err
		}
	}
	return nil
}

// Sync makes a round trip (GET_FEATURES) so that every message sent before
// has been processed by the back-end.
func (f *FrontEnd) Sync() error {
	_, err := f.GetU64(vhost.ReqGetFeatures)
	return err
}

// Enable sends SET_VRING_ENABLE (with NEED_REPLY once REPLY_ACK is
// negotiated, as QEMU 10 does).
func (f *FrontEnd) Enable(i int, on bool) error {
	n := uint32(0)
	if on {
		n = 1
	}
	return f.msg(vhost.ReqSetVringEnable, VringState(uint32(i), n))
}

// GetVringBase stops ring i and returns the back-end's next avail index.
func (f *FrontEnd) GetVringBase(i int) (uint16, error) {
	b, err := f.GetVringBase32(i)
	return uint16(b), err
}

// GetVringBase32 is GetVringBase with the whole 32-bit answer: for a packed
// ring, the avail position in the low half and the used one in the high
// half (slot in bits 0-14, wrap counter in bit 15).
func (f *FrontEnd) GetVringBase32(i int) (uint32, error) {
	r, err := f.Call(vhost.ReqGetVringBase, 0, VringState(uint32(i), 0))
	if err != nil {
		return 0, err
	}
	if len(r.Payload) != 8 || le.Uint32(r.Payload) != uint32(i) {
		return 0, fmt.Errorf("GET_VRING_BASE reply %x", r.Payload)
	}
	return le.Uint32(r.Payload[4:]), nil
}

// Kick signals ring i's kick eventfd.
func (f *FrontEnd) Kick(i int) error {
	r := f.rings[i]
	if r == nil || r.Kick < 0 {
		return fmt.Errorf("ring %d has no kick eventfd", i)
	}
	_, err := unix.Write(r.Kick, U64(1))
	return err
}

// ErrTimeout is returned by WaitCall when no call came in time.
var ErrTimeout = errors.New("timed out")

// WaitCall waits until the back-end signals ring i's call eventfd and
// consumes the signal.
func (f *FrontEnd) WaitCall(i int, timeout time.Duration) error {
	r := f.rings[i]
	if r == nil || r.Call < 0 {
		return fmt.Errorf("ring %d has no call eventfd", i)
	}
	return waitEventfd(r.Call, timeout)
}

func waitEventfd(fd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var b [8]byte
	for {
		if _, err := unix.Read(fd, b[:]); err == nil {
			return nil
		} else if err != unix.EAGAIN && err != unix.EINTR {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return ErrTimeout
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		ms := int(left / time.Millisecond)
		if ms == 0 {
			ms = 1
		}
		if _, err := unix.Poll(pfd, ms); err != nil && err != unix.EINTR {
			return err
		}
	}
}

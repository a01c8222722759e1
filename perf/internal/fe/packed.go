package fe

import (
	"encoding/binary"
	"fmt"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/shmem"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// PackedRing is the driver side of one packed ring (virtio 1.x 2.8),
// worked without allocation. Every chain is one descriptor, and buffer id
// i's buffer is slab i; free holds the ids not in flight.
//
// A batch is published the way the spec allows a driver to make several
// chains available at once: every descriptor but the first is written
// with plain stores, then the first one's flags with one atomic store (an
// XCHG on amd64, a full fence), so the device, which stops at the first
// descriptor it does not own, sees the batch whole or not at all.
type PackedRing struct {
	mem              []byte
	base             uint64
	desc, drv, dev   []byte
	size             uint16
	heap, slab       uint64
	eventIdx         bool
	kick             int
	next, used       uint16 // next slot to make available / to find used
	availW, usedW    uint16 // wrap counters (1 at the start)
	inFlight         uint16
	Kicks            uint64
	pendingFirst     int // slot of the batch's first descriptor, -1: none
	pendingFirstWord uint64
	added            uint16 // descriptors in the pending batch
	free             []uint16
}

// packedFlags are the avail/used bits of a descriptor made available with
// wrap counter w (VRING_PACKED_DESC_F_AVAIL = w, F_USED = !w).
func packedFlags(w uint16) uint64 {
	return uint64(w)<<7 | uint64(w^1)<<15
}

func newPackedRing(mem []byte, base uint64, c vqdriver.Config, kick int, eventIdx bool) *PackedRing {
	sl := func(gpa, l uint64) []byte { o := gpa - base; return mem[o : o+l : o+l] }
	r := &PackedRing{mem: mem, base: base, size: c.Size, heap: c.Heap, slab: c.Slab, eventIdx: eventIdx, kick: kick,
		availW: 1, usedW: 1, pendingFirst: -1, free: make([]uint16, c.Size)}
	for i := range r.free {
		r.free[i] = c.Size - 1 - uint16(i)
	}
	r.desc = sl(c.Desc, 16*uint64(c.Size))
	r.drv = sl(c.Avail, 4)
	r.dev = sl(c.Used, 4)
	// No used-buffer notifications: the guest polls.
	shmem.Store32(r.drv, 0, vqdriver.EventDisable<<16)
	return r
}

// Slab returns the buffer of id i.
func (r *PackedRing) Slab(i uint16) []byte {
	o := r.heap + uint64(i)*r.slab - r.base
	return r.mem[o : o+r.slab : o+r.slab]
}

// Room is how many more buffers may be made available.
func (r *PackedRing) Room() uint16 { return r.size - r.inFlight }

// Release returns buffer id (from Used) to the free ids.
func (r *PackedRing) Release(id uint16) { r.free = append(r.free, id) }

// AddFree makes a free buffer available (see Add).
func (r *PackedRing) AddFree(n uint32, write bool) {
	id := r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	r.Add(id, n, write)
}

// Add makes slot r.next available with buffer id (slab id), n bytes,
// device-writable when write; not visible until Publish.
func (r *PackedRing) Add(id uint16, n uint32, write bool) {
	s := r.next
	addr := r.heap + uint64(id)*r.slab
	fl := packedFlags(r.availW)
	if write {
		fl |= 2 // VRING_DESC_F_WRITE
	}
	w := uint64(n) | uint64(id)<<32 | fl<<48
	if r.pendingFirst < 0 {
		// The batch's first descriptor: its second word (len, id and
		// flags) goes last, in Publish.
		r.pendingFirst, r.pendingFirstWord = int(s), w
		binary.LittleEndian.PutUint64(r.desc[16*int(s):], addr)
	} else {
		shmem.PutDesc(r.desc, 16*int(s), addr, w)
	}
	r.added++
	r.inFlight++
	if r.next++; r.next == r.size {
		r.next, r.availW = 0, r.availW^1
	}
}

// Publish makes the pending batch available with one atomic store and
// kicks the device if it asked for it.
func (r *PackedRing) Publish() {
	if r.pendingFirst < 0 {
		return
	}
	shmem.Store64(r.desc, 16*r.pendingFirst+8, r.pendingFirstWord)
	added := r.added
	r.pendingFirst, r.added = -1, 0
	ev := shmem.Load32(r.dev, 0)
	offWrap, flags := uint16(ev), uint16(ev>>16)
	kick := flags == vqdriver.EventEnable
	if flags == vqdriver.EventDesc && r.eventIdx {
		// Linux's virtqueue_kick_prepare_packed.
		idx := offWrap &^ vqdriver.WrapBit
		if offWrap>>15 != r.availW {
			idx -= r.size
		}
		kick = r.next-idx-1 < added
	}
	if kick {
		r.Kicks++
		rawio.Signal(r.kick)
	}
}

// Used returns the next used descriptor's buffer id and length and
// consumes it, or ok false when the device has not used it yet.
func (r *PackedRing) Used() (id uint16, n uint32, ok bool) {
	w, _ := shmem.LoadPackedDesc(r.desc, 16*int(r.used))
	fl := uint16(w >> 48)
	avail, used := fl>>7&1, fl>>15&1
	if avail != used || used != r.usedW {
		return 0, 0, false
	}
	r.inFlight--
	if r.used++; r.used == r.size {
		r.used, r.usedW = 0, r.usedW^1
	}
	return uint16(w >> 32), uint32(w), true
}

// dialPacked is Dial's set-up for packed rings: the rings are placed where
// vhosttest lays out packed rings (descriptor ring, driver and device event
// areas, heap) and started with the wrap counters at 1.
func dialPacked(f *vhosttest.FrontEnd, feats, proto uint64, layout vhosttest.Layout) (*Conn, error) {
	// vhosttest acks RING_PACKED only with f.Packed set, and then lays
	// the rings out packed (LayoutRing's PackedConfig).
	f.Packed = true
	if err := f.Negotiate(feats|1<<vhost.FeatRingPacked, proto); err != nil {
		return nil, fmt.Errorf("negotiate: %w", err)
	}
	if f.Features&(1<<vhost.FeatRingPacked) == 0 {
		return nil, fmt.Errorf("%s: the back-end does not offer VIRTIO_F_RING_PACKED (feature bit %d; offered %#x)", ErrNoPacked, vhost.FeatRingPacked, f.Offered)
	}
	if err := f.SetMemTable(layout); err != nil {
		return nil, fmt.Errorf("memory table: %w", err)
	}
	eventIdx := f.Features&(1<<vhost.FeatRingEventIdx) != 0
	c := &Conn{F: f}
	for i, rp := range []**PackedRing{&c.PRX, &c.PTX} {
		r, err := f.LayoutRing(i, RingSize, eventIdx)
		if err != nil {
			return nil, err
		}
		// vhosttest's SetupRing, but with the wrap counter in the base.
		err = f.SetVringNum(i, RingSize)
		if err == nil {
			// avail and used index 0, both wrap counters 1 (QEMU's 32-bit form)
			err = f.SetVringBase(i, vqdriver.WrapBit|vqdriver.WrapBit<<16)
		}
		for _, send := range []func(int) error{f.SetVringAddr, f.SetVringCall, f.SetVringErr, f.SetVringKick} {
			if err == nil {
				err = send(i)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("packed ring %d: %w", i, err)
		}
		reg := f.Regions()[0]
		pc := r.PackedConfig
		*rp = newPackedRing(reg.Mem, reg.GPA, vqdriver.Config{Size: pc.Size, Desc: pc.Desc,
			Avail: pc.Driver, Used: pc.Device, Heap: pc.Heap, Slab: pc.Slab}, r.Kick, eventIdx)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if f.Features&(1<<vhost.FeatProtocolFeatures) != 0 {
		for i := 0; i < 2; i++ {
			if err := f.Enable(i, true); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// ErrNoPacked starts the error a packed front-end fails with when the
// back-end does not offer packed rings: the harness marks the subject
// unavailable, not the run failed.
const ErrNoPacked = "packed rings unavailable"

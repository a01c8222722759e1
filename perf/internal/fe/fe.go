// Package fe is the perf front-end: a guest that drives a vhost-user
// back-end as fast as a Go program can. It uses vhosttest for the
// handshake (negotiation, memfd guest memory, ring setup) and then works
// the rings itself, with nothing allocated per frame:
//
//	TX ring: descriptor i points at slab i, which holds a prebuilt
//	         virtio-net header and frame; the loop publishes as many heads
//	         as the ring has room for (one avail.idx store per batch),
//	         kicks only when the back-end asked, and counts used entries.
//	RX ring: every descriptor is a device-writable slab; the loop counts
//	         used entries and hands the same heads straight back.
//
// The guest polls its used rings and never asks for interrupts (EVENT_IDX
// with used_event kept half a ring-index space ahead), like a busy-polling
// PMD: what is measured is the back-end, not a guest's interrupt path.
package fe

import (
	"fmt"
	"time"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/shmem"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// virtio-net feature bits (include/uapi/linux/virtio_net.h).
const (
	FeatCsum      = 0
	FeatGuestCsum = 1
	FeatGuestTSO4 = 7
	FeatHostTSO4  = 11
	FeatMrgRxbuf  = 15
	FeatGuestTSO6 = 8
	FeatGuestUSO4 = 54
	FeatGuestUSO6 = 55
)

// RingSize is the queue size of both rings.
const RingSize = 256

// Conn is a started front-end: one queue pair, rings worked by this
// package.
type Conn struct {
	F      *vhosttest.FrontEnd
	RX, TX *Ring
	// PRX and PTX replace RX and TX when the rings are packed.
	PRX, PTX *PackedRing
	// Touch makes TxLoop rewrite every cache line of a frame before it
	// publishes it, as a guest writes each frame it sends (split rings).
	Touch bool
	// TSO is true when the back-end acked HOST_TSO4 (guest TX may send
	// 64 KiB frames) and GUEST_TSO4 (guest RX may receive them).
	HostTSO, GuestTSO bool
	// GuestUSO is true when the back-end acked GUEST_USO4 (guest RX may
	// receive 64 KiB UDP GSO frames).
	GuestUSO bool
}

// Dial connects to the back-end at path and starts one queue pair with
// slabs of slab bytes per descriptor (the largest frame a descriptor
// holds, header included). tso asks for the TSO features; packed for
// packed rings (an error starting with ErrNoPacked when the back-end does
// not offer them).
func Dial(path string, slab uint64, tso, packed bool) (*Conn, error) {
	var f *vhosttest.FrontEnd
	var err error
	for i := 0; ; i++ {
		f, err = vhosttest.Dial(path)
		if err == nil {
			break
		}
		if i > 200 {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
	c, err := Start(f, slab, tso, packed)
	if err != nil {
		f.Close()
	}
	return c, err
}

// Start is Dial on a connected front-end f (left open on an error).
func Start(f *vhosttest.FrontEnd, slab uint64, tso, packed bool) (*Conn, error) {
	f.Timeout = 20 * time.Second
	f.Slab = slab
	feats := uint64(1)<<vhost.FeatVersion1 | 1<<vhost.FeatRingEventIdx | 1<<FeatMrgRxbuf
	if tso {
		feats |= 1<<FeatCsum | 1<<FeatGuestCsum | 1<<FeatGuestTSO4 | 1<<FeatHostTSO4 | 1<<FeatGuestUSO4 | 1<<FeatGuestUSO6 | 1<<FeatGuestTSO6
	}
	mem := uint64(2*RingSize)*slab + 4<<20
	mem = (mem + 1<<21 - 1) &^ (1<<21 - 1)
	// LOG_SHMFD lets the front-end turn dirty logging on (vperf fe --dirty-log).
	proto := uint64(1<<vhost.ProtoReplyAck | 1<<vhost.ProtoLogShmfd)
	if packed {
		c, err := dialPacked(f, feats, proto, vhosttest.Layout{Size: mem})
		if err != nil {
			return nil, err
		}
		c.setTSO()
		return c, nil
	}
	if err := f.Start(feats, proto, 2, RingSize, vhosttest.Layout{Size: mem}); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	c := &Conn{F: f}
	c.setTSO()
	reg := f.Regions()[0]
	for i, rp := range []**Ring{&c.RX, &c.TX} {
		r := f.Ring(i)
		*rp = newRing(reg.Mem, reg.GPA, r.Config, r.Kick, f.Features&(1<<vhost.FeatRingEventIdx) != 0)
	}
	return c, nil
}

// setTSO records the offloads the back-end acked.
func (c *Conn) setTSO() {
	c.HostTSO = c.F.Features&(1<<FeatHostTSO4) != 0
	c.GuestTSO = c.F.Features&(1<<FeatGuestTSO4) != 0
	c.GuestUSO = c.F.Features&(1<<FeatGuestUSO4) != 0
}

// Close closes the connection and the guest memory.
func (c *Conn) Close() error { return c.F.Close() }

// Ring is the driver side of one split ring, worked without allocation.
type Ring struct {
	mem                []byte
	base               uint64
	desc, avail, used  []byte
	size, mask         uint16
	heap, slab         uint64
	eventIdx           bool
	kick               int
	availIdx, lastUsed uint16
	Kicks              uint64
}

func newRing(mem []byte, base uint64, c vqdriver.Config, kick int, eventIdx bool) *Ring {
	n := uint64(c.Size)
	sl := func(gpa, l uint64) []byte { o := gpa - base; return mem[o : o+l : o+l] }
	r := &Ring{mem: mem, base: base, size: c.Size, mask: c.Size - 1, heap: c.Heap, slab: c.Slab, eventIdx: eventIdx, kick: kick}
	r.desc = sl(c.Desc, 16*n)
	r.avail = sl(c.Avail, 8+2*n)
	r.used = sl(c.Used, 8+8*n)
	return r
}

// Slab returns the buffer of descriptor i.
func (r *Ring) Slab(i uint16) []byte {
	o := r.heap + uint64(i)*r.slab - r.base
	return r.mem[o : o+r.slab : o+r.slab]
}

// SetDesc writes descriptor i as one buffer of n bytes at the start of its
// slab, device-writable when write.
func (r *Ring) SetDesc(i uint16, n uint32, write bool) {
	addr := r.heap + uint64(i)*r.slab
	fl := uint64(0)
	if write {
		fl = 2 // VRING_DESC_F_WRITE
	}
	shmem.PutDesc(r.desc, 16*int(i), addr, uint64(n)|fl<<32) // next 0
}

// Put writes head into the next avail slot (not yet published).
func (r *Ring) Put(head uint16) {
	shmem.Put16(r.avail, 4+2*int(r.availIdx&r.mask), head)
	r.availIdx++
}

// InFlight is the number of heads published and not yet used.
func (r *Ring) InFlight() uint16 { return r.availIdx - r.lastUsed }

// Publish makes every Put visible with one store and kicks the back-end if
// it asked for it (avail_event with EVENT_IDX, NO_NOTIFY without).
//
// The shared words are read and written as 32-bit words through
// internal/shmem (it has no 16-bit store that writes a whole word): the
// avail ring's {flags, idx}, the used ring's {flags, idx}, used_event and
// avail_event (each followed by 2 bytes of padding in the layout vqdriver
// uses). On amd64 an atomic store is an XCHG, a full fence: the store that
// publishes avail.idx orders the ring writes before it and the read of
// avail_event after it.
func (r *Ring) Publish(old uint16) {
	cur := r.availIdx
	if r.eventIdx {
		// used_event, never reached while the guest keeps up: no interrupts.
		shmem.Store32(r.avail, 4+2*int(r.size), uint32(r.lastUsed+0x7fff))
	}
	shmem.Store32(r.avail, 0, uint32(cur)<<16|r.availFlags())
	var kick bool
	if r.eventIdx {
		ev := uint16(shmem.Load32(r.used, 4+8*int(r.size)))
		kick = cur-ev-1 < cur-old
	} else {
		kick = shmem.Load32(r.used, 0)&1 == 0
	}
	if kick {
		r.Kicks++
		rawio.Signal(r.kick) // a non-blocking eventfd (vhosttest.NewEventfd)
	}
}

func (r *Ring) availFlags() uint32 {
	if r.eventIdx {
		return 0
	}
	return 1 // VRING_AVAIL_F_NO_INTERRUPT
}

// UsedIdx reads the back-end's used.idx.
func (r *Ring) UsedIdx() uint16 { return uint16(shmem.Load32(r.used, 0) >> 16) }

// Used returns used entry k (head, len); k counts from 0 like the index.
func (r *Ring) Used(k uint16) (uint16, uint32) {
	off := 4 + 8*int(k&r.mask)
	return uint16(shmem.Get32(r.used, off)), shmem.Get32(r.used, off+4)
}

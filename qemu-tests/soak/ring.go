package main

import (
	"encoding/binary"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/shmem"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

// hdrLen is the virtio-net header with VERSION_1 (num_buffers included).
const hdrLen = 12

// ring is the guest side of one split ring, worked directly in guest
// memory (no EVENT_IDX: the guest asks for no interrupts and kicks when
// the device has not set NO_NOTIFY). Descriptor h always points at slab h.
type ring struct {
	mem                []byte
	base               uint64
	desc, avail, used  []byte
	size, mask         uint16
	heap, slab         uint64
	kick               int
	availIdx, lastUsed uint16
}

func newRing(reg *vhosttest.Region, r *vhosttest.Ring) *ring {
	c := r.Config
	n := uint64(c.Size)
	sl := func(gpa, l uint64) []byte { o := gpa - reg.GPA; return reg.Mem[o : o+l : o+l] }
	return &ring{
		mem: reg.Mem, base: reg.GPA, size: c.Size, mask: c.Size - 1, heap: c.Heap, slab: c.Slab, kick: r.Kick,
		desc: sl(c.Desc, 16*n), avail: sl(c.Avail, 6+2*n), used: sl(c.Used, 6+8*n),
	}
}

func (r *ring) slabBuf(i uint16) []byte {
	o := r.heap + uint64(i)*r.slab - r.base
	return r.mem[o : o+r.slab : o+r.slab]
}

// setDesc makes descriptor i one buffer of n bytes at the start of slab i.
func (r *ring) setDesc(i uint16, n uint32, write bool) {
	fl := uint64(0)
	if write {
		fl = 2 // VRING_DESC_F_WRITE
	}
	shmem.PutDesc(r.desc, 16*int(i), r.heap+uint64(i)*r.slab, uint64(n)|fl<<32)
}

func (r *ring) put(head uint16) {
	shmem.Put16(r.avail, 4+2*int(r.availIdx&r.mask), head)
	r.availIdx++
}

// publish stores avail.idx (with NO_INTERRUPT) and kicks unless the device
// set NO_NOTIFY. The 32-bit atomic store is a full fence.
func (r *ring) publish() {
	shmem.Store32(r.avail, 0, uint32(r.availIdx)<<16|1)
	if shmem.Load32(r.used, 0)&1 == 0 {
		rawio.Signal(r.kick)
	}
}

func (r *ring) usedIdx() uint16 { return uint16(shmem.Load32(r.used, 0) >> 16) }

func (r *ring) usedElem(k uint16) (head uint16, n uint32) {
	off := 4 + 8*int(k&r.mask)
	return uint16(shmem.Get32(r.used, off)), shmem.Get32(r.used, off+4)
}

// Frames: Ethernet, an ethertype per direction, then "SOAK", the sequence
// number, the frame length and a pattern derived from the sequence number.
const (
	typeG2H = 0x88b5 // guest to host
	typeH2G = 0x88b6 // host to guest
	minLen  = 60
)

var guestMAC = [6]byte{0x52, 0x54, 0x00, 0x50, 0x4b, 0x01}

func frameLen(seq uint64) int { return minLen + int(seq*37%1400) }

// buildFrame writes frame seq of the given type into b and returns its length.
func buildFrame(b []byte, typ uint16, seq uint64, src [6]byte, dst [6]byte) int {
	l := frameLen(seq)
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], typ)
	copy(b[14:18], "SOAK")
	binary.BigEndian.PutUint64(b[18:], seq)
	binary.BigEndian.PutUint16(b[26:], uint16(l))
	for i := 28; i < l; i++ {
		b[i] = byte(seq) + byte(i*7)
	}
	return l
}

// frameVerdict is what checkFrame found.
type frameVerdict int

const (
	frameOK frameVerdict = iota
	frameOther
	frameBad
)

// checkFrame validates b as a frame of type typ; it returns the sequence
// number of a good one.
func checkFrame(b []byte, typ uint16) (uint64, frameVerdict) {
	if len(b) < 14 || binary.BigEndian.Uint16(b[12:]) != typ {
		return 0, frameOther
	}
	if len(b) < 28 || string(b[14:18]) != "SOAK" {
		return 0, frameBad
	}
	seq := binary.BigEndian.Uint64(b[18:])
	l := frameLen(seq)
	if int(binary.BigEndian.Uint16(b[26:])) != l || len(b) != l {
		return seq, frameBad
	}
	for i := 28; i < l; i++ {
		if b[i] != byte(seq)+byte(i*7) {
			return seq, frameBad
		}
	}
	return seq, frameOK
}

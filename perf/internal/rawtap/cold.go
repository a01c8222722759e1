package rawtap

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/vhostd/vhostd/internal/rawio"
	"golang.org/x/sys/unix"
)

// The fair limits (issue 17): a guest's frame was written by another core
// just before the back-end sends it, and a frame the back-end receives is
// read by another core just after. The raw loops alone send one cache-hot
// frame and receive into one buffer nobody else touches. The cold loops
// work through a ring of ColdSlots buffers shared with a partner thread
// pinned on the other CPU: for TX the partner writes every cache line of a
// buffer before the loop sends it; for RX it reads every cache line of
// what the loop received before the loop reads into that buffer again.

// ColdSlots is the ring of buffers the cold loops share with their partner
// thread: as many as the front-end's ring has descriptors.
const ColdSlots = 256

// PartnerName is the name (comm) of the partner thread, so that the
// harness can count its CPU as the front-end's, not the loop's.
const PartnerName = "vperf-partner"

// coldRing is ColdSlots buffers handed back and forth: full[i] is set by
// whoever fills slot i and cleared by whoever drains it.
type coldRing struct {
	buf   [][]byte
	n     []int // bytes in slot i (RX)
	full  []atomic.Uint32
	waits uint64 // frames before which the loop found its slot not ready
}

// ready spins until slot i's full flag is want and counts a wait when it
// was not at once; false when stop was set meanwhile.
func (r *coldRing) ready(i int, want uint32, stop *atomic.Bool) bool {
	if r.full[i].Load() == want {
		return true
	}
	r.waits++
	for r.full[i].Load() != want {
		if stop.Load() {
			return false
		}
	}
	return true
}

func newColdRing(size int) *coldRing {
	r := &coldRing{buf: make([][]byte, ColdSlots), n: make([]int, ColdSlots), full: make([]atomic.Uint32, ColdSlots)}
	for i := range r.buf {
		r.buf[i] = make([]byte, size)
	}
	return r
}

// pin locks the calling goroutine to its thread and that thread to cpu.
func pin(cpu int) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return nil
}

// startPartner runs work(slot) on a thread pinned to cpu for every slot
// whose full flag equals want, flipping it after, until stop is set.
func (r *coldRing) startPartner(cpu int, want uint32, stop *atomic.Bool, work func(i int)) error {
	errc := make(chan error, 1)
	go func() {
		if err := pin(cpu); err != nil {
			errc <- err
			return
		}
		nameThread(PartnerName)
		errc <- nil
		for i := 0; !stop.Load(); i = (i + 1) % ColdSlots {
			for r.full[i].Load() != want {
				if stop.Load() {
					return
				}
			}
			work(i)
			r.full[i].Store(1 - want)
		}
	}()
	return <-errc
}

// touchWrite stores one byte in every 64-byte line of b from byte off on,
// taken from tmpl (the frame stays valid): the lines are then modified in
// the writer's cache, as a guest's freshly built frame is.
func touchWrite(b, tmpl []byte, off int) {
	for o := off; o < len(b); o += 64 {
		b[o] = tmpl[o]
	}
}

// touchRead reads one byte in every 64-byte line of b and returns their sum.
func touchRead(b []byte) byte {
	var s byte
	for o := 0; o < len(b); o += 64 {
		s += b[o]
	}
	return s
}

// WriteLoopCold is WriteLoop over a ring of copies of buf, each rewritten
// (every cache line) by a partner thread on CPU other just before it is
// sent; the loop's own thread is pinned to CPU self. It returns before how
// many frames the loop had to wait for the partner (if that is most of
// them, the partner, not the TAP, set the pace).
func WriteLoopCold(fd int, buf []byte, self, other int, stop *atomic.Bool, n *Counters) (uint64, error) {
	r := newColdRing(len(buf))
	for i := range r.buf {
		copy(r.buf[i], buf)
	}
	if err := r.startPartner(other, 0, stop, func(i int) { touchWrite(r.buf[i], buf, 12) }); err != nil {
		return 0, err
	}
	if err := pin(self); err != nil {
		return 0, err
	}
	var fr, er uint64
	frame := uint64(len(buf) - 12)
	for k, i := 0, 0; ; k++ {
		if k&255 == 0 {
			if stop.Load() {
				return r.waits, nil
			}
			n.publish(fr, fr*frame, er)
		}
		if !r.ready(i, 1, stop) {
			continue
		}
		if _, e := rawio.Write(fd, r.buf[i]); e != 0 {
			er++
		} else {
			fr++
		}
		r.full[i].Store(0)
		i = (i + 1) % ColdSlots
	}
}

// ReadLoopCold is ReadLoop into a ring of buffers, each read (every cache
// line of what arrived) by a partner thread on CPU other before the loop
// reads into it again; the loop's thread is pinned to CPU self.
func ReadLoopCold(fd int, bufSize, self, other int, stop *atomic.Bool, n *Counters) (uint64, error) {
	r := newColdRing(bufSize)
	var sum byte
	if err := r.startPartner(other, 1, stop, func(i int) { sum += touchRead(r.buf[i][:r.n[i]]) }); err != nil {
		return 0, err
	}
	if err := pin(self); err != nil {
		return 0, err
	}
	var fr, by uint64
	for k, i := 0, 0; ; k++ {
		if k&255 == 0 {
			if stop.Load() {
				return r.waits, nil
			}
			n.publish(fr, by, 0)
		}
		if !r.ready(i, 0, stop) {
			continue
		}
		m, e := rawio.Read(fd, r.buf[i])
		if e != 0 || m <= 12 {
			continue
		}
		fr++
		by += uint64(m - 12)
		r.n[i] = m
		r.full[i].Store(1)
		i = (i + 1) % ColdSlots
	}
}

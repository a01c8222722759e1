package rawtap

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/uring"
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

// coldRing is ColdSlots buffers passed from a filler to a drainer the way
// a virtqueue passes them: two counters, each written by one side (on
// cache lines of their own), published once per batch of coldBatch
// buffers or before a side waits, not once per buffer; so the traffic
// between the CPUs is the buffers' lines, plus two counter lines per
// batch, as with a ring's avail and used indexes.
type coldRing struct {
	buf             [][]byte
	n               []int // bytes in each buffer (RX)
	filled, drained counter
	waits           uint64 // buffers the loop had to wait for
}

// counter is a published count alone on its cache line.
type counter struct {
	_ [64]byte
	v atomic.Uint64
	_ [56]byte
}

// coldBatch is how many buffers a side moves before it publishes.
const coldBatch = 32

func newColdRing(size int) *coldRing {
	r := &coldRing{buf: make([][]byte, ColdSlots), n: make([]int, ColdSlots)}
	for i := range r.buf {
		r.buf[i] = make([]byte, size)
	}
	return r
}

// side is one end of a coldRing: its own count k, the other side's count
// as last seen, and which counters are whose.
type side struct {
	k, seen     uint64
	mine, other *counter
	fill        bool // the filler: room while k - seen < ColdSlots
}

// next waits until the side may take buffer k % ColdSlots (publishing its
// count before it waits); false when stop was set meanwhile. waited
// reports whether it had to wait.
func (s *side) next(stop *atomic.Bool) (ok, waited bool) {
	ready := func() bool {
		if s.fill {
			return s.k-s.seen < ColdSlots
		}
		return s.k < s.seen
	}
	if ready() {
		return true, false
	}
	s.mine.v.Store(s.k)
	for {
		if s.seen = s.other.v.Load(); ready() {
			return true, true
		}
		if stop.Load() {
			return false, true
		}
	}
}

// ahead waits until the n buffers from k on may all be taken (the
// drainer's look at a whole batch; publishing its count before it waits);
// false when stop was set meanwhile.
func (s *side) ahead(n uint64, stop *atomic.Bool) (ok, waited bool) {
	if s.k+n <= s.seen {
		return true, false
	}
	if s.seen = s.other.v.Load(); s.k+n <= s.seen {
		return true, false // the partner was ahead; only our view was old
	}
	s.mine.v.Store(s.k)
	for {
		if s.seen = s.other.v.Load(); s.k+n <= s.seen {
			return true, true
		}
		if stop.Load() {
			return false, true
		}
	}
}

// done counts buffer k as moved, publishing every coldBatch.
func (s *side) done() {
	if s.k++; s.k%coldBatch == 0 {
		s.mine.v.Store(s.k)
	}
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

// startPartner runs work(i) for every buffer i the partner's side (the
// filler when fill) may take, on a thread pinned to cpu, until stop is set.
func (r *coldRing) startPartner(cpu int, fill bool, stop *atomic.Bool, work func(i int)) error {
	errc := make(chan error, 1)
	go func() {
		if err := pin(cpu); err != nil {
			errc <- err
			return
		}
		nameThread(PartnerName)
		errc <- nil
		s := r.side(fill)
		for {
			if ok, _ := s.next(stop); !ok {
				return
			}
			work(int(s.k % ColdSlots))
			s.done()
		}
	}()
	return <-errc
}

// side returns the filler's side (fill) or the drainer's.
func (r *coldRing) side(fill bool) *side {
	if fill {
		return &side{mine: &r.filled, other: &r.drained, fill: true}
	}
	return &side{mine: &r.drained, other: &r.filled}
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

// coldTX sets up the cold write loops: a ring of copies of buf, the
// partner on CPU other rewriting every buffer before the loop may send
// it, and the calling thread pinned to CPU self.
func coldTX(buf []byte, self, other int, stop *atomic.Bool) (*coldRing, error) {
	r := newColdRing(len(buf))
	for i := range r.buf {
		copy(r.buf[i], buf)
	}
	if err := r.startPartner(other, true, stop, func(i int) { touchWrite(r.buf[i], buf, 12) }); err != nil {
		return nil, err
	}
	return r, pin(self)
}

// WriteLoopCold is WriteLoop over a ring of copies of buf, each rewritten
// (every cache line) by a partner thread on CPU other just before it is
// sent; the loop's own thread is pinned to CPU self. It returns before how
// many frames the loop had to wait for the partner (if that is most of
// them, the partner, not the TAP, set the pace).
func WriteLoopCold(fd int, buf []byte, self, other int, stop *atomic.Bool, n *Counters) (uint64, error) {
	r, err := coldTX(buf, self, other, stop)
	if err != nil {
		return 0, err
	}
	var fr, er uint64
	frame := uint64(len(buf) - 12)
	me := r.side(false)
	for k := 0; ; k++ {
		if k&255 == 0 {
			if stop.Load() {
				return r.waits, nil
			}
			n.publish(fr, fr*frame, er)
		}
		ok, waited := me.next(stop)
		if !ok {
			continue
		}
		if waited {
			r.waits++
		}
		if _, e := rawio.Write(fd, r.buf[me.k%ColdSlots]); e != 0 {
			er++
		} else {
			fr++
		}
		me.done()
	}
}

// WriteLoopColdUring is WriteLoopCold with batches of k frames per
// io_uring_enter, to the TAP fd registered as a fixed file: the fair limit
// for a back-end that writes through io_uring. A batch is handed back to
// the partner only after its enter returned, so no frame is rewritten
// while the kernel copies it.
func WriteLoopColdUring(fd int, buf []byte, k, self, other int, stop *atomic.Bool, n *Counters) (uint64, error) {
	if k < 1 || k > ColdSlots {
		return 0, fmt.Errorf("cold io_uring loop: batch %d, want 1..%d", k, ColdSlots)
	}
	r, err := coldTX(buf, self, other, stop)
	if err != nil {
		return 0, err
	}
	u, err := NewUring(uint32(k), fd, true)
	if err != nil {
		return 0, err
	}
	defer u.Close()
	bufs := make([][]byte, k)
	var fr, er uint64
	frame := uint64(len(buf) - 12)
	me := r.side(false)
	for it := 0; ; it++ {
		if it&15 == 0 {
			if stop.Load() {
				return r.waits, nil
			}
			n.publish(fr, fr*frame, er)
		}
		ok, waited := me.ahead(uint64(k), stop)
		if !ok {
			continue
		}
		if waited {
			r.waits += uint64(k)
		}
		for i := range bufs {
			bufs[i] = r.buf[(me.k+uint64(i))%ColdSlots]
		}
		sent, _, err := u.batch(uring.OpWrite, fd, bufs)
		if err != nil {
			return r.waits, err
		}
		fr += uint64(sent)
		er += uint64(k - sent)
		for range bufs {
			me.done()
		}
	}
}

// ReadLoopCold is ReadLoop into a ring of buffers, each read (every cache
// line of what arrived) by a partner thread on CPU other before the loop
// reads into it again; the loop's thread is pinned to CPU self.
func ReadLoopCold(fd int, bufSize, self, other int, stop *atomic.Bool, n *Counters) (uint64, error) {
	r := newColdRing(bufSize)
	var sum byte
	if err := r.startPartner(other, false, stop, func(i int) { sum += touchRead(r.buf[i][:r.n[i]]) }); err != nil {
		return 0, err
	}
	if err := pin(self); err != nil {
		return 0, err
	}
	var fr, by uint64
	me := r.side(true)
	for k := 0; ; k++ {
		if k&255 == 0 {
			if stop.Load() {
				return r.waits, nil
			}
			n.publish(fr, by, 0)
		}
		ok, waited := me.next(stop)
		if !ok {
			continue
		}
		if waited {
			r.waits++
		}
		i := me.k % ColdSlots
		m, e := rawio.Read(fd, r.buf[i])
		if e != 0 || m <= 12 {
			continue
		}
		fr++
		by += uint64(m - 12)
		r.n[i] = m
		me.done()
	}
}

package netdev

import (
	"sync/atomic"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/ptrring"
	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// rxSlot is one guest RX chain: buffers the TAP reads straight into.
type rxSlot struct {
	// chainSlot's iov holds the chain's writable buffers, plus room for
	// the overflow buffer.
	chainSlot
	cap uint32 // bytes the chain can take
	len uint32 // bytes written, for the used ring
	// wrote is how many bytes the device stored in the chain, which a
	// frame cut short stores but reports as 0: the dirty log needs them.
	wrote uint32
	bad   bool // malformed chain: returned with length 0
}

// rxPath moves frames from a TAP queue into one receive ring.
//
//	ring side: PopBatch -> stock (chains waiting for a frame)
//	TAP side:  stock -> readv straight into the chain's buffers -> done
//	           (a frame larger than one chain spills into the overflow
//	           buffer and is copied once into the next chains, MRG_RXBUF)
//	ring side: done -> used ring -> call, if the guest asked
//
// Chains move through stock and done in the order they were popped and are
// completed in that order; chains stocked but not yet filled stay popped,
// and when the ring stops they are handed back by reporting a base before
// them (BAD-INPUTS 46). Both are right only because nothing popped leaves
// that order (doc.go, the ring-state invariant).
type rxPath struct {
	slotSet[rxSlot]
	stock    *ptrring.Ring[rxSlot]
	batch    []*rxSlot // ring side: refills
	overflow []byte
	parts    []*rxSlot // the chains of the frame being spilled
	frame    [1][]unix.Iovec
	size     [1]int
	mrg      bool
	starved  bool   // the last look found frames in the TAP and no buffers
	maxFrame uint32 // largest frame (header included) the guest can be given
	// added counts the bytes of buffer the ring side ever put in the
	// stock, and limited says its last refill could add no more (the
	// guest's ring was empty or the stock full); consumed is the TAP
	// side's own count of stocked bytes it took. With MRG_RXBUF the TAP
	// side reads a frame only when the stock can hold the largest one, or
	// cannot grow: a frame is never cut short for want of buffers the
	// guest has already posted.
	added    atomic.Uint64
	limited  atomic.Bool
	consumed uint64
	// broken is set by the ring side when the guest broke the ring
	// (BROKEN-Q): the TAP side then hands every stocked chain back with
	// length 0, in order, which returns the faulting head too. Atomic:
	// Status reads it outside the worker.
	broken atomic.Bool
	// efault is set by the TAP side when a read into guest buffers failed
	// with EFAULT: their memory is gone (BAD-INPUTS 64, tapStep).
	efault bool
	// held are frames to deliver before any read from the TAP, heldNext
	// the next one (a migrated device's state, state.go). The control
	// plane sets them with the workers paused; the TAP side takes them.
	held     [][]byte
	heldNext int
	capture  capHook
}

func newRxPath() *rxPath {
	// The overflow buffer takes the part of a frame beyond the chain it
	// starts in (MRG_RXBUF spills, oversized frames).
	overflow := make([]byte, maxGSOFrame+tap.VnetHdrLen)
	return &rxPath{
		slotSet:  newSlotSet[rxSlot](),
		overflow: overflow,
		stock:    newHandoff[rxSlot](),
		batch:    make([]*rxSlot, slotCount),
		parts:    make([]*rxSlot, 0, slotCount),
	}
}

// refill pops guest buffers into the stock, up to max chains (ring side).
// It returns how many chains it stocked, malformed ones included (they go
// back empty in their turn), and the queue's error if the guest broke it.
func (r *rxPath) refill(max int, c *counters) (int, error) {
	max = popRoom(max, r.inflight, r.next)
	if max <= 0 {
		r.limited.Store(true) // the stock is full
		return 0, nil
	}
	n, err := r.q.PopBatch(r.chains[r.next : r.next+max])
	for i := 0; i < n; i++ {
		s := &r.slots[r.next+i]
		ch := s.chain
		s.len, s.wrote, s.bad = 0, 0, false
		s.iov = s.iov[:0]
		if ch.CheckRX() != nil || ch.InLen < tap.VnetHdrLen {
			// BAD-INPUTS 35, 41: a chain we cannot write into goes back
			// empty, in its turn.
			s.bad, s.cap = true, 0
			c.add(cRxMalformed, 1)
		} else {
			s.iov = rawio.AppendIovecs(s.iov, ch.In)
			s.cap = ch.InLen
		}
		r.batch[i] = s
	}
	if n > 0 {
		// The stock has room (handoffSize); were it ever short, the chains
		// it did not take go back to the ring, the newest popped: a chain
		// counted in flight is always in the stock, done, or being filled.
		if k := r.stock.ProduceBatch(r.batch[:n]); k < n {
			r.q.Unpop(n - k)
			n = k
		}
		var bytes uint64
		for _, s := range r.batch[:n] {
			bytes += uint64(s.cap)
		}
		r.next = (r.next + n) % slotCount
		r.inflight += n
		r.added.Add(bytes)
	}
	r.limited.Store(n < max || r.inflight == slotCount)
	return n, err
}

// canRead reports whether the stock is ready for the next frame (TAP
// side): any buffer will do without MRG_RXBUF; with it, room for the
// largest frame, or all the guest has given.
func (r *rxPath) canRead() bool {
	if !r.mrg {
		return true
	}
	return r.added.Load()-r.consumed >= uint64(r.maxFrame) || r.limited.Load()
}

// fromTAP reads up to max frames from the TAP into stocked chains (TAP
// side). It returns the frames moved (truncated ones included) and whether
// the TAP is gone. It stops early when the stock is empty or not ready
// (canRead) or the TAP has nothing to read; a TAP that still holds frames
// when the stock is empty is noted by noteStarved, not here.
func (r *rxPath) fromTAP(q *tap.Queue, max int, c *counters) (frames int, gone bool) {
	capture := r.capture.ring.Load() // nil: off (capture.go)
	for frames < max {
		s := r.stock.Peek()
		if s != nil && !r.canRead() {
			return // the ring side tops the stock up first
		}
		if s == nil {
			// No guest buffers: frames wait in the TAP (bounded by its
			// queue length). The spell is counted by noteStarved before
			// the worker sleeps, not here: a poll(2) per round would cost
			// most when the guest is slow to refill.
			return
		}
		r.starved = false
		if s.bad {
			r.stock.Consume()
			r.finish(s)
			continue
		}
		// The overflow buffer catches what does not fit the chain: with
		// MRG_RXBUF it is copied on, without it the frame is dropped. It
		// also makes an oversized frame visible: tun reports only the bytes
		// it copied, never a frame's full length. A chain longer than the
		// largest frame needs none: a frame that fills it to the last byte
		// may have been cut and counts as truncated. A chain in one buffer
		// is then read with read(2), cheaper than readv(2).
		whole := s.cap > r.maxFrame
		if whole {
			r.frame[0] = s.iov
		} else {
			r.frame[0] = append(s.iov, rawio.Iovec(r.overflow))
		}
		n, errno := r.read(q, s, whole)
		if n == 0 {
			if tap.IsGone(errno) {
				gone = true
			}
			r.efault = errno == unix.EFAULT
			return // s stays stocked, first in line
		}
		r.stock.Consume()
		r.consumed += uint64(s.cap)
		size := uint32(r.size[0])
		s.wrote = min(size, s.cap)
		if capture != nil {
			r.captureRX(capture, s, size, whole, c)
		}
		switch {
		case whole && size >= s.cap:
			s.len = 0
			r.finish(s)
			c.add(cRxTruncated, 1)
			frames++
			continue
		case size <= s.cap:
			s.len = size
			putNumBuffers(s.chain.In, 1)
			r.finish(s)
		case !r.mrg || size > r.maxFrame:
			s.len = 0
			r.finish(s)
			c.add(cRxTruncated, 1)
			frames++
			continue
		default:
			if !r.spill(s, size, c) {
				frames++
				continue
			}
		}
		c.add(cRxPackets, 1)
		c.add(cRxBytes, uint64(size-tap.VnetHdrLen))
		frames++
	}
	return
}

// noteStarved is called (TAP side) before sleeping with an empty stock:
// if frames wait in the TAP, the guest is short of buffers; each such
// spell counts once as rx_no_buffer (BAD-INPUTS 44).
func (r *rxPath) noteStarved(q *tap.Queue, c *counters) {
	if !r.starved && readable(q.Fd()) {
		r.starved = true
		c.add(cRxNoBuffer, 1)
	}
}

// spill finishes a frame of size bytes whose first s.cap bytes landed in s
// and the rest in the overflow buffer: the rest is copied into the next
// stocked chains and num_buffers records how many chains the frame took
// (MRG_RXBUF, virtio 1.x 5.1.6.4). The frame's chains are handed on
// together once it is complete. If the stock runs out or holds a malformed
// chain, every chain taken goes back with length 0 (the guest drops each as
// too short) and the frame counts as truncated.
func (r *rxPath) spill(s *rxSlot, size uint32, c *counters) bool {
	s.len = s.cap
	parts := append(r.parts[:0], s)
	rest := r.overflow[:size-s.cap]
	ok := true
	for len(rest) > 0 {
		t := r.stock.Consume()
		if t == nil {
			ok = false
			break
		}
		parts = append(parts, t)
		if t.bad {
			ok = false
			break
		}
		r.consumed += uint64(t.cap)
		n := scatter(t.chain.In, rest)
		t.len, t.wrote = uint32(n), uint32(n)
		rest = rest[n:]
	}
	if ok {
		putNumBuffers(s.chain.In, uint16(len(parts)))
	} else {
		for _, p := range parts {
			p.len = 0
		}
		c.add(cRxTruncated, 1)
	}
	handOn(r.done, parts)
	return ok
}

// finish hands one slot on to the ring side (TAP side).
func (r *rxPath) finish(s *rxSlot) {
	if !r.done.Produce(s) {
		panic(errHandoff)
	}
}

// returnStock hands every stocked chain on with length 0, in order: the
// ring is broken (BROKEN-Q) and will not be read into again. TAP side.
func (r *rxPath) returnStock() (n int) {
	for s := r.stock.Consume(); s != nil; s = r.stock.Consume() {
		s.len = 0
		r.finish(s)
		n++
	}
	return n
}

// complete returns filled chains to the guest and reports whether the
// guest wants a call.
func (r *rxPath) complete() (n int, notify bool) {
	n = r.done.ConsumeBatch(r.cbatch)
	if n == 0 {
		return 0, false
	}
	for i := 0; i < n; i++ {
		r.used[i] = virtqueue.Used{Head: r.cbatch[i].chain.Head, Len: r.cbatch[i].len}
	}
	if r.q.Logging() {
		// Migration: the frames' pages go in the dirty log before the
		// guest can see them used (headers and num_buffers included).
		for _, s := range r.cbatch[:n] {
			r.q.MarkWritten(s.chain.In, s.wrote)
		}
	}
	r.q.PushBatch(r.used[:n])
	r.inflight -= n
	return n, r.q.NeedsNotify()
}

// reset empties the path for a new ring; nothing may be in flight. The
// broken flag is the caller's: a settled ring that the guest broke stays
// broken until it is started again.
func (r *rxPath) reset(q virtqueue.Ring, mrg bool, maxFrame uint32) {
	r.q, r.next, r.inflight, r.mrg, r.maxFrame = q, 0, 0, mrg, maxFrame
	for r.stock.Consume() != nil {
	}
	for r.done.Consume() != nil {
	}
	r.added.Store(0)
	r.consumed = 0
	r.limited.Store(false)
}

// putNumBuffers writes the header's num_buffers field (bytes 10-11, little
// endian) into the chain's buffers, which may split the header.
func putNumBuffers(in [][]byte, n uint16) {
	var b [2]byte
	b[0], b[1] = byte(n), byte(n>>8)
	writeAt(in, 10, b[:])
}

// writeAt copies b to offset off of the buffers' concatenation.
func writeAt(bufs [][]byte, off int, b []byte) {
	for _, buf := range bufs {
		if off >= len(buf) {
			off -= len(buf)
			continue
		}
		n := copy(buf[off:], b)
		b = b[n:]
		off = 0
		if len(b) == 0 {
			return
		}
	}
}

// scatter copies as much of src as fits into bufs and returns the count.
func scatter(bufs [][]byte, src []byte) int {
	n := 0
	for _, buf := range bufs {
		k := copy(buf, src[n:])
		n += k
		if n == len(src) {
			break
		}
	}
	return n
}

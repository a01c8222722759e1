package netdev

import (
	"sync/atomic"
	"time"

	"github.com/vhostd/vhostd/tap"
)

// Capture (issue 16): the TAP side of each pair copies the frames it moves,
// and those it drops, into a preallocated ring of capture slots, and goes
// on; a goroutine (capwriter.go) takes them from there into a pcapng file.
// The TAP side is the ring's only producer: toTAP and fromTAP both run
// there, and the control plane calls toTAP (settle) only with the workers
// paused. With capture off each batch pays one atomic load (the hook's
// pointer); with it on, a copy per frame, no lock, no allocation, no log.
// A full ring drops the copy and counts capture_dropped.

// capSlots is the number of frames a pair's capture ring holds.
const capSlots = 512

// DefaultSnaplen is the most bytes of a frame a capture keeps by default.
const DefaultSnaplen = 2048

// Capture reasons: capOK for a frame vhostd moved; otherwise the index of
// the counter that counted its drop (counters.go), plus capCause for the
// cause when the counter has several.
const capOK = 0xff

// capSlot is one captured frame.
type capSlot struct {
	when   int64 // time.Now().UnixNano()
	hdr    [tap.VnetHdrLen]byte
	hasHdr bool
	dir    uint8  // pcapng.RX or TX
	reason uint8  // capOK or a counter index
	cause  uint8  // capCause*
	n      uint32 // bytes in data
	orig   uint32 // the frame's length (without the header)
	data   []byte // snaplen bytes, preallocated
}

// Causes beyond the counter's name.
const (
	causeNone = iota
	causeDisabled
	causeTapGone
	causeTapDown
	causeRefused
	causeSpill
	causeCutAtChain
)

var causeText = [...]string{
	causeNone:       "",
	causeDisabled:   " (ring started but disabled)",
	causeTapGone:    " (TAP gone)",
	causeTapDown:    " (TAP refused the write)",
	causeRefused:    " (the kernel refused this frame)",
	causeSpill:      " (frame larger than the guest's buffers)",
	causeCutAtChain: " (frame filled the chain: cut short, full length unknown)",
}

// capRing is a single-producer single-consumer ring of capture slots.
type capRing struct {
	slots []capSlot
	head  atomic.Uint64 // next to consume (writer goroutine)
	_     [56]byte
	tail  atomic.Uint64 // next to fill (the pair's TAP side)
	// ptail is the producer's own copy of tail.
	ptail uint64
}

func newCapRing(snaplen int) *capRing {
	r := &capRing{slots: make([]capSlot, capSlots)}
	buf := make([]byte, capSlots*snaplen)
	for i := range r.slots {
		r.slots[i].data = buf[i*snaplen : (i+1)*snaplen : (i+1)*snaplen]
	}
	return r
}

// claim returns the next free slot, or nil when the ring is full (the
// caller counts the frame as capture_dropped). Producer only.
func (r *capRing) claim() *capSlot {
	if r.ptail-r.head.Load() >= capSlots {
		return nil
	}
	s := &r.slots[r.ptail%capSlots]
	s.n, s.orig, s.hasHdr, s.cause = 0, 0, false, causeNone
	s.when = time.Now().UnixNano()
	return s
}

// commit publishes the slot claim returned. Producer only.
func (r *capRing) commit() {
	r.ptail++
	r.tail.Store(r.ptail)
}

// gather copies bufs into the slot: the first header bytes into hdr, the
// rest, up to total bytes in all, into data as far as it holds.
func (s *capSlot) gather(bufs [][]byte, total int) {
	off := 0
	for _, b := range bufs {
		if off >= total {
			break
		}
		b = b[:min(len(b), total-off)]
		if off < tap.VnetHdrLen {
			k := copy(s.hdr[off:], b)
			off += k
			b = b[k:]
			s.hasHdr = off == tap.VnetHdrLen
		}
		s.n += uint32(copy(s.data[s.n:], b))
		off += len(b)
	}
	if total > tap.VnetHdrLen {
		s.orig = uint32(total - tap.VnetHdrLen)
	}
}

// capHook is a path's link to its pair's capture ring; nil is off.
type capHook struct{ ring atomic.Pointer[capRing] }

// captureTX copies the batch toTAP took (slots batch[:n]); enabled and
// gone are what toTAP was given. One atomic load when capture is off.
func (t *txPath) captureTX(n int, enabled, gone bool, c *counters) {
	r := t.capture.ring.Load()
	if r == nil {
		return
	}
	for i, s := range t.batch[:n] {
		cs := r.claim()
		if cs == nil {
			c.add(cCaptureDropped, uint64(n-i)) // the ring is full
			return
		}
		cs.dir = 1
		cs.reason, cs.cause = s.fate, causeNone
		switch {
		case s.drop == txMalformed:
			cs.reason = cTxMalformed
		case s.drop == txOversize:
			cs.reason = cTxOversize
		case s.drop == txRefused:
			cs.reason = cTxOffloadRefused
		case !enabled:
			cs.reason, cs.cause = cTxDiscarded, causeDisabled
		case gone:
			cs.reason, cs.cause = cTxDroppedTap, causeTapGone
		}
		if cs.reason == cTxDroppedTap && cs.cause == causeNone {
			cs.cause = s.cause
		}
		if s.drop == txOK && s.bytes <= smallFrame {
			t.one[0] = s.buf[:tap.VnetHdrLen+int(s.bytes)]
			cs.gather(t.one[:], len(t.one[0]))
		} else {
			cs.gather(s.chain.Out, int(s.chain.OutLen))
		}
		r.commit()
	}
}

// captureRX copies into ring the frame of size bytes fromTAP just read
// into s (and the overflow buffer beyond s.cap); whole says no overflow
// buffer was offered. It reads what fromTAP is about to decide, so a
// frame it drops carries the reason. fromTAP loads ring once per batch
// and calls this only when capture is on.
func (r *rxPath) captureRX(ring *capRing, s *rxSlot, size uint32, whole bool, c *counters) {
	cs := ring.claim()
	if cs == nil {
		c.add(cCaptureDropped, 1)
		return
	}
	cs.dir, cs.reason = 0, capOK
	switch {
	case whole && size >= s.cap:
		cs.reason, cs.cause = cRxTruncated, causeCutAtChain
	case size > s.cap && (!r.mrg || size > r.maxFrame):
		cs.reason, cs.cause = cRxTruncated, causeSpill
	}
	cs.gather(s.chain.In, int(min(size, s.cap)))
	if size > s.cap && !whole {
		cs.n += uint32(copy(cs.data[cs.n:], r.overflow[:size-s.cap]))
		cs.orig = size - tap.VnetHdrLen
	}
	// num_buffers is written after the frame is placed: one chain unless
	// it spilled (then the comment says so).
	cs.hdr[10], cs.hdr[11] = 0, 0
	if size <= s.cap {
		cs.hdr[10] = 1
	}
	ring.commit()
}

// dropWrite counts frame j of t.frames as dropped by counter k and
// records why for a capture.
func (t *txPath) dropWrite(j, k int, cause uint8, c *counters) {
	c.add(k, 1)
	b := t.batch[t.frameOf[j]]
	b.fate, b.cause = uint8(k), cause
}

package fe

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/vhostd/vhostd/perf/internal/frames"
)

// Counters are what a loop moved; read atomically by a reporter.
type Counters struct {
	Frames, Bytes atomic.Uint64
}

// TxLoop fills every TX descriptor with hdr+frame and transmits until stop
// is closed: publish what the ring has room for, count what comes back.
func (c *Conn) TxLoop(hdr [frames.VnetHdrLen]byte, frame []byte, stop <-chan struct{}, n *Counters) {
	if c.PTX != nil {
		c.txLoopPacked(hdr, frame, stop, n)
		return
	}
	r := c.TX
	l := uint32(len(hdr) + len(frame))
	fillFrames(r.size, r.Slab, hdr[:], frame)
	for i := uint16(0); i < r.size; i++ {
		r.SetDesc(i, l, false)
	}
	var done uint64
	for k := 0; ; k++ {
		if stopped(k, stop) {
			return
		}
		u := r.UsedIdx()
		if d := u - r.lastUsed; d != 0 {
			r.lastUsed = u
			done += uint64(d)
			n.Frames.Store(done)
			n.Bytes.Store(done * uint64(len(frame)))
		}
		room := r.size - r.InFlight()
		if room >= 32 || (room > 0 && r.InFlight() == 0) {
			old := r.availIdx
			for ; room > 0; room-- {
				if c.Touch {
					touch(r.Slab(r.availIdx & r.mask)[:l], hdr[:], frame)
				}
				r.Put(r.availIdx & r.mask)
			}
			r.Publish(old)
		}
	}
}

// touch rewrites one byte in every 64-byte line of slab (hdr and frame
// laid out as TxLoop wrote them), with the value it already has: the
// lines are then freshly written by this CPU, as a guest's new frame is,
// and the back-end on the other CPU must fetch them from here.
func touch(slab, hdr, frame []byte) {
	for o := 0; o < len(slab); o += 64 {
		if o < len(hdr) {
			slab[o] = hdr[o]
		} else {
			slab[o] = frame[o-len(hdr)]
		}
	}
}

// fillFrames writes hdr and frame into the slab of each of size buffers.
func fillFrames(size uint16, slab func(uint16) []byte, hdr, frame []byte) {
	for i := uint16(0); i < size; i++ {
		s := slab(i)
		copy(s, hdr)
		copy(s[len(hdr):], frame)
	}
}

// stopped reports whether stop is closed, looking only every 1024th
// round k of a loop: the channel check costs more than a poll of the ring.
func stopped(k int, stop <-chan struct{}) bool {
	if k&1023 != 0 {
		return false
	}
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// PostRx makes every RX descriptor a device-writable slab and publishes
// them all.
func (c *Conn) PostRx() {
	if c.PRX != nil {
		c.postRxPacked()
		return
	}
	r := c.RX
	for i := uint16(0); i < r.size; i++ {
		r.SetDesc(i, uint32(r.slab), true)
	}
	old := r.availIdx
	for i := uint16(0); i < r.size; i++ {
		r.Put(i)
	}
	r.Publish(old)
}

// RxLoop receives until stop is closed, handing buffers straight back.
// src, if not nil, is called once per loop: a traffic source that shares
// this thread with the guest (both on one CPU, taking turns, instead of
// two processes whose scheduler time slices starve the ring).
func (c *Conn) RxLoop(stop <-chan struct{}, n *Counters, src func()) {
	c.PostRx()
	var t rxTally
	for k := 0; ; k++ {
		if stopped(k, stop) {
			return
		}
		if src != nil {
			src()
		}
		before := t.frames
		if c.PRX != nil {
			c.rxPollPacked(&t)
		} else {
			c.rxPoll(&t)
		}
		if t.frames != before {
			n.Frames.Store(t.frames)
			n.Bytes.Store(t.bytes)
		}
	}
}

// rxTally counts what RxLoop received.
type rxTally struct{ frames, bytes uint64 }

// add counts one used buffer of l bytes (header included). Slabs hold the
// largest frame, so every frame is one buffer.
func (t *rxTally) add(l uint32) {
	t.frames++
	if l > frames.VnetHdrLen {
		t.bytes += uint64(l - frames.VnetHdrLen)
	}
}

// rxPoll takes what the back-end used on the split RX ring and hands the
// buffers back.
func (c *Conn) rxPoll(t *rxTally) {
	r := c.RX
	u := r.UsedIdx()
	if u == r.lastUsed {
		return
	}
	old := r.availIdx
	for ; r.lastUsed != u; r.lastUsed++ {
		head, l := r.Used(r.lastUsed)
		t.add(l)
		r.Put(head)
	}
	r.Publish(old)
}

// PingResult is the ping-pong outcome.
type PingResult struct {
	Sent, Received int
	P50, P99, Min  time.Duration
}

// Ping sends ICMP echo requests from the guest to the host one at a time
// for d, each answered by the host's stack through the back-end, and
// returns round-trip percentiles. The guest busy-polls its RX used ring.
func (c *Conn) Ping(echo []byte, id uint16, d time.Duration) PingResult {
	rx, tx := c.RX, c.TX
	c.PostRx()
	l := uint32(frames.VnetHdrLen + len(echo))
	for i := uint16(0); i < tx.size; i++ {
		tx.SetDesc(i, l, false)
	}
	rtts := make([]time.Duration, 0, 1<<16)
	end := time.Now().Add(d)
	var res PingResult
	for seq := uint16(1); time.Now().Before(end); seq++ {
		head := tx.availIdx & tx.mask
		s := tx.Slab(head)
		clear(s[:frames.VnetHdrLen])
		copy(s[frames.VnetHdrLen:], echo)
		frames.SetEchoSeq(s[frames.VnetHdrLen:], id, seq)
		old := tx.availIdx
		t0 := time.Now()
		tx.Put(head)
		tx.Publish(old)
		res.Sent++
		deadline := t0.Add(100 * time.Millisecond)
	wait:
		for k := 0; ; k++ {
			tx.lastUsed = tx.UsedIdx()
			u := rx.UsedIdx()
			if u != rx.lastUsed {
				old := rx.availIdx
				got := false
				for ; rx.lastUsed != u; rx.lastUsed++ {
					h, n := rx.Used(rx.lastUsed)
					if n > frames.VnetHdrLen {
						b := rx.Slab(h)[frames.VnetHdrLen:n]
						if sq, ok := frames.IsEchoReply(b, id); ok && sq == seq {
							got = true
						}
					}
					rx.Put(h)
				}
				rx.Publish(old)
				if got {
					rtts = append(rtts, time.Since(t0))
					res.Received++
					break wait
				}
			}
			if k&255 == 0 && time.Now().After(deadline) {
				break
			}
		}
	}
	if len(rtts) > 0 {
		sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
		res.Min = rtts[0]
		res.P50 = rtts[len(rtts)/2]
		res.P99 = rtts[len(rtts)*99/100]
	}
	return res
}

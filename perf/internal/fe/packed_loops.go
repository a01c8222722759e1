package fe

import "github.com/vhostd/vhostd/perf/internal/frames"

// txLoopPacked is TxLoop on the packed TX ring.
func (c *Conn) txLoopPacked(hdr [frames.VnetHdrLen]byte, frame []byte, stop <-chan struct{}, n *Counters) {
	r := c.PTX
	l := uint32(len(hdr) + len(frame))
	for i := uint16(0); i < r.size; i++ {
		s := r.Slab(i)
		copy(s, hdr[:])
		copy(s[len(hdr):], frame)
	}
	var done uint64
	for k := 0; ; k++ {
		if stopped(k, stop) {
			return
		}
		d := uint64(0)
		for {
			id, _, ok := r.Used()
			if !ok {
				break
			}
			r.Release(id)
			d++
		}
		if d != 0 {
			done += d
			n.Frames.Store(done)
			n.Bytes.Store(done * uint64(len(frame)))
		}
		room := r.Room()
		if room >= 32 || (room > 0 && r.inFlight == 0) {
			for ; room > 0; room-- {
				r.AddFree(l, false)
			}
			r.Publish()
		}
	}
}

// postRxPacked makes every RX buffer available, device-writable.
func (c *Conn) postRxPacked() {
	r := c.PRX
	for r.Room() > 0 {
		r.AddFree(uint32(r.slab), true)
	}
	r.Publish()
}

// rxLoopPacked is RxLoop on the packed RX ring.
func (c *Conn) rxLoopPacked(stop <-chan struct{}, n *Counters, src func()) {
	r := c.PRX
	c.postRxPacked()
	var fr, by uint64
	for k := 0; ; k++ {
		if stopped(k, stop) {
			return
		}
		if src != nil {
			src()
		}
		got := false
		for {
			id, l, ok := r.Used()
			if !ok {
				break
			}
			got = true
			fr++
			if l > frames.VnetHdrLen {
				by += uint64(l - frames.VnetHdrLen)
			}
			r.Add(id, uint32(r.slab), true)
		}
		if !got {
			continue
		}
		r.Publish()
		n.Frames.Store(fr)
		n.Bytes.Store(by)
	}
}

// Kicks is how often the front-end kicked the back-end, both rings.
func (c *Conn) Kicks() uint64 {
	if c.PTX != nil {
		return c.PTX.Kicks + c.PRX.Kicks
	}
	return c.TX.Kicks + c.RX.Kicks
}

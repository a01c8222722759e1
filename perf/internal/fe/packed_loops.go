package fe

import "github.com/vhostd/vhostd/perf/internal/frames"

// txLoopPacked is TxLoop on the packed TX ring.
func (c *Conn) txLoopPacked(hdr [frames.VnetHdrLen]byte, frame []byte, stop <-chan struct{}, n *Counters) {
	r := c.PTX
	l := uint32(len(hdr) + len(frame))
	fillFrames(r.size, r.Slab, hdr[:], frame)
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

// rxPollPacked is rxPoll on the packed RX ring.
func (c *Conn) rxPollPacked(t *rxTally) {
	r := c.PRX
	got := false
	for {
		id, l, ok := r.Used()
		if !ok {
			break
		}
		got = true
		t.add(l)
		r.Add(id, uint32(r.slab), true)
	}
	if got {
		r.Publish()
	}
}

// Kicks is how often the front-end kicked the back-end, both rings.
func (c *Conn) Kicks() uint64 {
	if c.PTX != nil {
		return c.PTX.Kicks + c.PRX.Kicks
	}
	return c.TX.Kicks + c.RX.Kicks
}

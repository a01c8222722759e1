package netdev

import (
	"fmt"
	"strings"
)

// QueueStats are one queue pair's counters.
type QueueStats struct {
	Pair   int
	Values map[string]uint64
}

// Stats returns every queue pair's counters, and tap_gone: 1 once the
// pair's TAP queue stopped carrying traffic (BAD-INPUTS 51). Any goroutine;
// the figures are those the workers last published (once per poll).
func (d *Device) Stats() []QueueStats {
	out := make([]QueueStats, len(d.pairs))
	for i, p := range d.pairs {
		s := p.snapshot()
		m := make(map[string]uint64, numCounters)
		for k, v := range s {
			m[counterNames[k]] = v
		}
		m["tap_gone"] = 0
		if p.tapGone.Load() {
			m["tap_gone"] = 1
		}
		out[i] = QueueStats{Pair: i, Values: m}
	}
	return out
}

// StatsText renders the counters, one line per queue pair, zero counters
// left out; tap_gone=1 ends the line of a pair whose TAP queue is gone.
func (d *Device) StatsText() string {
	var b strings.Builder
	for i, p := range d.pairs {
		s := p.snapshot()
		fmt.Fprintf(&b, "queue %d:", i)
		for k, v := range s {
			if v != 0 || k <= cTxBytes {
				fmt.Fprintf(&b, " %s=%d", counterNames[k], v)
			}
		}
		if p.tapGone.Load() {
			b.WriteString(" tap_gone=1")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// snapshot adds up the pair's two counter blocks.
func (p *pair) snapshot() [numCounters]uint64 {
	s, t := p.c.snapshot(), p.ct.snapshot()
	for i := range s {
		s[i] += t[i]
	}
	return s
}

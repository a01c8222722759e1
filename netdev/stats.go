package netdev

import (
	"fmt"
	"strings"

	"github.com/vhostd/vhostd/busypoll"
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

// snapshot reads the pair's published counters.
func (p *pair) snapshot() [numCounters]uint64 { return p.c.snapshot() }

// RingStatus is one ring's state as the control plane last set it.
type RingStatus struct {
	Index int    // vhost-user ring index: 2*pair (rx), 2*pair+1 (tx)
	Size  uint16 // entries, 0 before the ring was first set up
	// State is stopped, enabled, disabled (running but not enabled) or
	// broken (the guest broke it; it stays so until restarted).
	State string
}

// PairStatus is one queue pair's state.
type PairStatus struct {
	Pair    int
	RX, TX  RingStatus
	TAPGone bool
}

// Status is the device's state for the operator: host interface,
// features and the state of every ring.
type Status struct {
	Interface  string
	Kind       string // tap or macvtap
	MTU        int
	QueuePairs int
	TAPWrite   TAPWriteChoice
	Offered    uint64 // virtio features offered
	Acked      uint64 // virtio features the driver acked (0: none yet)
	Pairs      []PairStatus
}

// Status returns the device's state. Any goroutine; it takes the control
// plane's lock, never the workers'.
func (d *Device) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Status{
		Interface: d.tap.Name(), Kind: d.tap.Kind().String(), MTU: int(d.mtu), QueuePairs: len(d.pairs),
		TAPWrite: d.tw, Offered: d.offered, Acked: d.acked, Pairs: make([]PairStatus, len(d.pairs)),
	}
	for i, p := range d.pairs {
		st.Pairs[i] = PairStatus{Pair: i, RX: p.ringStatus(rxRing, p.rx.broken.Load()),
			TX: p.ringStatus(txRing, p.txBroken.Load()), TAPGone: p.tapGone.Load()}
	}
	return st
}

// ringStatus reads what the control plane set (d.mu held); broken comes
// from the ring side's atomic flag.
func (p *pair) ringStatus(role int, broken bool) RingStatus {
	rs := &p.rings[role]
	st := RingStatus{Index: 2*p.index + role, Size: rs.spec.Size, State: "stopped"}
	switch {
	case !rs.running:
	case broken:
		st.State = "broken"
	case rs.enabled:
		st.State = "enabled"
	default:
		st.State = "disabled"
	}
	return st
}

// WorkerStats returns, for each queue pair, its worker's busypoll
// counters, nil before its first ring started. The workers publish them
// themselves; this takes only the control plane's lock.
func (d *Device) WorkerStats() []*busypoll.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*busypoll.Stats, len(d.pairs))
	for i, p := range d.pairs {
		if r, ok := p.w.(*pairWorker); ok {
			s := r.w.Stats()
			out[i] = &s
		}
	}
	return out
}

// CounterNames are the names Stats reports for every queue pair.
func CounterNames() []string {
	return append(append([]string(nil), counterNames[:]...), "tap_gone")
}

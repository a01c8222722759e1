package netdev

import (
	"fmt"
	"sync/atomic"

	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// Ring roles within a queue pair: vq 2i receives, vq 2i+1 transmits.
const (
	rxRing = 0
	txRing = 1
)

// pair is one queue pair: two rings, one TAP queue, one worker. The
// control plane changes a pair only while its worker is paused; the worker
// is the only one touching it otherwise.
type pair struct {
	dev   *Device
	index int
	tq    *tap.Queue
	tx    *txPath
	rx    *rxPath
	rings [2]ringState
	// c counts the pair's events; its one writer is the worker (or the
	// control plane, with the worker paused).
	c counters
	w runner // nil until the first ring starts
	// tapGone is set when the TAP queue stopped carrying traffic, by the
	// TAP side when its I/O says so or by the host watch when a probe does
	// (BAD-INPUTS 51): TX frames are then dropped, RX stops.
	tapGone atomic.Bool
	// tapRetired is set by the host watch, with the workers paused, once
	// it has seen tapGone: from then on the TAP fd is in no epoll set.
	// Only the control plane changes it, at a safe point, so Fds gives
	// busypoll the same list when a poller is removed as when it was
	// added (tapGone flips under a running worker and cannot be used).
	tapRetired bool
	// faulted is set, by the worker or by the control plane's settle
	// (worker paused), when guest memory of the pair's rings faulted
	// (fault.go, BAD-INPUTS 64): from then on the pair touches no guest
	// memory until a ring starts with none running.
	faulted bool
	// txBroken mirrors rings[txRing].broken for readers outside the
	// worker (Status); the rx side's is rx.broken.
	txBroken atomic.Bool
}

type ringState struct {
	running bool
	enabled bool
	broken  bool
	// callOwed is set when a call signal was refused (the front-end's
	// counter was saturated): the next batch tries again.
	callOwed bool
	q        virtqueue.Ring // split or packed: netdev does not tell them apart
	spec     vhost.RingSpec
}

func newPair(d *Device, index int, tq *tap.Queue) *pair {
	return &pair{dev: d, index: index, tq: tq, tx: newTxPath(), rx: newRxPath()}
}

// paused runs f with the worker at a safe point.
func (p *pair) paused(f func()) {
	if p.w == nil {
		f()
		return
	}
	p.w.Pause()
	defer p.w.Resume()
	f()
}

func (p *pair) maxFrame(acked uint64) uint32 {
	if acked&(bit(FHostTSO4)|bit(FHostTSO6)|bit(FHostUFO)|bit(FHostUSO)) != 0 {
		return maxGSOFrame
	}
	return uint32(p.dev.mtu) + frameOverhead
}

func (p *pair) maxRxFrame(acked uint64) uint32 {
	if acked&(bit(FGuestTSO4)|bit(FGuestTSO6)|bit(FGuestUFO)|bit(FGuestUSO4)|bit(FGuestUSO6)) != 0 {
		return maxGSOFrame + tap.VnetHdrLen
	}
	return uint32(p.dev.mtu) + frameOverhead + tap.VnetHdrLen
}

// start starts ring r.Index%2 of the pair.
func (p *pair) start(r vhost.RingSpec, mem *virtqueue.Memory, log *virtqueue.DirtyLog, acked uint64) error {
	if err := checkPollable(r); err != nil {
		return err
	}
	cfg := virtqueue.Config{
		Size: r.Size, Desc: r.Desc, Avail: r.Avail, Used: r.Used, EventIdx: r.EventIdx, Indirect: r.Indirect,
		Packed: r.Packed, InOrderTX: r.Index%2 == txRing && acked&bit(FInOrder) != 0,
	}
	r.Base = p.packedBase(r, cfg, mem)
	q, err := virtqueue.NewRing(mem, cfg, r.Base)
	if err != nil {
		return err
	}
	q.SetLog(log, r.LogUsed, logAddr(r))
	// A blocking kick fd would stall the worker when it drains it.
	if r.Kick >= 0 {
		if err := unix.SetNonblock(r.Kick, true); err != nil {
			return err
		}
	}
	role := r.Index % 2
	p.paused(func() {
		if !p.rings[1-role].running {
			p.faulted = false
			p.rx.efault = false
		}
		p.rings[role] = ringState{running: true, enabled: r.Enabled, q: q, spec: r}
		if role == txRing {
			p.tx.reset(q, p.maxFrame(acked))
			p.tx.offloads = txOffloads(acked)
			p.txBroken.Store(false)
		} else {
			p.rx.reset(q, acked&bit(FMrgRxbuf) != 0, p.maxRxFrame(acked))
			p.rx.broken.Store(false)
		}
	})
	if p.w == nil {
		w, err := newRunner(p)
		if err != nil {
			p.rings[role] = ringState{}
			return err
		}
		p.w = w
	}
	// Look at the ring at once: the guest may have queued buffers and
	// kicked before the ring started (a kick before enable is not lost).
	p.w.Wake()
	return nil
}

// packedBase is the base a ring starts at: r.Base, but for a packed ring
// whose descriptors show another position (virtqueue.RingPosition), that
// one (BAD-INPUTS 76). QEMU cannot restore a packed ring's position after
// a back-end restart and sends the one it last knew: trusting it would
// leave the queue dead, popping nothing (the slots there are used) while
// the guest waits.
func (p *pair) packedBase(r vhost.RingSpec, c virtqueue.Config, mem *virtqueue.Memory) uint32 {
	if !r.Packed || mem == nil {
		return r.Base
	}
	pos, err := c.RingPosition(mem)
	if err != nil || pos == uint16(r.Base) {
		return r.Base // NewRing reports a bad ring
	}
	p.dev.log.Warn("packed ring base from the front-end disagrees with the ring: starting where the ring shows (a front-end restoring a ring after a back-end restart)",
		"ring", r.Index, "base", fmt.Sprintf("%#x", r.Base), "ring_position", fmt.Sprintf("%#x", pos))
	return uint32(pos) | uint32(pos)<<16
}

// logAddr is where r's used writes are marked in the dirty log: the
// front-end's log address (the used ring), or for a packed ring the
// descriptor ring, where used descriptors are written back (QEMU gives the
// device area there; virtqueue marks that itself).
func logAddr(r vhost.RingSpec) uint64 {
	if r.Packed {
		return r.Desc
	}
	return r.LogAddr
}

// stop stops a ring and returns its GET_VRING_BASE value: the next avail
// index it has not consumed (virtqueue.RingBase: for a packed ring, the
// avail and used positions with their wrap counters).
func (p *pair) stop(role int) (base uint32) {
	p.paused(func() {
		rs := &p.rings[role]
		if !rs.running {
			base = rs.spec.Base
			return
		}
		// Finish or hand back what was popped (BAD-INPUTS 46): TX chains
		// are written to the TAP (or dropped if it is gone) and returned;
		// RX chains stocked but unfilled are rewound, so the base reported
		// is the first one not consumed.
		p.settleGuarded()
		base = virtqueue.RingBase(rs.q)
		if avail, used := rs.q.NextAvail(), rs.q.NextUsed(); used != avail && !p.faulted {
			// Cannot happen while chains complete in pop order and none
			// is dropped; if it does, the base is still the one to trust
			// after a restart-from-used-index, so say so loudly.
			p.dev.log.Error("ring stopped with chains unaccounted for (ring-state invariant)",
				"ring", 2*p.index+role, "next_avail", avail, "next_used", used)
		}
		if role == rxRing {
			p.rx.reset(nil, false, 0)
		}
		*rs = ringState{spec: rs.spec}
		rs.spec.Base = base
	})
	return base
}

func (p *pair) enable(role int, on bool) {
	p.paused(func() { p.rings[role].enabled = on })
	if p.w != nil && on {
		p.w.Wake()
	}
}

// setCall replaces a running ring's call eventfd. The new fd gets one
// signal at once: a completion signalled on the old fd just before the
// switch may never have reached the guest (QEMU sends the real call fd
// after the ring started, and a masked notifier does not forward), and
// under EVENT_IDX the guest would then never move used_event again. A
// spurious interrupt costs the guest one look at its used ring.
func (p *pair) setCall(role int, fd int) {
	p.paused(func() {
		p.rings[role].spec.Call = fd
		if fd >= 0 && p.rings[role].running && !signal(fd) {
			p.c.add(cCallsDeferred, 1)
		}
	})
}
func (p *pair) setErr(role int, fd int) { p.paused(func() { p.rings[role].spec.Err = fd }) }

// setLog gives the running rings a new dirty log (nil: none). The workers
// switch at a safe point; whatever they wrote before it was marked in the
// old log, if any.
func (p *pair) setLog(log *virtqueue.DirtyLog) {
	p.paused(func() {
		for i := range p.rings {
			rs := &p.rings[i]
			if rs.running {
				rs.q.SetLog(log, rs.spec.LogUsed, logAddr(rs.spec))
			}
		}
	})
}

// setRingLog turns used-ring logging on or off for a running ring.
func (p *pair) setRingLog(role int, on bool, usedGPA uint64) {
	p.paused(func() {
		rs := &p.rings[role]
		rs.spec.LogUsed, rs.spec.LogAddr = on, usedGPA
		if rs.running {
			rs.q.SetLog(p.dev.dirty, on, logAddr(rs.spec))
		}
	})
}

// setMemory moves running rings to a new table. vhost has checked that
// every running ring translates in it; a failure here breaks the ring.
// Chains in flight hold iovecs into the old table, which vhost unmaps as
// soon as this returns: TX chains are finished first (written to the TAP
// and returned), RX buffers taken but not filled are handed back to the
// ring to be popped again through the new table.
func (p *pair) setMemory(mem *virtqueue.Memory) {
	if mem == nil {
		return
	}
	p.paused(func() {
		if p.settleGuarded(); p.faulted {
			return // its rings stay broken until restarted
		}
		for i := range p.rings {
			rs := &p.rings[i]
			if rs.running && rs.q.SetMemory(mem) != nil {
				p.breakRing(i)
			}
		}
	})
}

// settle leaves no chain in flight: TX frames are written (or dropped)
// and returned, filled RX buffers returned, unfilled ones rewound (on a
// broken ring returned empty instead). Since chains complete in the order
// they were popped, what is rewound is exactly the newest popped, and the
// ring's next avail index equals its used index afterwards. A guest that
// asked for an interrupt for what settle returned gets one: the ring may
// sleep or stop right after. Only with the workers paused.
func (p *pair) settle() {
	var callTx, callRx bool
	if rs := &p.rings[txRing]; rs.running {
		for p.tx.inflight > 0 {
			w, _ := p.tx.toTAP(p.tapQueue(), rs.enabled, &p.c)
			n, notify := p.tx.complete()
			callTx = callTx || notify
			if w == 0 && n == 0 {
				p.dev.log.Error("TX chains in flight and in no hand-off ring (ring-state invariant)",
					"ring", 2*p.index+txRing, "inflight", p.tx.inflight)
				break
			}
		}
	}
	if rs := &p.rings[rxRing]; rs.running {
		if p.rx.broken.Load() {
			p.rx.returnStock()
		}
		_, callRx = p.rx.complete()
		rs.q.Rewind(p.rx.inflight)
		p.rx.reset(rs.q, p.rx.mrg, p.rx.maxFrame)
	}
	p.signalCalls(callTx, callRx)
}

// shutdown stops the worker for good.
func (p *pair) shutdown() {
	if p.w != nil {
		p.w.Stop()
		p.w = nil
	}
}

// retireTAP puts the pair in the TAP-gone state for good, whoever found
// the TAP gone: tapGone set, and the TAP fd taken out of the workers'
// epoll sets (the pause removes the pollers with the fd still listed and
// adds them back without it). The workers run a round after the pause,
// which drops the TX frames waiting for the TAP. Control plane, d.mu held.
func (p *pair) retireTAP() {
	p.paused(func() {
		p.tapGone.Store(true)
		p.tapRetired = true
	})
}

// breakRing marks a ring broken by the guest (BAD-INPUTS "BROKEN-Q"): it is
// not processed again until restarted; the error eventfd is signalled.
// Chains popped before the fault are still completed in order: TX chains
// go on to the TAP, stocked RX chains come back empty (returnStock), and
// with them the faulting head if it was valid.
func (p *pair) breakRing(role int) {
	rs := &p.rings[role]
	if rs.broken {
		return
	}
	rs.broken = true
	if role == txRing {
		p.c.add(cTxBroken, 1)
		p.txBroken.Store(true)
	} else {
		p.c.add(cRxBroken, 1)
		p.rx.broken.Store(true)
	}
	if rs.spec.Err >= 0 && !signal(rs.spec.Err) {
		p.c.add(cCallsDeferred, 1)
	}
}

// tapQueue is the TAP queue, or nil once it is gone.
func (p *pair) tapQueue() *tap.Queue {
	if p.tapGone.Load() {
		return nil
	}
	return p.tq
}

// countCall counts a call on the ring's call eventfd and reports whether
// there is one to signal.
func (p *pair) countCall(role int) bool {
	if p.rings[role].spec.Call < 0 {
		return false
	}
	p.c.add(cCalls, 1)
	return true
}

func (p *pair) active(role int) bool {
	rs := &p.rings[role]
	return rs.running && !rs.broken
}

package netdev

// The worker's side of a queue pair: what busypoll calls (Poll, Arm,
// Disarm, Fds), each made of a ring-side and a TAP-side step that run one
// after the other. Everything here runs on the pair's worker; the control
// plane (pair.go) changes a pair only while its worker is paused.

// Poll moves up to max units of work in each direction: TX chains to the
// TAP, TAP frames into RX buffers. Worker only.
func (p *pair) Poll(max int) (work int) {
	armFaults()
	defer p.catchFault()
	if p.faulted {
		p.breakFaulted()
		return 0
	}
	if max > budget {
		max = budget
	}
	work = p.ringPop(max)
	work += p.tapStep(max)
	if p.faulted {
		p.breakFaulted() // the TAP side found the guest's buffers gone
		p.c.publish()
		return work
	}
	p.ringComplete()
	return work
}

// ringPop is the ring side's first half: pop guest TX chains and prepare
// them, pop guest RX buffers into the stock. It returns the chains popped.
func (p *pair) ringPop(max int) (work int) {
	if p.active(txRing) {
		n, err := p.tx.pop(max, &p.c)
		if err != nil {
			p.breakRing(txRing)
		}
		work += n
	}
	if p.rxOn() {
		n, err := p.rx.refill(max, &p.c)
		if err != nil {
			p.breakRing(rxRing)
		}
		work += n
	}
	return work
}

// tapStep is the TAP side: write prepared TX frames, read frames into
// stocked RX buffers. It returns the frames moved.
func (p *pair) tapStep(max int) (work int) {
	if p.rings[txRing].running {
		n, gone := p.tx.toTAP(p.tapQueue(), p.rings[txRing].enabled, &p.c)
		if gone {
			p.tapGone.Store(true)
		}
		work += n
	}
	if p.rxOn() {
		n, gone := p.rx.fromTAP(p.tq, max, &p.c)
		if gone {
			p.tapGone.Store(true)
		}
		if p.rx.efault {
			// The kernel could not write the guest's buffers: as a
			// fault in them, the pair breaks (fault.go).
			p.faulted = true
		}
		work += n
	} else if p.rings[rxRing].running && p.rx.broken.Load() {
		work += p.rx.returnStock()
	}
	return work
}

// ringComplete is the ring side's second half: return finished chains to
// the used rings, publish the counters, then signal the calls (whoever a
// call wakes sees the counters of what it was called for, rx_packets
// among them). It returns the chains returned.
func (p *pair) ringComplete() (work int) {
	var callTx, callRx bool
	if p.rings[txRing].running {
		var n int
		n, callTx = p.tx.complete()
		work += n
	}
	if p.rings[rxRing].running {
		var n int
		n, callRx = p.rx.complete()
		work += n
	}
	p.signalCalls(callTx, callRx)
	return work
}

// signalCalls publishes the pair's counters, then signals the calls
// asked for (whoever a call wakes sees the counters of what it was called
// for). A call the front-end's saturated counter refused (BAD-INPUTS 62)
// is owed and tried again with the next batch; the worker does not stay
// awake for it.
func (p *pair) signalCalls(callTx, callRx bool) {
	callTx = (callTx || p.rings[txRing].callOwed) && p.countCall(txRing)
	callRx = (callRx || p.rings[rxRing].callOwed) && p.countCall(rxRing)
	p.c.publish()
	if callTx {
		p.call(txRing)
	}
	if callRx {
		p.call(rxRing)
	}
}

// call signals a ring's call eventfd; a refused signal is owed and
// counted (published with the next batch).
func (p *pair) call(role int) {
	rs := &p.rings[role]
	rs.callOwed = !signal(rs.spec.Call)
	if rs.callOwed {
		p.c.add(cCallsDeferred, 1)
	}
}

// rxOn reports whether frames may be delivered to the guest now. running
// and enabled change only with the worker paused; tapGone may be set by
// the host watch at any time.
func (p *pair) rxOn() bool {
	rs := &p.rings[rxRing]
	return rs.running && rs.enabled && !p.rx.broken.Load() && !p.tapGone.Load()
}

// Arm re-enables the wake-ups the worker sleeps on and reports whether
// work arrived meanwhile (then the worker polls again instead of
// sleeping). Worker only.
func (p *pair) Arm() (pending bool) {
	ring := p.ringArm()
	return p.tapArm() || ring
}

// ringArm enables the rings' kicks and reports work already waiting for
// the ring side: new chains it has room to pop, or finished ones to return.
func (p *pair) ringArm() (pending bool) {
	defer p.catchFault()
	if p.faulted {
		return false
	}
	for role := range p.rings {
		if p.active(role) && p.rings[role].spec.Kick < 0 {
			// The front-end gave no kick fd: it asked for polling.
			return true
		}
	}
	if p.active(txRing) {
		if p.rings[txRing].q.EnableNotify() && p.tx.inflight < slotCount {
			pending = true
		}
		if !p.tx.done.Empty() {
			pending = true
		}
	}
	if p.rxOn() {
		// With buffers in stock the RX kick is not needed, but it costs
		// the guest little and keeps the stock topped up.
		if p.rings[rxRing].q.EnableNotify() && p.rx.inflight < slotCount {
			pending = true
		}
	}
	if p.rings[rxRing].running && !p.rx.done.Empty() {
		pending = true
	}
	return pending
}

// tapArm reports work waiting for the TAP side: prepared TX frames, or
// frames in the TAP while there are buffers to put them in. With no
// buffers the worker sleeps even if frames wait (BAD-INPUTS 44): the RX
// kick wakes it, and its refill gives the TAP side buffers.
func (p *pair) tapArm() bool {
	if p.faulted {
		return false // its hand-offs hold what a faulted pair never moves
	}
	if p.rings[txRing].running && !p.tx.toTap.Empty() {
		return true
	}
	if p.rings[rxRing].running && p.rx.broken.Load() && !p.rx.stock.Empty() {
		return true // stocked chains of a broken ring to hand back
	}
	if !p.rxOn() {
		return false
	}
	if p.rx.stock.Empty() {
		p.rx.noteStarved(p.tq, &p.c)
		p.c.publish()
		return false
	}
	return p.rx.canRead() && (p.rx.held != nil || readable(p.tq.Fd()))
}

// Disarm suppresses kicks again while the worker polls, and drains the kick
// eventfds it may have woken on. Worker only.
func (p *pair) Disarm() {
	defer p.catchFault()
	for role := range p.rings {
		rs := &p.rings[role]
		if !rs.running {
			continue
		}
		if !p.faulted {
			rs.q.DisableNotify()
		}
		if rs.spec.Kick >= 0 && drain(rs.spec.Kick) != 0 {
			p.c.add(cKicks, 1)
		}
	}
}

// Fds lists what a sleeping worker waits on: the kick eventfds of running
// rings and, while RX runs and the TAP is not retired, the TAP queue.
// busypoll registers them edge-triggered, so a TAP holding frames the guest
// has no buffers for does not keep the worker awake (Arm sleeps on the RX
// kick instead). Worker only, at a safe point.
func (p *pair) Fds() []int {
	var fds []int
	for role := range p.rings {
		rs := &p.rings[role]
		if rs.running && rs.spec.Kick >= 0 {
			fds = append(fds, rs.spec.Kick)
		}
	}
	if !p.tapRetired && p.rings[rxRing].running {
		fds = append(fds, p.tq.Fd())
	}
	return fds
}

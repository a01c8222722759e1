package netdev

import (
	"runtime"
	"runtime/debug"
)

// Guest memory is the front-end's: a memfd it can truncate after
// SET_MEM_TABLE, or a tmpfs or hugetlbfs that runs out of pages under a
// guest buffer. Touching such a page raises SIGBUS, which kills a Go
// program unless the goroutine asked for a panic instead
// (debug.SetPanicOnFault). Every worker method that touches guest memory
// (Poll, ringArm, Disarm) asks for it and
// recovers: a fault whose address lies in the guest memory or dirty log of
// the pair's rings marks the pair faulted, any other panic goes on
// (BAD-INPUTS 64). The control plane does the same around settle.
//
// A faulted pair touches no guest memory again: the ring side breaks its
// running rings (BROKEN-Q, as a guest that breaks a ring: the error
// eventfd is signalled, rx/tx_queue_broken counted) and then does nothing
// but drain kicks, the TAP side does nothing, the chains in flight are
// dropped when a ring stops (there is no used ring left to return them
// to), and GET_VRING_BASE reports the next avail index. The pair works
// again once a ring is started with no ring of the pair running.

// armFaults makes a memory fault on the calling goroutine panic instead of
// killing the process. The workers call it on every poll: it sets a flag
// of the goroutine.
func armFaults() { debug.SetPanicOnFault(true) }

// catchFault is deferred by every ring-side method that touches guest
// memory, and by the control plane's settle: a fault in the pair's guest
// memory marks the pair faulted and breaks its rings at once (the worker
// may sleep next, with the kick that woke it consumed).
func (p *pair) catchFault() {
	if v := recover(); v != nil {
		p.guestFault(v)
		p.breakFaulted()
	}
}

// guestFault marks the pair faulted if v is a memory fault in the guest
// memory or dirty log of one of its rings, and panics with v otherwise.
func (p *pair) guestFault(v any) {
	re, ok := v.(runtime.Error)
	if !ok {
		panic(v)
	}
	fa, ok := re.(interface{ Addr() uintptr })
	if !ok {
		panic(v)
	}
	for i := range p.rings {
		if q := p.rings[i].q; q != nil && q.HostContains(fa.Addr()) {
			p.faulted = true
			return
		}
	}
	panic(v)
}

// breakFaulted is the ring side's poll of a faulted pair: its running
// rings are broken, once each (breakRing counts and signals the error
// eventfd), and nothing else is done. Ring side, or the control plane
// with the workers paused.
func (p *pair) breakFaulted() {
	broke := false
	for role := range p.rings {
		if rs := &p.rings[role]; rs.running && !rs.broken {
			p.breakRing(role)
			broke = true
		}
	}
	if broke {
		p.c.add(cGuestFaults, 1)
		p.c.publish()
	}
}

// settleGuarded settles the pair (control plane, workers paused) unless a
// fault in guest memory stops it; a faulted pair's chains in flight are
// dropped instead, none of them can be returned.
func (p *pair) settleGuarded() {
	if !p.faulted {
		p.trySettle()
	}
	if p.faulted {
		p.tx.reset(p.tx.q, p.tx.maxFrame)
		p.rx.reset(p.rx.q, p.rx.mrg, p.rx.maxFrame)
	}
}

// trySettle is settle with a fault in guest memory caught.
func (p *pair) trySettle() {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer p.catchFault()
	p.settle()
}

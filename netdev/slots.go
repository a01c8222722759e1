package netdev

import (
	"github.com/vhostd/vhostd/ptrring"
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// slotSet is what both paths keep of one ring's chains: a slot for each
// chain in flight, filled in pop order, and the ring side's means to return
// them to the guest in that order (doc.go, the ring-state invariant). It
// holds fields only: the paths use them directly, so the embedding costs
// the frame path nothing.
type slotSet[S any] struct {
	q        virtqueue.Ring
	chains   []virtqueue.Chain
	slots    []S
	next     int // next slot to fill
	inflight int // popped, not yet returned to the guest
	// done carries the slots the TAP side has finished, in order; the
	// ring side takes them into cbatch and writes them out through used.
	done   *ptrring.Ring[S]
	cbatch []*S
	used   []virtqueue.Used
}

// chainSlot is the part every slot has: the chain popped into it and the
// iovecs its path builds over the chain's buffers.
type chainSlot struct {
	chain *virtqueue.Chain
	iov   []unix.Iovec
}

func (c *chainSlot) bind(ch *virtqueue.Chain, iov []unix.Iovec) { c.chain, c.iov = ch, iov }

// newSlotSet allocates a ring's slots, slot i bound to chain i and to its
// iovec slice (slotIovecs).
func newSlotSet[S any, P interface {
	*S
	bind(*virtqueue.Chain, []unix.Iovec)
}]() slotSet[S] {
	ss := slotSet[S]{
		chains: virtqueue.NewChains(slotCount, maxSegs),
		slots:  make([]S, slotCount),
		done:   newHandoff[S](),
		cbatch: make([]*S, slotCount),
		used:   make([]virtqueue.Used, slotCount),
	}
	iovs := slotIovecs()
	for i := range ss.slots {
		P(&ss.slots[i]).bind(&ss.chains[i], iovs[i])
	}
	return ss
}

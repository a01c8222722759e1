package netdev

import (
	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/ptrring"
	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// Sizes of the per-ring machinery, fixed at ring start: nothing on the
// frame path allocates afterwards.
const (
	// slotCount is the number of chains a ring keeps in flight. A power of
	// two (ptrring) and at most the largest ring we accept.
	slotCount = 256
	// handoffSize is the capacity of the ptrrings between the ring side
	// and the TAP side. A ptrring's consumer gives slots back to the
	// producer in groups of up to a quarter of its capacity, so a ring can
	// refuse an item while it holds fewer than its capacity. At most
	// slotCount chains are in flight, so with twice that capacity a
	// hand-off always has room: no chain popped is ever left outside the
	// rings (the ring-state invariant, doc.go). The constant below stops
	// the build if the sizes ever break that bound.
	handoffSize = 2 * slotCount
	// budget is the most chains (TX) or frames (RX) one poll moves per
	// ring: a flooding guest cannot starve the other rings (BAD-INPUTS 42).
	budget = 64
	// maxSegs is the most iovecs one chain may have; a chain with more is
	// dropped (virtqueue.ErrTooManySegments).
	maxSegs = 64
	// maxGSOFrame is the largest frame with a segmentation offload: 64 KiB
	// of IP plus an Ethernet header and a VLAN tag (include/linux/virtio_net.h
	// limits GSO frames the same way).
	maxGSOFrame = 65535 + 14 + 4
	// frameOverhead is the Ethernet header and one VLAN tag beyond the MTU.
	frameOverhead = 14 + 4
	// smallFrame is the largest frame copied out of guest memory, behind
	// its header, so that it goes to the TAP in one write(2): the kernel's
	// writev of two or more buffers cost more than copying a frame of this
	// size does (full perf runs before and after: tx-64-go 1.81 -> 2.10
	// Mpps, tx-1518-go 1.62 -> 1.95; perf/FINDINGS.md). It covers a
	// 1500-byte MTU frame with a VLAN tag; larger (GSO, jumbo) frames go
	// out zero-copy, straight from guest memory. The cost is memory: about
	// 400 KB of slot buffers per TX ring.
	smallFrame = 1536
)

// A hand-off ring holds every chain in flight plus the slots its consumer
// may hold back (ptrring releases at most Cap/4 at a time).
const _ = uint(handoffSize - slotCount - handoffSize/4)

// Drop reasons a TX slot can carry.
const (
	txOK = iota
	txMalformed
	txOversize
	txRefused // an offload the guest did not negotiate
)

// txSlot is one guest TX chain on its way to the TAP.
type txSlot struct {
	// chainSlot's iov is the header copy, then the frame, straight from
	// guest memory; or, for a small frame, buf alone.
	chainSlot
	// buf holds the header, copied once out of guest memory, and behind
	// it a copy of a frame of at most smallFrame bytes.
	buf   [tap.VnetHdrLen + smallFrame]byte
	drop  uint8
	bytes uint32 // frame bytes without the header
	// fate and cause say what became of a frame toTAP wrote, for the
	// capture: capOK, or the counter of its drop and why (capture.go).
	fate, cause uint8
}

// txPath moves one transmit ring's chains to a TAP queue.
//
//	ring side: PopBatch -> validate, copy header, build iovecs -> toTap
//	TAP side:  toTap -> write each frame (tapwrite.go) -> done
//	ring side: done -> used ring (len 0) -> call, if the guest asked
//
// Both sides run on the pair's worker, one after the other in each poll;
// the ptrrings are the hand-off between them (doc.go).
type txPath struct {
	slotSet[txSlot]
	toTap    *ptrring.Ring[txSlot]
	batch    []*txSlot // TAP side: the slots toTAP took from toTap
	pbatch   []*txSlot // ring side: the slots pop hands to toTap
	frames   [][]unix.Iovec
	frameOf  []int
	errs     []unix.Errno // per frame of frames (writeFrames)
	maxFrame uint32
	// offloads are the header requests the guest may make: offloadBits of
	// what it acked (txOffloads). Zero allows only plain frames.
	offloads uint16
	capture  capHook
	one      [1][]byte // captureTX's view of a small frame
}

func newTxPath() *txPath {
	return &txPath{
		slotSet: newSlotSet[txSlot](),
		toTap:   newHandoff[txSlot](),
		batch:   make([]*txSlot, slotCount),
		pbatch:  make([]*txSlot, slotCount),
		frames:  make([][]unix.Iovec, 0, slotCount),
		frameOf: make([]int, 0, slotCount),
		errs:    make([]unix.Errno, slotCount),
	}
}

// slotIovecs returns slotCount empty iovec slices backed by one
// allocation, each with room for a chain's maxSegs iovecs plus one: the
// header copy (TX) or the overflow buffer (RX).
func slotIovecs() [][]unix.Iovec {
	const per = maxSegs + 1
	iovs := make([]unix.Iovec, slotCount*per)
	s := make([][]unix.Iovec, slotCount)
	for i := range s {
		s[i] = iovs[i*per : i*per : (i+1)*per]
	}
	return s
}

// popRoom clamps a pop of max chains to the slots free (inflight of
// slotCount are taken) and to the slots left after next, so that no
// PopBatch wraps around the slot array.
func popRoom(max, inflight, next int) int {
	return min(max, slotCount-inflight, slotCount-next)
}

// newHandoff returns a hand-off ring of handoffSize entries. The size is
// a constant power of two, so New cannot fail unless the code is wrong.
func newHandoff[T any]() *ptrring.Ring[T] {
	r, err := ptrring.New[T](handoffSize)
	if err != nil {
		panic(err)
	}
	return r
}

// pop takes up to max chains from the ring, prepares them and hands them to
// the TAP side through toTap (ring side, batch pbatch). It returns how many
// it handed on, malformed ones included, and the queue's error, if the
// guest broke it.
func (t *txPath) pop(max int, c *counters) (int, error) {
	max = popRoom(max, t.inflight, t.next)
	if max <= 0 {
		return 0, nil
	}
	n, err := t.q.PopBatch(t.chains[t.next : t.next+max])
	for i := 0; i < n; i++ {
		s := &t.slots[t.next+i]
		t.prepare(s, c)
		t.pbatch[i] = s
	}
	if n > 0 {
		// The hand-off has room (handoffSize); were it ever short, the
		// chains it did not take go back to the ring, the newest popped.
		if k := t.toTap.ProduceBatch(t.pbatch[:n]); k < n {
			t.q.Unpop(n - k)
			n = k
		}
		t.next = (t.next + n) % slotCount
		t.inflight += n
	}
	return n, err
}

// prepare validates a chain and builds its frame (BAD-INPUTS 35-39): the
// header is gathered once into the slot, checked, and only the copy is
// written to the TAP.
func (t *txPath) prepare(s *txSlot, c *counters) {
	ch := s.chain
	s.iov = s.iov[:0]
	s.drop, s.fate = txOK, capOK
	if ch.CheckTX() != nil || ch.OutLen <= tap.VnetHdrLen {
		s.drop = txMalformed
		c.add(cTxMalformed, 1)
		return
	}
	frameLen := ch.OutLen - tap.VnetHdrLen
	if frameLen > t.maxFrame {
		s.drop = txOversize
		c.add(cTxOversize, 1)
		return
	}
	// Gather the header, which may be split over several descriptors
	// (BAD-INPUTS 36).
	got := 0
	seg, off := 0, 0
	hdr := s.buf[:tap.VnetHdrLen]
	for got < tap.VnetHdrLen {
		b := ch.Out[seg]
		n := copy(hdr[got:], b)
		got += n
		if n < len(b) {
			off = n
			break
		}
		seg++
	}
	var h tap.VnetHdr
	h.Unmarshal((*[tap.VnetHdrLen]byte)(hdr))
	if h.Validate(int(frameLen)) != nil {
		s.drop = txMalformed
		c.add(cTxMalformed, 1)
		return
	}
	if offloadBits(&h)&^t.offloads != 0 {
		// An offload the guest never negotiated (BAD-INPUTS 65).
		s.drop = txRefused
		c.add(cTxOffloadRefused, 1)
		return
	}
	// num_buffers means nothing device-bound; the TAP ignores it.
	hdr[10], hdr[11] = 0, 0
	s.bytes = frameLen
	if frameLen <= smallFrame {
		n := tap.VnetHdrLen
		for ; seg < len(ch.Out); seg++ {
			n += copy(s.buf[n:], ch.Out[seg][off:])
			off = 0
		}
		s.iov = append(s.iov, rawio.Iovec(s.buf[:n]))
		return
	}
	s.iov = append(s.iov, rawio.Iovec(hdr))
	for ; seg < len(ch.Out); seg++ {
		b := ch.Out[seg][off:]
		off = 0
		if len(b) > 0 {
			s.iov = append(s.iov, rawio.Iovec(b))
		}
	}
}

// toTAP writes the frames the ring side prepared (TAP side): it takes one
// batch from toTap into t.batch, writes the good frames, and hands every
// slot of the batch on to done. When enabled is false the ring is "started
// but disabled": frames are consumed and discarded (vhost-user.rst, Ring
// states). When q is nil the TAP is gone and frames are dropped
// (BAD-INPUTS 51). It returns how many slots it took, dropped ones
// included, and whether the TAP went away.
func (t *txPath) toTAP(q *tap.Queue, enabled bool, c *counters) (n int, gone bool) {
	n = t.toTap.ConsumeBatch(t.batch)
	if n == 0 {
		return 0, false
	}
	t.frames, t.frameOf = t.frames[:0], t.frameOf[:0]
	for i := 0; i < n; i++ {
		s := t.batch[i]
		if s.drop != txOK {
			continue
		}
		if !enabled {
			c.add(cTxDiscarded, 1)
			continue
		}
		if q == nil {
			c.add(cTxDroppedTap, 1)
			continue
		}
		t.frames = append(t.frames, s.iov)
		t.frameOf = append(t.frameOf, i)
	}
	if len(t.frames) > 0 {
		gone = t.writeFrames(q, c)
	}
	t.captureTX(n, enabled, q == nil, c)
	handOn(t.done, t.batch[:n])
	return n, gone
}

// complete returns finished chains to the guest (length 0: the device
// wrote nothing); it reports how many and whether the guest wants a call.
func (t *txPath) complete() (n int, notify bool) {
	n = t.done.ConsumeBatch(t.cbatch)
	if n == 0 {
		return 0, false
	}
	for i := 0; i < n; i++ {
		t.used[i] = virtqueue.Used{Head: t.cbatch[i].chain.Head}
	}
	t.q.PushBatch(t.used[:n])
	t.inflight -= n
	return n, t.q.NeedsNotify()
}

// errHandoff is the panic of a hand-off refused: with handoffSize rings it
// cannot happen, and a refusal would lose chains the guest must get back
// in order, so it is a broken invariant, not a condition to handle.
const errHandoff = "netdev: hand-off ring refused a finished chain (ring-state invariant)"

// handOn passes finished slots to the ring side.
func handOn[T any](r *ptrring.Ring[T], s []*T) {
	if r.ProduceBatch(s) != len(s) {
		panic(errHandoff)
	}
}

// Offload request bits of a TX header (offloadBits): bit g-1 for gso_type
// g without the ECN flag (Validate admits 0, 1, 3, 4 and 5 only; 0, none,
// has no bit), then NEEDS_CSUM and the ECN flag.
const (
	offNeedsCsum = 1 << 6
	offECN       = 1 << 7
)

func offGSO(gso uint8) uint16 { return 1 << (gso & 7) >> 1 }

// offloadBits maps a validated TX header to the offload requests it makes:
// one bit per request, so that one mask test tells whether the guest
// negotiated all of them.
func offloadBits(h *tap.VnetHdr) uint16 {
	return offGSO(h.GSOType) | uint16(h.Flags&tap.VirtioNetHdrFNeedsCsum)<<6 | uint16(h.GSOType>>7)<<7
}

// txOffloads is the mask of TX header requests allowed by the features
// the guest acked: checksum offload with CSUM, each segmentation type with
// its HOST_ feature, the ECN flag with HOST_ECN. Anything else in a TX
// header was never negotiated; the TAP would act on it all the same.
func txOffloads(acked uint64) uint16 {
	var m uint16
	for _, o := range [...]struct {
		feature uint
		bits    uint16
	}{
		{FCsum, offNeedsCsum},
		{FHostTSO4, offGSO(tap.VirtioNetHdrGSOTCPv4)},
		{FHostTSO6, offGSO(tap.VirtioNetHdrGSOTCPv6)},
		{FHostUFO, offGSO(tap.VirtioNetHdrGSOUDP)},
		{FHostUSO, offGSO(tap.VirtioNetHdrGSOUDPL4)},
		{FHostECN, offECN},
	} {
		if acked&bit(o.feature) != 0 {
			m |= o.bits
		}
	}
	return m
}

// reset empties the path for a new ring; nothing may be in flight but
// what a faulted pair drops.
func (t *txPath) reset(q virtqueue.Ring, maxFrame uint32) {
	t.q, t.next, t.inflight, t.maxFrame = q, 0, 0, maxFrame
	// Empty unless the pair faulted with chains in flight (fault.go).
	for t.toTap.Consume() != nil {
	}
	for t.done.Consume() != nil {
	}
}

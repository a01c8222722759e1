package netdev

// The guest and host sides of the ring model (model_test.go): what the
// guest posts and reaps, and checks on every used entry; what the host
// sends into the TAP and reads from it.

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
	"golang.org/x/sys/unix"
)

// Frames carry their sequence number and length, and a pattern derived
// from both, so that any frame can be checked byte for byte.
func modelFrame(seq uint32, n int) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(seq*7) + byte(i)
	}
	f[0] = frameMarker
	binary.LittleEndian.PutUint32(f[1:], seq)
	binary.LittleEndian.PutUint32(f[5:], uint32(n))
	return f
}

func checkFrame(f []byte) (seq uint32, err error) {
	if len(f) < 9 || f[0] != frameMarker {
		return 0, fmt.Errorf("not a model frame (%d bytes)", len(f))
	}
	seq = binary.LittleEndian.Uint32(f[1:])
	if n := binary.LittleEndian.Uint32(f[5:]); n != uint32(len(f)) {
		return seq, fmt.Errorf("frame %d: %d bytes, it says %d", seq, len(f), n)
	}
	if !bytes.Equal(f, modelFrame(seq, len(f))) {
		return seq, fmt.Errorf("frame %d: content corrupted", seq)
	}
	return seq, nil
}

// guestRing is the guest's side of one ring and what the model knows of it.
type guestRing struct {
	role       int
	drv        modelDriver
	startBase  uint32 // the base the ring last started with
	kick, call int
	heads      []uint16 // head posted at each avail position (mod 65536)
	seqs       []int64  // TX: frame at each avail position; -1 malformed or oversize
	reaped     uint16   // used entries the guest has read
	armed      bool
	armIdx     uint16 // used index the guest had seen when it armed
	irq        bool   // a call arrived since it armed
	running    bool
	enabled    bool
	broken     bool   // the guest posted a chain that breaks the ring
	badPos     uint16 // its avail position
}

// postRX posts up to n receive chains, as many as the ring has room for.
func (m *model) postRX(n int) {
	g := m.rings[rxRing]
	for i := 0; i < n && g.drv.FreeDescs() >= 2; i++ {
		var in []int
		var out [][]byte
		switch r := m.rnd.IntN(40); {
		case r == 0:
			out = [][]byte{{1, 2, 3}} // a readable descriptor: malformed (BAD-INPUTS 35, 41)
			in = []int{1600}
		case m.cfg.mrg:
			in = []int{[]int{64, 600, 1536, 2048}[r%4]}
		case r < 4:
			in = []int{512} // too short for a full frame: truncation
		default:
			in = []int{modelHdr + 1514}
		}
		pos := g.drv.AvailIdx()
		g.heads[pos] = m.addChain(g, out, in)
	}
	m.publish(g)
}

// postTX posts up to n frames, some malformed or oversized.
func (m *model) postTX(n int) {
	g := m.rings[txRing]
	for i := 0; i < n && g.drv.FreeDescs() >= 3; i++ {
		pos := g.drv.AvailIdx()
		size := []int{60, 200, 1000, 1514}[m.rnd.IntN(4)]
		seq := int64(-1)
		var out [][]byte
		var in []int
		switch r := m.rnd.IntN(40); r {
		case 0:
			out = [][]byte{make([]byte, modelHdr), modelFrame(0, 60)}
			in = []int{64} // writable after readable: malformed
		case 1:
			out = [][]byte{make([]byte, modelHdr), modelFrame(0, 3000)} // over the MTU
		default:
			m.txSeq++
			seq = int64(m.txSeq)
			f := modelFrame(m.txSeq, size)
			if r%2 == 0 {
				out = [][]byte{make([]byte, modelHdr), f}
			} else {
				out = [][]byte{append(make([]byte, modelHdr), f...)}
			}
		}
		g.heads[pos], g.seqs[pos] = m.addChain(g, out, in), seq
	}
	m.publish(g)
}

// addChain posts one chain on g, through an indirect table one time in
// four, and returns its head.
func (m *model) addChain(g *guestRing, out [][]byte, in []int) uint16 {
	add := g.drv.AddChain
	if m.rnd.IntN(4) == 0 {
		add = g.drv.AddChainIndirect
	}
	head, err := add(out, in)
	if err != nil {
		m.t.Fatalf("post on ring %d: %v", g.role, err)
	}
	return head
}

func (m *model) publish(g *guestRing) {
	if g.drv.Publish() {
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		unix.Write(g.kick, one)
	}
}

// hostSend writes up to n frames into the TAP, as many as it takes.
func (m *model) hostSend(n int) {
	for i := 0; i < n; i++ {
		size := []int{60, 200, 1000, 1514, 1514, 3000}[m.rnd.IntN(6)]
		f := append(make([]byte, modelHdr), modelFrame(m.rxSent+1, size)...)
		if _, err := unix.Write(m.peer, f); err != nil {
			if err == unix.EAGAIN {
				return
			}
			m.t.Fatalf("host send: %v", err)
		}
		m.rxSent++
	}
}

// flood is traffic both ways at full rate for n rounds: the host sends
// what the TAP takes and reads what it wrote, the guest transmits and
// refills, the worker polls.
func (m *model) flood(n int) {
	for i := 0; i < n; i++ {
		m.hostSend(16)
		m.postTX(16)
		m.poll()
		m.poll()
		m.hostDrain()
		if i%4 == 3 {
			m.reap(rxRing)
			m.postRX(int(m.cfg.size))
			m.reap(txRing)
		}
	}
}

// hostDrain reads every frame the backend wrote to the TAP.
func (m *model) hostDrain() {
	b := make([]byte, 70000)
	for {
		n, err := unix.Read(m.peer, b)
		if err == unix.EAGAIN {
			return
		}
		if err != nil {
			m.t.Fatalf("host read: %v", err)
		}
		seq, ferr := checkFrame(b[modelHdr:n])
		if ferr != nil {
			m.fail("TAP got a bad frame: %v", ferr)
			continue
		}
		if m.txSeen[seq] && !m.txResend[seq] {
			m.fail("TX frame %d written to the TAP twice", seq)
		}
		m.txSeen[seq] = true
	}
}

// checkInterrupts: a guest that armed its interrupt and has used entries it
// has not seen must have been called.
func (m *model) checkInterrupts(when string) {
	for _, g := range m.rings {
		if v := drain(g.call); v != 0 {
			g.irq = true
		}
		if g.armed && g.drv.UsedIdx() != g.armIdx && !g.irq {
			m.fail("%s: ring %d has used entries %d..%d the guest asked to hear of, and no call", when, g.role, g.armIdx, g.drv.UsedIdx())
		}
	}
}

// reap is the guest's interrupt handler or NAPI poll: read the used ring
// until empty, then re-arm (and read again if more arrived meanwhile).
func (m *model) reap(role int) {
	g := m.rings[role]
	drain(g.call)
	for {
		for m.reapOne(g) {
		}
		if !g.drv.EnableInterrupts() {
			break
		}
	}
	g.armed, g.armIdx, g.irq = true, g.reaped, false
}

// reapOne takes one used entry (RX: one frame's entries) and checks it.
func (m *model) reapOne(g *guestRing) bool {
	c, ok := m.used(g)
	if !ok {
		return false
	}
	if g.role == txRing {
		if c.Len != 0 {
			m.fail("TX head %d returned with length %d", c.Head, c.Len)
		}
		m.life.txCompleted++
		if seq := g.seqs[g.reaped-1]; seq >= 0 {
			m.txExpected[uint32(seq)] = true
		}
		return true
	}
	if c.Len == 0 {
		return true // dropped: a malformed chain, or a frame that did not fit
	}
	data := c.Written
	if len(data) < modelHdr {
		m.fail("RX head %d: %d bytes, shorter than the header", c.Head, len(data))
		return true
	}
	nb := binary.LittleEndian.Uint16(data[10:])
	if m.cfg.mrg {
		for i := 1; i < int(nb); i++ {
			p, ok := m.used(g)
			if !ok {
				m.fail("RX frame in %d buffers, only %d published", nb, i)
				return false
			}
			data = append(data, p.Written...)
		}
	} else if nb != 1 {
		m.fail("RX num_buffers %d without MRG_RXBUF", nb)
	}
	seq, err := checkFrame(data[modelHdr:])
	if err != nil {
		m.fail("RX head %d: %v", c.Head, err)
		return true
	}
	if m.rxAnySeen && seq <= m.rxNextSeen {
		m.fail("RX frame %d delivered after frame %d", seq, m.rxNextSeen)
	}
	m.rxAnySeen, m.rxNextSeen = true, seq
	m.life.rxDelivered++
	return true
}

// used reads the next used entry and checks it is the head posted at that
// position, still outstanding.
func (m *model) used(g *guestRing) (vqdriver.Completion, bool) {
	c, ok := g.drv.Used()
	if !ok {
		return c, false
	}
	pos := g.reaped
	g.reaped++
	if !c.Known {
		m.fail("ring %d used entry %d: head %d was not outstanding (returned twice, or never posted)", g.role, pos, c.Head)
	} else if want := g.heads[pos]; c.Head != want {
		m.fail("ring %d used entry %d: head %d, but the chain popped there was %d (completed out of order)", g.role, pos, c.Head, want)
	}
	return c, true
}

// breakRing posts a chain whose descriptor points past the table: the ring
// breaks when it is popped (BROKEN-Q), and the head, valid itself, must come
// back with length 0 after every chain popped before it.
func (m *model) breakRing(role int) {
	g := m.rings[role]
	sd, split := g.drv.(splitDriver)
	if !split || g.broken || g.drv.FreeDescs() < 1 {
		return // packed rings break in virtqueue's tests (BAD-INPUTS 66-70)
	}
	var head uint16
	var err error
	if role == rxRing {
		head, err = g.drv.AddChain(nil, []int{1600})
	} else {
		head, err = g.drv.AddChain([][]byte{append(make([]byte, modelHdr), modelFrame(0, 100)...)}, nil)
	}
	if err != nil {
		m.t.Fatalf("post a breaking chain: %v", err)
	}
	d := sd.ReadDesc(head)
	d.Flags |= vqdriver.FlagNext
	d.Next = sd.Config().Size + 5
	sd.WriteDesc(head, d)
	pos := g.drv.AvailIdx() - 1
	g.heads[pos], g.seqs[pos] = head, -1
	g.broken, g.badPos = true, pos
	m.breaks++
	m.publish(g)
}

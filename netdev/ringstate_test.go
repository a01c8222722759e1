package netdev

// The ring-state model test. A reference model of both rings of one queue
// pair (the guest's view: what it posted at which avail position, what it
// got back) drives a real Device through random interleavings of guest
// posts and reaps, TAP frames both ways, worker polls and sleeps (inline,
// or the ring and TAP sides of a split pair interleaved), GET_VRING_BASE
// and restart, memory-table changes, enable/disable, and a backend crash
// restarted from the used index as QEMU does. After every step it checks
// the ring-state invariant (doc.go):
//
//   - every used entry is the head the guest posted at that position: chains
//     come back in the order they were popped, each at most once;
//   - a stopped ring reports as its base exactly its used index: nothing
//     popped is left behind, nothing is rewound that was completed;
//   - a guest that armed its interrupt and has used entries it has not seen
//     has been signalled before the worker sleeps or the ring stops;
//   - frames cross intact, in order, at most once (TX: again only for chains
//     in flight at a crash), and every TX chain is written or counted as
//     dropped, never both, never neither.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/virtqueue"
	"github.com/vhostd/vhostd/virtqueue/vqdriver"
	"golang.org/x/sys/unix"
)

type modelConfig struct {
	size     uint16
	threads  Threads
	mrg      bool
	eventIdx bool
}

func (c modelConfig) String() string {
	return fmt.Sprintf("size=%d/%v/mrg=%v/event_idx=%v", c.size, c.threads, c.mrg, c.eventIdx)
}

func modelConfigs() []modelConfig {
	var cs []modelConfig
	for _, size := range []uint16{256, 1024} {
		for _, th := range []Threads{Inline, Split} {
			for _, mrg := range []bool{false, true} {
				for _, ev := range []bool{false, true} {
					cs = append(cs, modelConfig{size, th, mrg, ev})
				}
			}
		}
	}
	return cs
}

// manualRunner stands in for the busypoll workers: the model calls the
// pair's poll and arm functions itself, so Pause is already a safe point.
type manualRunner struct{}

func (manualRunner) Pause()  {}
func (manualRunner) Resume() {}
func (manualRunner) Wake()   {}
func (manualRunner) Stop()   {}

// keptHost is a fake host that outlives the devices built over it (a
// crashed backend's TAP queues are the next one's).
type keptHost struct{ *fakeHost }

func (keptHost) Close() error { return nil }

const (
	modelSlab   = 4096
	modelHdr    = tap.VnetHdrLen
	frameMarker = 0x5a
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
	drv        *vqdriver.Driver
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

// life is one backend process: a Device from start to crash (or the end).
type life struct {
	dev         *Device
	p           *pair
	rxDelivered uint64 // frames the guest received whole from this life
	txCompleted uint64 // TX used entries of this life the guest read
}

type model struct {
	t      testing.TB
	cfg    modelConfig
	fail   func(format string, args ...any)
	host   *fakeHost
	peer   int
	buf    []byte
	region *virtqueue.Region
	rings  [2]*guestRing
	life   *life
	lives  []*life

	// RX frames the host sent, and what the guest saw of them.
	rxSent     uint32
	rxNextSeen uint32 // delivered frames have strictly increasing seqs
	rxAnySeen  bool
	rxLost     uint64 // frames read by a crashed backend, never completed
	// TX frames the guest posted, and what the host saw of them.
	txSeq      uint32
	txSeen     map[uint32]bool
	txResend   map[uint32]bool // in flight at a crash: may be sent again
	txProcLost uint64          // chains a crashed backend counted and never completed
	txExpected map[uint32]bool // good frames whose chains came back

	stops, memChanges, breaks int
	logUsed                   bool // rings start with used-ring logging (dirtylog_test.go)

	in  []byte // the step sequence
	pos int
	rnd *rand.Rand
}

func (m *model) next() byte {
	if m.pos >= len(m.in) {
		return 0
	}
	b := m.in[m.pos]
	m.pos++
	return b
}

func newModel(t testing.TB, cfg modelConfig, fail func(string, ...any)) *model {
	m := &model{t: t, cfg: cfg, fail: fail, txSeen: map[uint32]bool{}, txResend: map[uint32]bool{}, txExpected: map[uint32]bool{}}
	m.host = newFakeHost(t, 1)
	m.peer = m.host.peers[0]
	rxc := vqdriver.Layout(cfg.size, testBase, modelSlab)
	txc := vqdriver.Layout(cfg.size, rxc.End(), modelSlab)
	rxc.EventIdx, txc.EventIdx = cfg.eventIdx, cfg.eventIdx
	m.buf = make([]byte, txc.End()-testBase+4096)
	var err error
	m.region, err = virtqueue.NewRegionFromBytes(virtqueue.RegionSpec{GPA: testBase, Size: uint64(len(m.buf)), UserAddr: 0x7f0000000000}, m.buf)
	if err != nil {
		t.Fatal(err)
	}
	for role, c := range []vqdriver.Config{rxc, txc} {
		drv, err := vqdriver.New(m.buf, testBase, c)
		if err != nil {
			t.Fatal(err)
		}
		g := &guestRing{role: role, drv: drv, heads: make([]uint16, 65536), seqs: make([]int64, 65536), enabled: true}
		for _, fd := range []*int{&g.kick, &g.call} {
			*fd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			fd := *fd
			t.Cleanup(func() { unix.Close(fd) })
		}
		g.armed = true // a driver starts with interrupts on
		m.rings[role] = g
	}
	m.newLife(0, 0)
	return m
}

func (m *model) features() uint64 {
	f := bit(FVersion1) | bit(FIndirectDesc)
	if m.cfg.mrg {
		f |= bit(FMrgRxbuf)
	}
	if m.cfg.eventIdx {
		f |= bit(FEventIdx)
	}
	return f
}

func (m *model) memory() *virtqueue.Memory {
	mem, err := virtqueue.NewMemory([]*virtqueue.Region{m.region})
	if err != nil {
		m.t.Fatal(err)
	}
	return mem
}

// newLife starts a backend and both rings at the given bases.
func (m *model) newLife(rxBase, txBase uint16) {
	dev, err := newDevice(Config{QueuePairs: 1, TAP: "fake", Threads: m.cfg.threads}, hclog.NewNullLogger(), keptHost{m.host})
	if err != nil {
		m.t.Fatal(err)
	}
	dev.probe = func(*tap.Queue) unix.Errno { return 0 }
	dev.probeEvery = time.Hour
	m.t.Cleanup(func() { dev.Close() })
	if err := dev.SetFeatures(m.features()); err != nil {
		m.t.Fatal(err)
	}
	dev.SetMemory(m.memory())
	p := dev.pairs[0]
	p.w = manualRunner{}
	m.life = &life{dev: dev, p: p}
	m.lives = append(m.lives, m.life)
	m.startRing(rxRing, rxBase)
	m.startRing(txRing, txBase)
}

func (m *model) startRing(role int, base uint16) {
	g := m.rings[role]
	c := g.drv.Config()
	err := m.life.dev.StartRing(vhost.RingSpec{
		Index: role, Size: c.Size, Desc: c.Desc, Avail: c.Avail, Used: c.Used, Base: base,
		EventIdx: m.cfg.eventIdx, Indirect: true, Kick: g.kick, Call: g.call, Err: -1, Enabled: g.enabled,
		LogUsed: m.logUsed, LogAddr: c.Used,
	})
	if err != nil {
		m.t.Fatal(err)
	}
	g.running = true
}

// run plays the step sequence, then brings everything to rest and checks
// the totals.
func (m *model) run(steps []byte) {
	m.in, m.pos = steps, 0
	m.rnd = newModelRand(uint64(len(steps)))
	for m.pos < len(m.in) {
		m.step(m.next())
	}
	m.finish()
}

func newModelRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

func (m *model) step(op byte) {
	switch op % 26 {
	case 0, 1:
		m.postRX(int(m.next()%64) + 1)
	case 2:
		m.postRX(int(m.cfg.size)) // fill the ring
	case 3, 4:
		m.postTX(int(m.next()%64) + 1)
	case 5, 6, 7:
		m.hostSend(int(m.next()%16) + 1)
	case 8:
		m.hostDrain()
	case 9, 10, 11, 12, 13, 14:
		m.poll(m.next())
	case 15, 16:
		m.sleep(m.next())
	case 17:
		// Linux's NAPI poll: take the frames, refill the ring at once.
		m.reap(rxRing)
		if m.next()%4 != 0 {
			m.postRX(int(m.cfg.size))
		}
	case 18:
		m.reap(txRing)
	case 19:
		if m.next()%4 == 0 {
			m.stopStart(int(m.next() % 2))
		} else {
			m.flood(int(m.next()%32) + 1)
		}
	case 20:
		if m.next()%4 == 0 {
			m.memChanges++
			m.life.dev.SetMemory(m.memory())
		} else {
			m.flood(int(m.next()%32) + 1)
		}
	case 21:
		role := int(m.next() % 2)
		g := m.rings[role]
		if g.enabled && m.next()%4 != 0 {
			return // mostly leave rings enabled
		}
		g.enabled = !g.enabled
		m.life.dev.EnableRing(role, g.enabled)
	case 22:
		if m.next()%16 == 0 {
			m.crash()
		}
	case 23:
		m.reap(rxRing)
		m.reap(txRing)
		m.repair(false)
	case 24, 25:
		if m.next()%16 == 0 {
			m.breakRing(int(op % 2))
		} else {
			m.poll(op)
		}
	}
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
		var head uint16
		var err error
		if m.rnd.IntN(4) == 0 {
			head, err = g.drv.AddChainIndirect(out, in)
		} else {
			head, err = g.drv.AddChain(out, in)
		}
		if err != nil {
			m.t.Fatalf("post RX: %v", err)
		}
		g.heads[g.drv.AvailIdx()-1] = head
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
		var head uint16
		var err error
		if m.rnd.IntN(4) == 0 {
			head, err = g.drv.AddChainIndirect(out, in)
		} else {
			head, err = g.drv.AddChain(out, in)
		}
		if err != nil {
			m.t.Fatalf("post TX: %v", err)
		}
		g.heads[pos], g.seqs[pos] = head, seq
	}
	m.publish(g)
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
		m.poll(byte(i))
		m.poll(byte(i + 1))
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

// poll runs one poll of the worker, or in split mode of one side.
func (m *model) poll(arg byte) {
	p := m.life.p
	if m.cfg.threads == Inline {
		p.Poll(budget)
		return
	}
	if arg%2 == 0 {
		p.ringPop(budget)
		p.ringComplete()
	} else {
		p.tapStep(budget)
		p.ct.publish()
	}
}

// sleep is a worker's attempt to sleep: arm, and if nothing is pending the
// worker would sleep now, so the interrupts the guest asked for must have
// been sent. A wake-up then disarms.
func (m *model) sleep(arg byte) {
	p := m.life.p
	var pending bool
	switch {
	case m.cfg.threads == Inline:
		pending = p.Arm()
	case arg%2 == 0:
		pending = p.ringArm()
	default:
		p.tapArm()
		return
	}
	if !pending {
		m.checkInterrupts("worker sleeps")
	}
	p.Disarm()
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
	if g.broken || g.drv.FreeDescs() < 1 {
		return
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
	d := g.drv.ReadDesc(head)
	d.Flags |= vqdriver.FlagNext
	d.Next = g.drv.Config().Size + 5
	g.drv.WriteDesc(head, d)
	pos := g.drv.AvailIdx() - 1
	g.heads[pos], g.seqs[pos] = head, -1
	g.broken, g.badPos = true, pos
	m.breaks++
	m.publish(g)
}

// repair restarts a ring the guest broke once its faulting head came back
// (the guest resets it; here GET_VRING_BASE and a restart). With strict, a
// broken ring whose head has not come back is a failure: the model has
// let the worker run to rest.
func (m *model) repair(strict bool) {
	for _, g := range m.rings {
		if !g.broken || !m.life.p.rings[g.role].broken {
			continue // not popped yet: the chains before it wait for frames
		}
		if int16(g.reaped-g.badPos) <= 0 {
			if !strict {
				continue
			}
			m.fail("ring %d broke at avail position %d; used entries stop at %d", g.role, g.badPos, g.reaped)
		}
		m.stopStart(g.role)
		g.broken = false
	}
}

// stopStart is GET_VRING_BASE then a restart at the base returned (QMP
// stop/cont): the base must be the ring's used index.
func (m *model) stopStart(role int) {
	g := m.rings[role]
	m.stops++
	base := m.life.dev.StopRing(role)
	g.running = false
	if used := g.drv.UsedIdx(); base != used {
		m.fail("ring %d stopped at base %d, but its used index is %d (posted %d)", role, base, used, g.drv.AvailIdx())
	}
	m.checkInterrupts("ring stopped")
	if role == txRing {
		m.hostDrain()
	}
	if g.broken && int16(base-g.badPos) > 0 {
		g.broken = false // popped and returned: the restarted ring is sound
	}
	m.startRing(role, base)
}

// crash kills the backend without a word and starts a new one from the
// used indexes (QEMU's virtio_queue_restore_last_avail_idx after a
// reconnect).
func (m *model) crash() {
	m.reap(rxRing)
	m.reap(txRing)
	m.hostDrain()
	l := m.life
	c := l.p.c.local
	ct := l.p.ct.local
	read := ct[cRxPackets]
	if read < l.rxDelivered {
		m.fail("crashed backend: %d frames delivered, only %d read", l.rxDelivered, read)
	}
	m.rxLost += read - l.rxDelivered
	proc := txProcessed(c, ct)
	if proc < l.txCompleted {
		m.fail("crashed backend: %d TX chains completed, only %d processed", l.txCompleted, proc)
	}
	m.txProcLost += proc - l.txCompleted
	// TX chains in flight may reach the TAP again.
	tx := m.rings[txRing]
	for pos := tx.reaped; pos != tx.drv.AvailIdx(); pos++ {
		if s := tx.seqs[pos]; s >= 0 {
			m.txResend[uint32(s)] = true
		}
	}
	l.dev.Close()
	m.newLife(m.rings[rxRing].drv.UsedIdx(), tx.drv.UsedIdx())
}

func txProcessed(c, ct [numCounters]uint64) uint64 {
	return c[cTxMalformed] + c[cTxOversize] + ct[cTxPackets] + ct[cTxDroppedTapFull] + ct[cTxDroppedTap] + ct[cTxDiscarded]
}

// finish enables both rings and runs guest, host and worker until nothing
// moves, then checks that every TX chain came back and every frame is
// accounted for, and stops both rings.
func (m *model) finish() {
	for _, g := range m.rings {
		if !g.enabled {
			g.enabled = true
			m.life.dev.EnableRing(g.role, true)
		}
	}
	for round := 0; round < 2; round++ {
		m.settleDown()
		m.repair(true)
	}
	m.settleDown()
	m.checkAtRest()
}

// settleDown runs guest, host and worker until nothing moves.
func (m *model) settleDown() {
	for idle := 0; idle < 8; {
		before := [4]uint64{uint64(m.rings[0].reaped), uint64(m.rings[1].reaped), uint64(len(m.txSeen)), m.life.p.ct.local[cRxPackets] + m.life.p.ct.local[cRxTruncated]}
		m.hostDrain()
		m.postRX(64)
		for i := 0; i < 4; i++ {
			m.poll(byte(i))
		}
		m.sleep(0)
		m.sleep(1)
		m.reap(rxRing)
		m.reap(txRing)
		after := [4]uint64{uint64(m.rings[0].reaped), uint64(m.rings[1].reaped), uint64(len(m.txSeen)), m.life.p.ct.local[cRxPackets] + m.life.p.ct.local[cRxTruncated]}
		if before == after {
			idle++
		} else {
			idle = 0
		}
	}
}

// checkAtRest checks that every TX chain came back and every frame is
// accounted for, and stops both rings.
func (m *model) checkAtRest() {
	tx := m.rings[txRing]
	if tx.reaped != tx.drv.AvailIdx() {
		m.fail("at rest: %d TX chains posted, %d returned", tx.drv.AvailIdx(), tx.reaped)
	}
	if readable(m.life.p.tq.Fd()) {
		m.fail("at rest: frames still wait in the TAP although the guest posted buffers")
	}
	for role := range m.rings {
		m.stopStart(role)
	}
	m.reap(rxRing)
	m.reap(txRing)
	m.hostDrain()

	// Totals over every life.
	l := m.life
	c, ct := l.p.c.local, l.p.ct.local
	if proc := txProcessed(c, ct); proc != l.txCompleted {
		m.fail("TX: the last backend processed %d chains and completed %d", proc, l.txCompleted)
	}
	if ct[cRxPackets] != l.rxDelivered {
		m.fail("RX: the last backend read %d frames, the guest received %d", ct[cRxPackets], l.rxDelivered)
	}
	var delivered, truncated uint64
	for _, l := range m.lives {
		delivered += l.rxDelivered
		truncated += l.p.ct.local[cRxTruncated]
	}
	if got := delivered + truncated + m.rxLost; got != uint64(m.rxSent) {
		m.fail("RX: host sent %d frames; delivered %d + truncated %d + lost in crashes %d = %d", m.rxSent, delivered, truncated, m.rxLost, got)
	}
	// Every good TX frame whose chain came back reached the TAP or was
	// counted as dropped: the frames not seen are at most the drops.
	var dropped uint64
	for _, l := range m.lives {
		ct := l.p.ct.local
		dropped += ct[cTxDroppedTapFull] + ct[cTxDroppedTap] + ct[cTxDiscarded]
	}
	var unseen uint64
	for seq := range m.txExpected {
		if !m.txSeen[seq] {
			unseen++
		}
	}
	if unseen > dropped {
		m.fail("TX: %d frames completed but neither written nor dropped (%d drops counted)", unseen-dropped, dropped)
	}
	for seq := range m.txSeen {
		if !m.txExpected[seq] && !m.txResend[seq] {
			m.fail("TX frame %d reached the TAP but its chain never came back", seq)
		}
	}
}

// modelSteps is a random step sequence of n steps.
func modelSteps(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 2*n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func runModel(t *testing.T, cfg modelConfig, steps []byte) {
	var fails []string
	kinds := map[string]int{}
	fail := func(format string, args ...any) {
		if kinds[format]++; kinds[format] == 1 {
			fails = append(fails, fmt.Sprintf(format, args...))
		}
	}
	m := newModel(t, cfg, fail)
	m.run(steps)
	var delivered uint64
	for _, l := range m.lives {
		delivered += l.rxDelivered
	}
	t.Logf("%v: RX %d frames sent, %d delivered; TX %d frames posted, %d seen; %d stops, %d memory changes, %d rings broken, %d backend lives",
		cfg, m.rxSent, delivered, m.txSeq, len(m.txSeen), m.stops, m.memChanges, m.breaks, len(m.lives))
	if len(fails) > 0 {
		t.Fatalf("%v: ring state broken (%d RX frames sent, TX posted %d, %d lives); the first of each kind, of %d:\n%s", cfg, m.rxSent, m.rings[txRing].drv.AvailIdx(), len(m.lives), total(kinds), joinLines(fails))
	}
}

func total(kinds map[string]int) (n int) {
	for _, k := range kinds {
		n += k
	}
	return n
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for _, l := range s {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// TestRingStateModel runs the model on every configuration with full rings
// and thousands of frames each way.
func TestRingStateModel(t *testing.T) {
	steps := 4000
	if testing.Short() || testutil.Race {
		steps = 1000
	}
	for i, cfg := range modelConfigs() {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			runModel(t, cfg, modelSteps(uint64(i)+1, steps))
		})
	}
}

// FuzzRingStateModel takes the step sequence from the fuzzer; the first
// byte picks the configuration.
func FuzzRingStateModel(f *testing.F) {
	for i := 0; i < 4; i++ {
		f.Add(append([]byte{byte(i * 5)}, modelSteps(uint64(i)+100, 300)...))
	}
	cfgs := modelConfigs()
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 1 || len(in) > 4096 {
			return
		}
		runModel(t, cfgs[int(in[0])%len(cfgs)], in[1:])
	})
}

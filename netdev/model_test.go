package netdev

// The reference model of one queue pair's rings that the ring-state tests
// (ringstate_test.go, lifecycle_test.go, dirtylog_test.go) drive a real
// Device with; what it checks is listed in ringstate_test.go.

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/virtqueue"
	"github.com/vhostd/vhostd/virtqueue/vqdriver"
	"golang.org/x/sys/unix"
)

type modelConfig struct {
	size     uint16
	mrg      bool
	eventIdx bool
	tapWrite TAPWrite
	packed   bool // VIRTIO_F_RING_PACKED
	inOrder  bool // VIRTIO_F_IN_ORDER
}

func (c modelConfig) String() string {
	s := fmt.Sprintf("size=%d/mrg=%v/event_idx=%v/tap_write=%v", c.size, c.mrg, c.eventIdx, c.tapWrite)
	if c.packed {
		s += "/packed"
	}
	if c.inOrder {
		s += "/in_order"
	}
	return s
}

func modelConfigs() []modelConfig {
	var cs []modelConfig
	for _, packed := range []bool{false, true} {
		for _, size := range []uint16{256, 1024} {
			for _, mrg := range []bool{false, true} {
				for _, ev := range []bool{false, true} {
					cs = append(cs, modelConfig{size, mrg, ev, TAPWriteSyscall, packed, mrg && !ev})
				}
			}
		}
	}
	// The io_uring writer behind the same completion mapping (tapwrite.go).
	for _, mrg := range []bool{false, true} {
		cs = append(cs, modelConfig{size: 256, mrg: mrg, eventIdx: true, tapWrite: TAPWriteUring})
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
	rxc.InOrder, txc.InOrder = cfg.inOrder, cfg.inOrder
	m.buf = make([]byte, txc.End()-testBase+4096)
	var err error
	m.region, err = virtqueue.NewRegionFromBytes(virtqueue.RegionSpec{GPA: testBase, Size: uint64(len(m.buf)), UserAddr: 0x7f0000000000}, m.buf)
	if err != nil {
		t.Fatal(err)
	}
	for role, c := range []vqdriver.Config{rxc, txc} {
		drv, err := m.newDriver(c)
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
	m.newLife(m.rings[rxRing].drv.Base(), m.rings[txRing].drv.Base())
	return m
}

// newDriver is a guest driver of the configured layout placed where c
// places a split ring (a packed ring of the same size takes less room).
func (m *model) newDriver(c vqdriver.Config) (modelDriver, error) {
	if !m.cfg.packed {
		d, err := vqdriver.New(m.buf, testBase, c)
		return splitDriver{d}, err
	}
	pc := vqdriver.PackedLayout(c.Size, c.Desc, c.Slab)
	pc.EventIdx = c.EventIdx
	d, err := vqdriver.NewPacked(m.buf, testBase, pc)
	return &packedDriver{PackedDriver: d}, err
}

func (m *model) features() uint64 {
	f := bit(FVersion1) | bit(FIndirectDesc)
	if m.cfg.packed {
		f |= bit(FRingPacked)
	}
	if m.cfg.inOrder {
		f |= bit(FInOrder)
	}
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
func (m *model) newLife(rxBase, txBase uint32) {
	dev, err := newDevice(Config{QueuePairs: 1, TAP: "fake", TAPWrite: m.cfg.tapWrite}, hclog.NewNullLogger(), keptHost{m.host})
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

func (m *model) startRing(role int, base uint32) {
	g := m.rings[role]
	size, desc, avail, used := g.drv.area()
	err := m.life.dev.StartRing(vhost.RingSpec{
		Index: role, Size: size, Desc: desc, Avail: avail, Used: used, Base: base, Packed: m.cfg.packed,
		EventIdx: m.cfg.eventIdx, Indirect: true, Kick: g.kick, Call: g.call, Err: -1, Enabled: g.enabled,
		LogUsed: m.logUsed, LogAddr: used,
	})
	if err != nil {
		m.t.Fatal(err)
	}
	g.running, g.startBase = true, base
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
		m.poll()
	case 15, 16:
		m.sleep()
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
			m.poll()
		}
	}
}

// poll runs one poll of the worker.
func (m *model) poll() { m.life.p.Poll(budget) }

// sleep is a worker's attempt to sleep: arm, and if nothing is pending the
// worker would sleep now, so the interrupts the guest asked for must have
// been sent. A wake-up then disarms.
func (m *model) sleep() {
	p := m.life.p
	if !p.Arm() {
		m.checkInterrupts("worker sleeps")
	}
	p.Disarm()
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
	if want := g.drv.Base(); base != want {
		m.fail("ring %d stopped at base %#x, but its used position is %#x (posted %d)", role, base, want, g.drv.AvailIdx())
	}
	m.checkInterrupts("ring stopped")
	if role == txRing {
		m.hostDrain()
	}
	if g.broken && int16(uint16(base)-g.badPos) > 0 {
		g.broken = false // popped and returned: the restarted ring is sound
	}
	m.startRing(role, base)
}

// crash kills the backend without a word and starts a new one from the
// used indexes (QEMU's virtio_queue_restore_last_avail_idx after a
// reconnect). A packed ring has no used index in guest memory: QEMU sends
// the base the ring last started with, and the device must find its
// position in the ring (BAD-INPUTS 76).
func (m *model) crash() {
	m.reap(rxRing)
	m.reap(txRing)
	m.hostDrain()
	l := m.life
	c := l.p.c.local
	read := c[cRxPackets]
	if read < l.rxDelivered {
		m.fail("crashed backend: %d frames delivered, only %d read", l.rxDelivered, read)
	}
	m.rxLost += read - l.rxDelivered
	proc := txProcessed(c)
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
	var bases [2]uint32
	for role, g := range m.rings {
		bases[role] = g.drv.Base()
		if m.cfg.packed {
			bases[role] = g.startBase
		}
	}
	m.newLife(bases[rxRing], bases[txRing])
}

func txProcessed(c [numCounters]uint64) uint64 {
	return c[cTxMalformed] + c[cTxOversize] + c[cTxPackets] + c[cTxDroppedTapFull] + c[cTxDroppedTap] + c[cTxDiscarded]
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
		before := [4]uint64{uint64(m.rings[0].reaped), uint64(m.rings[1].reaped), uint64(len(m.txSeen)), m.life.p.c.local[cRxPackets] + m.life.p.c.local[cRxTruncated]}
		m.hostDrain()
		m.postRX(64)
		for i := 0; i < 4; i++ {
			m.poll()
		}
		m.sleep()
		m.reap(rxRing)
		m.reap(txRing)
		after := [4]uint64{uint64(m.rings[0].reaped), uint64(m.rings[1].reaped), uint64(len(m.txSeen)), m.life.p.c.local[cRxPackets] + m.life.p.c.local[cRxTruncated]}
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
	c := l.p.c.local
	if proc := txProcessed(c); proc != l.txCompleted {
		m.fail("TX: the last backend processed %d chains and completed %d", proc, l.txCompleted)
	}
	if c[cRxPackets] != l.rxDelivered {
		m.fail("RX: the last backend read %d frames, the guest received %d", c[cRxPackets], l.rxDelivered)
	}
	var delivered, truncated uint64
	for _, l := range m.lives {
		delivered += l.rxDelivered
		truncated += l.p.c.local[cRxTruncated]
	}
	if got := delivered + truncated + m.rxLost; got != uint64(m.rxSent) {
		m.fail("RX: host sent %d frames; delivered %d + truncated %d + lost in crashes %d = %d", m.rxSent, delivered, truncated, m.rxLost, got)
	}
	// Every good TX frame whose chain came back reached the TAP or was
	// counted as dropped: the frames not seen are at most the drops.
	var dropped uint64
	for _, l := range m.lives {
		c := l.p.c.local
		dropped += c[cTxDroppedTapFull] + c[cTxDroppedTap] + c[cTxDiscarded]
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

package netdev

// Lifecycle events under load, on the data path itself: GET_VRING_BASE and
// restart (QMP stop/cont), a backend crash restarted from the used index, a
// stopped ring left alone, a front-end gone mid-traffic. The model of
// ringstate_test.go checks every used entry, base and call.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// loadConfigs are the lifecycle tests' rings: QEMU's default and largest
// sizes, MRG_RXBUF and EVENT_IDX as QEMU offers them.
func loadConfigs() []modelConfig {
	var cs []modelConfig
	for _, size := range []uint16{256, 1024} {
		cs = append(cs, modelConfig{size: size, mrg: true, eventIdx: true},
			modelConfig{size: size, mrg: true, eventIdx: true, packed: true},
			modelConfig{size: size, mrg: true, eventIdx: true, inOrder: true})
	}
	return cs
}

// floodRX fills the guest's RX ring and moves at least n frames into it, the
// guest refilling as Linux does, with TX flowing too. It returns the frames
// delivered.
func (m *model) floodRX(n uint64) uint64 {
	m.postRX(int(m.cfg.size))
	start := m.life.rxDelivered
	for i := 0; m.life.rxDelivered-start < n; i++ {
		if i > 100*int(n) {
			m.t.Fatalf("flood: %d of %d frames delivered", m.life.rxDelivered-start, n)
		}
		m.flood(8)
	}
	return m.life.rxDelivered - start
}

func runLoad(t *testing.T, event func(m *model)) {
	for _, cfg := range loadConfigs() {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			var fails []string
			m := newModel(t, cfg, func(f string, a ...any) { fails = append(fails, fmt.Sprintf(f, a...)) })
			m.rnd = newModelRand(uint64(cfg.size))
			for cycle := 0; cycle < 3; cycle++ {
				got := m.floodRX(3000)
				if len(fails) > 0 {
					break
				}
				event(m)
				t.Logf("cycle %d: %d frames into the guest, then the event", cycle, got)
			}
			m.floodRX(3000)
			m.finish()
			if len(fails) > 0 {
				t.Fatalf("%v:\n%s", cfg, joinLines(fails[:min(len(fails), 10)]))
			}
		})
	}
}

// TestBadInput46StopContUnderLoad is issue 12's report on the data path: a
// guest fed 3000 frames through full rings, then QMP stop/cont (both rings
// stopped with GET_VRING_BASE and restarted from the bases returned), three
// times. The base must be the used index, no head may come back twice or
// out of order, and traffic must flow again.
func TestBadInput46StopContUnderLoad(t *testing.T) {
	runLoad(t, func(m *model) {
		m.stopStart(rxRing)
		m.stopStart(txRing)
	})
}

// TestBadInput49RestartFromUsedIndex: the backend dies under load (no
// GET_VRING_BASE) and a new one starts each ring at the used index QEMU
// reads from guest memory. Chains the dead backend popped and never
// completed are popped again; none completed is seen twice.
func TestBadInput49RestartFromUsedIndex(t *testing.T) {
	runLoad(t, func(m *model) { m.crash() })
}

// TestBadInput43StoppedRingUntouched: after GET_VRING_BASE a ring is not
// touched, whatever the guest posts and the TAP holds: its used ring stays
// byte for byte as it was, no frame crosses, and the ring restarted from
// the base returned carries on.
func TestBadInput43StoppedRingUntouched(t *testing.T) {
	for _, cfg := range loadConfigs() {
		t.Run(cfg.String(), func(t *testing.T) {
			var fails []string
			m := newModel(t, cfg, func(f string, a ...any) { fails = append(fails, fmt.Sprintf(f, a...)) })
			m.rnd = newModelRand(3)
			m.floodRX(500)
			m.reap(rxRing)
			m.reap(txRing)
			m.hostDrain()
			bases := [2]uint32{m.life.dev.StopRing(rxRing), m.life.dev.StopRing(txRing)}
			m.hostDrain() // what the stop wrote: TX in flight is finished first
			var before [2][]byte
			for i, g := range m.rings {
				g.running = false
				before[i] = g.drv.usedMem()
			}
			m.postRX(64)
			m.postTX(64)
			m.hostSend(8)
			for i := 0; i < 20; i++ {
				m.poll()
				m.sleep()
			}
			for i, g := range m.rings {
				if now := g.drv.usedMem(); string(now) != string(before[i]) {
					t.Errorf("ring %d: used ring written after GET_VRING_BASE", i)
				}
			}
			if readable(m.peer) {
				t.Errorf("a TX frame reached the TAP from a stopped ring")
			}
			if !readable(m.life.p.tq.Fd()) {
				t.Errorf("frames the host sent were read for a stopped RX ring")
			}
			m.startRing(rxRing, bases[0])
			m.startRing(txRing, bases[1])
			m.floodRX(500)
			m.finish()
			if len(fails) > 0 {
				t.Fatalf("%v:\n%s", cfg, joinLines(fails[:min(len(fails), 10)]))
			}
		})
	}
}

// TestBadInput45DisconnectMidTraffic: front-ends that vanish while frames
// flow both ways, again and again, on one device with its real workers: each
// connection's end releases what it held (no fd left behind), the TAP stays,
// and the next front-end moves traffic both ways.
func TestBadInput45DisconnectMidTraffic(t *testing.T) {
	host := newFakeHost(t, 1)
	dev, err := newDevice(Config{QueuePairs: 1, TAP: "fake"}, hclog.NewNullLogger(), keptHost{host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	srv := vhost.NewServer(dev, nil)
	features := allFeatures() & (dev.Features() | 1<<vhost.FeatProtocolFeatures)
	connect := func() (*vhosttest.FrontEnd, chan struct{}) {
		fe, be, err := vhosttest.Pair()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { srv.ServeConn(context.Background(), be); close(done) }()
		proto := uint64(1<<vhost.ProtoReplyAck | 1<<vhost.ProtoMQ)
		if err := fe.Start(features, proto, 2, 256, vhosttest.Layout{Size: 32 << 20}); err != nil {
			t.Fatal(err)
		}
		return fe, done
	}
	// One connection first: the workers, epoll sets and the host watch
	// exist from then on and are not counted as leaks.
	fe, done := connect()
	fe.Close()
	<-done
	fds := privtest.OpenFds()
	for cycle := 0; cycle < 10; cycle++ {
		fe, done := connect()
		rx, tx := fe.Ring(0).Driver, fe.Ring(1).Driver
		for rx.FreeDescs() > 0 {
			rx.AddChain(nil, []int{2048})
		}
		rx.Publish()
		fe.Kick(0)
		for i := 0; i < 200; i++ {
			tx.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(500, byte(i))}, nil)
			if i%50 == 49 {
				tx.Publish()
				fe.Kick(1)
			}
			f := append(make([]byte, 12), testutil.PatternFrame(700, byte(i))...)
			unix.Write(host.peers[0], f) // EAGAIN when the TAP is full: fine
		}
		// Gone mid-traffic: at least some frames crossed, most are in flight.
		if !waitReadable(host.peers[0], 5*time.Second) {
			t.Fatalf("cycle %d: no TX frame reached the TAP", cycle)
		}
		fe.Close()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatalf("cycle %d: the connection was still served 1 s after the front-end left", cycle)
		}
		drainPeer(host.peers[0])
	}
	if now := privtest.OpenFds(); now > fds {
		t.Errorf("%d fds open after 10 disconnects mid-traffic, %d before", now, fds)
	}
	// The next front-end: traffic both ways.
	fe, done = connect()
	defer func() { fe.Close(); <-done }()
	drainPeer(host.queues[0].Fd())
	rx, tx := fe.Ring(0).Driver, fe.Ring(1).Driver
	rx.AddChain(nil, []int{2048})
	rx.Publish()
	fe.Kick(0)
	tx.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(300, 1)}, nil)
	tx.Publish()
	fe.Kick(1)
	if got := host.peerRead(t, 0, 5*time.Second); len(got) != 312 {
		t.Fatalf("TX after the reconnects: %d bytes on the TAP, want 312", len(got))
	}
	unix.Write(host.peers[0], append(make([]byte, 12), testutil.PatternFrame(400, 2)...))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if cs := rx.UsedAll(); len(cs) == 1 {
			if cs[0].Len != 412 {
				t.Fatalf("RX after the reconnects: %d bytes, want 412", cs[0].Len)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("RX after the reconnects: no frame within 5 s")
		}
		fe.WaitCall(0, 100*time.Millisecond)
	}
}

// drainPeer reads and discards every datagram waiting on fd.
func drainPeer(fd int) {
	b := make([]byte, 70000)
	for {
		if _, err := unix.Read(fd, b); err != nil {
			return
		}
	}
}

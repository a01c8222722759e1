package vhost_test

// Lifecycle (BAD-INPUTS section E, items 45-48).

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// listening is a Server listening on a socket path and serving in the
// background.
type listening struct {
	dev  *vhosttest.NullDevice
	srv  *vhost.Server
	path string
	logs *logBuf
	done chan error
}

func newListening(t *testing.T, dev vhost.Device, nd *vhosttest.NullDevice) *listening {
	t.Helper()
	l := &listening{dev: nd, logs: &logBuf{}, done: make(chan error, 1)}
	l.srv = vhost.NewServer(dev, newLogger(l.logs, hclog.Info))
	l.path = filepath.Join(t.TempDir(), "vu.sock")
	if err := l.srv.Listen(l.path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { l.done <- l.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		l.srv.Close()
		select {
		case <-l.done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", l.logs.String())
		}
	})
	return l
}

// dial connects a front-end whose memfds are called name.
func (l *listening) dial(t *testing.T, name string) *vhosttest.FrontEnd {
	t.Helper()
	fe, err := vhosttest.Dial(l.path)
	if err != nil {
		t.Fatal(err)
	}
	fe.Name = name
	return fe
}

// qemuStart is QEMU 10's start sequence for one queue pair, one message
// per step, as traced (../shared/traces/README.md), followed by traffic.
func qemuStart() []struct {
	name string
	do   func(fe *vhosttest.FrontEnd) error
} {
	type step = struct {
		name string
		do   func(fe *vhosttest.FrontEnd) error
	}
	get := func(r vhost.Request) func(*vhosttest.FrontEnd) error {
		return func(fe *vhosttest.FrontEnd) error { _, err := fe.GetU64(r); return err }
	}
	steps := []step{
		{"GET_FEATURES", get(vhost.ReqGetFeatures)},
		{"GET_PROTOCOL_FEATURES", get(vhost.ReqGetProtocolFeatures)},
		{"SET_PROTOCOL_FEATURES", func(fe *vhosttest.FrontEnd) error {
			fe.Proto = 1<<vhost.ProtoMQ | 1<<vhost.ProtoReplyAck | 1<<vhost.ProtoStatus | 1<<vhost.ProtoNetMTU
			return fe.Send(vhost.ReqSetProtocolFeatures, 0, u64(fe.Proto))
		}},
		{"GET_QUEUE_NUM", get(vhost.ReqGetQueueNum)},
		{"SET_OWNER", func(fe *vhosttest.FrontEnd) error { return fe.Send(vhost.ReqSetOwner, 0, nil) }},
		{"GET_FEATURES", get(vhost.ReqGetFeatures)},
	}
	for i := 0; i < 2; i++ {
		steps = append(steps,
			step{fmt.Sprintf("SET_VRING_CALL(%d)", i), func(fe *vhosttest.FrontEnd) error { return fe.SetVringCall(i) }},
			step{fmt.Sprintf("SET_VRING_ERR(%d)", i), func(fe *vhosttest.FrontEnd) error { return fe.SetVringErr(i) }})
	}
	for i := 0; i < 2; i++ {
		steps = append(steps, step{fmt.Sprintf("SET_VRING_ENABLE(%d)", i), func(fe *vhosttest.FrontEnd) error { return fe.Enable(i, true) }})
	}
	steps = append(steps,
		step{"SET_FEATURES", func(fe *vhosttest.FrontEnd) error {
			fe.Features = testFeatures&^(1<<fMQ|1<<fCtrlVQ) | 1<<vhost.FeatProtocolFeatures
			return fe.Send(vhost.ReqSetFeatures, 0, u64(fe.Features))
		}},
		step{"GET_STATUS", get(vhost.ReqGetStatus)},
		step{"SET_STATUS(8)", func(fe *vhosttest.FrontEnd) error { return fe.SetStatus(8) }},
		step{"SET_MEM_TABLE", func(fe *vhosttest.FrontEnd) error { return fe.SetMemTable(vhosttest.Layout{Size: 16 << 20}) }},
	)
	for i := 0; i < 2; i++ {
		steps = append(steps,
			step{fmt.Sprintf("SET_VRING_NUM(%d)", i), func(fe *vhosttest.FrontEnd) error {
				if _, err := fe.LayoutRing(i, 256, true); err != nil {
					return err
				}
				return fe.SetVringNum(i, 256)
			}},
			step{fmt.Sprintf("SET_VRING_BASE(%d)", i), func(fe *vhosttest.FrontEnd) error { return fe.SetVringBase(i, 0) }},
			step{fmt.Sprintf("SET_VRING_ADDR(%d)", i), func(fe *vhosttest.FrontEnd) error { return fe.SetVringAddr(i) }},
			step{fmt.Sprintf("SET_VRING_KICK(%d)", i), func(fe *vhosttest.FrontEnd) error { return fe.SetVringKick(i) }},
			step{fmt.Sprintf("SET_VRING_CALL(%d)", i), func(fe *vhosttest.FrontEnd) error { return fe.SetVringCall(i) }},
		)
	}
	steps = append(steps,
		step{"GET_STATUS", get(vhost.ReqGetStatus)},
		step{"SET_STATUS(15)", func(fe *vhosttest.FrontEnd) error { return fe.SetStatus(15) }},
		step{"traffic", func(fe *vhosttest.FrontEnd) error {
			d := fe.Ring(1).Driver
			if _, err := d.AddChain([][]byte{make([]byte, 64)}, nil); err != nil {
				return err
			}
			d.Publish()
			return fe.Kick(1)
		}},
	)
	return steps
}

func TestBadInput45DisconnectAnywhere(t *testing.T) {
	dev := vhosttest.NewNullDevice(testFeatures, testVrings)
	l := newListening(t, dev, dev)
	name := uniqueName("disc")
	// Baseline: one connection made and gone, so the server's own fds are
	// all in place.
	fe := l.dial(t, name)
	if err := fe.Sync(); err != nil {
		t.Fatal(err)
	}
	fe.Close()
	base := settledFdCount()

	steps := qemuStart()
	for k := 1; k <= len(steps); k++ {
		fe := l.dial(t, name)
		for _, s := range steps[:k] {
			if err := s.do(fe); err != nil {
				t.Fatalf("step %s: %v", s.name, err)
			}
		}
		last := steps[k-1].name
		fe.Close()
		t0 := time.Now()
		// The server serves one connection at a time: an answer on a new
		// one means the old session is gone.
		fe2 := l.dial(t, name)
		fe2.Timeout = time.Second
		if err := fe2.Sync(); err != nil {
			t.Fatalf("after disconnecting at %s: no answer within 1 s: %v", last, err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("after disconnecting at %s: answered after %v", last, d)
		}
		if n := vhosttest.MapsCount(name); n != 0 {
			t.Fatalf("after disconnecting at %s: %d mappings of the guest memory left", last, n)
		}
		if st := dev.State(); len(st.Running) != 0 || st.Regions != 0 || st.Acked != 0 {
			t.Fatalf("after disconnecting at %s: device %+v", last, st)
		}
		fe2.Close()
		if !waitFor(time.Second, func() bool { return privtest.OpenFds() == base }) {
			t.Fatalf("after disconnecting at %s: %d fds open, %d before", last, privtest.OpenFds(), base)
		}
	}
}

// consumer is a NullDevice whose StopRing consumes what the driver made
// available, through virtqueue.Queue: every chain is completed (length 0)
// and GET_VRING_BASE gets the real next avail index.
type consumer struct {
	*vhosttest.NullDevice
	mem   *virtqueue.Memory
	specs map[int]vhost.RingSpec
}

func (c *consumer) SetMemory(m *virtqueue.Memory) { c.mem = m; c.NullDevice.SetMemory(m) }

func (c *consumer) StartRing(r vhost.RingSpec) error {
	c.specs[r.Index] = r
	return c.NullDevice.StartRing(r)
}

func (c *consumer) StopRing(i int) uint32 {
	c.NullDevice.StopRing(i)
	r := c.specs[i]
	q, err := virtqueue.NewQueue(c.mem, virtqueue.Config{Size: r.Size, Desc: r.Desc, Avail: r.Avail, Used: r.Used,
		EventIdx: r.EventIdx, Indirect: r.Indirect}, uint16(r.Base))
	if err != nil {
		panic(err)
	}
	chains := make([]virtqueue.Chain, 64)
	for {
		n, err := q.PopBatch(chains)
		if err != nil || n == 0 {
			break
		}
		used := make([]virtqueue.Used, n)
		for j := range used {
			used[j] = virtqueue.Used{Head: chains[j].Head}
		}
		q.PushBatch(used)
		if r.Call >= 0 {
			unix.Write(r.Call, u64(1))
		}
	}
	return uint32(q.NextAvail())
}

func TestBadInput46GetVringBase(t *testing.T) {
	t.Run("NullDevice", func(t *testing.T) {
		h := newHarness(t)
		h.negotiate()
		if err := h.fe.SetMemTable(vhosttest.Layout{Size: 4 << 20}); err != nil {
			t.Fatal(err)
		}
		// Never started: the base that was set comes back.
		h.ack(vhost.ReqSetVringBase, vstate(1, 9))
		if b, err := h.fe.GetVringBase(1); err != nil || b != 9 {
			t.Fatalf("GET_VRING_BASE(1) = %d, %v", b, err)
		}
		if err := h.fe.SetupRing(0, 256); err != nil {
			t.Fatal(err)
		}
		h.nack(vhost.ReqSetVringBase, vstate(0, 7)) // refused while running
		// Restart ring 0 at 7 with a kick fd we can watch.
		if _, err := h.fe.GetVringBase(0); err != nil {
			t.Fatal(err)
		}
		h.ack(vhost.ReqSetVringBase, vstate(0, 7))
		p := eventfdProbe(t)
		h.ack(vhost.ReqSetVringKick, u64(0), p.Fd)
		p.keptByPeer()
		if r := h.state().Running[0]; r.Base != 7 {
			t.Fatalf("ring started at %d", r.Base)
		}
		// num in the request is ignored (DPDK sends a stale one).
		r, err := h.fe.Call(vhost.ReqGetVringBase, 0, vstate(0, 12345))
		if err != nil {
			t.Fatal(err)
		}
		if got := vhosttest.VringState(0, 7); string(r.Payload) != string(got) {
			t.Fatalf("GET_VRING_BASE reply %x, want %x", r.Payload, got)
		}
		// The ring is stopped and its kick fd released.
		if _, ok := h.state().Running[0]; ok {
			t.Fatal("ring 0 still running after GET_VRING_BASE")
		}
		p.closedByPeer()
		// A second GET_VRING_BASE answers the same; a kick restarts it.
		if b, err := h.fe.GetVringBase(0); err != nil || b != 7 {
			t.Fatalf("GET_VRING_BASE again = %d, %v", b, err)
		}
		if err := h.fe.SetVringKick(0); err != nil {
			t.Fatal(err)
		}
		h.alive()
		if r, ok := h.state().Running[0]; !ok || r.Base != 7 {
			t.Fatalf("restart: %+v %v", r, ok)
		}
	})
	t.Run("data path", func(t *testing.T) {
		nd := vhosttest.NewNullDevice(testFeatures, testVrings)
		dev := &consumer{NullDevice: nd, specs: map[int]vhost.RingSpec{}}
		l := newListening(t, dev, nd)
		fe := l.dial(t, uniqueName("base"))
		defer fe.Close()
		if err := fe.Start(testFeatures, allProto, 2, 256, vhosttest.Layout{Size: 4 << 20}); err != nil {
			t.Fatal(err)
		}
		d := fe.Ring(1).Driver
		for i := 0; i < 3; i++ {
			if _, err := d.AddChain([][]byte{{1, 2, 3}}, nil); err != nil {
				t.Fatal(err)
			}
		}
		d.Publish()
		if b, err := fe.GetVringBase(1); err != nil || b != 3 {
			t.Fatalf("GET_VRING_BASE = %d, %v; want 3", b, err)
		}
		if err := fe.WaitCall(1, 5*time.Second); err != nil {
			t.Fatalf("no call after the chains were completed: %v", err)
		}
		if err := fe.WaitCall(1, 10*time.Millisecond); err != vhosttest.ErrTimeout {
			t.Fatalf("a second call: %v", err)
		}
		if used := d.UsedAll(); len(used) != 3 {
			t.Fatalf("%d chains completed, want 3 (in-flight chains are completed before the answer)", len(used))
		}
		// Restart where it stopped (as QEMU does), 2 more.
		if err := fe.SetVringBase(1, 3); err != nil {
			t.Fatal(err)
		}
		if err := fe.SetVringKick(1); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if _, err := d.AddChain([][]byte{{1}}, nil); err != nil {
				t.Fatal(err)
			}
		}
		d.Publish()
		if b, err := fe.GetVringBase(1); err != nil || b != 5 {
			t.Fatalf("GET_VRING_BASE = %d, %v; want 5", b, err)
		}
	})
}

func TestBadInput47Enable(t *testing.T) {
	t.Run("with protocol features", func(t *testing.T) {
		h := newHarness(t)
		h.negotiate()
		if err := h.fe.SetMemTable(vhosttest.Layout{Size: 4 << 20}); err != nil {
			t.Fatal(err)
		}
		// Enabled before it starts (QEMU does this long before), ring 1 not.
		if err := h.fe.Enable(0, true); err != nil {
			t.Fatal(err)
		}
		if err := h.fe.SetupRings(2, 256); err != nil {
			t.Fatal(err)
		}
		st := h.state()
		if !st.Running[0].Enabled || !st.Enabled[0] {
			t.Fatalf("ring 0 not started enabled: %+v", st)
		}
		if st.Running[1].Enabled || st.Enabled[1] {
			t.Fatalf("ring 1 started enabled without SET_VRING_ENABLE: %+v", st)
		}
		for _, on := range []bool{true, false, true} {
			if err := h.fe.Enable(1, on); err != nil {
				t.Fatal(err)
			}
			if got := h.state().Enabled[1]; got != on {
				t.Fatalf("enable %v: device has %v", on, got)
			}
		}
		// Disabling does not stop the ring: GET_VRING_BASE does.
		if err := h.fe.Enable(0, false); err != nil {
			t.Fatal(err)
		}
		if _, ok := h.state().Running[0]; !ok {
			t.Fatal("disable stopped the ring")
		}
		before := h.state()
		h.nack(vhost.ReqSetVringEnable, vstate(0, 2))
		h.logged(vhost.ReqSetVringEnable, "num")
		h.unchanged(before)
	})
	t.Run("without protocol features", func(t *testing.T) {
		h := newHarness(t)
		if err := h.fe.Negotiate(testFeatures, allProto); err != nil {
			t.Fatal(err)
		}
		// SET_FEATURES without bit 30: rings start enabled.
		if err := h.fe.SetFeatures(testFeatures); err != nil {
			t.Fatal(err)
		}
		if err := h.fe.SetMemTable(vhosttest.Layout{Size: 4 << 20}); err != nil {
			t.Fatal(err)
		}
		if err := h.fe.SetupRing(0, 64); err != nil {
			t.Fatal(err)
		}
		if st := h.state(); !st.Running[0].Enabled {
			t.Fatalf("ring 0 started disabled: %+v", st)
		}
	})
}

func TestBadInput48Reset(t *testing.T) {
	for _, req := range []vhost.Request{vhost.ReqResetOwner, vhost.ReqResetDevice} {
		t.Run(req.String(), func(t *testing.T) {
			h := newHarness(t)
			h.start(2)
			resets := h.state().Resets
			kick := eventfdProbe(t)
			h.ack(vhost.ReqSetVringKick, u64(1), kick.Fd)
			kick.keptByPeer()
			h.ack(req, nil)
			st := h.state()
			if len(st.Running) != 0 || st.Acked != 0 || st.Resets != resets+1 {
				t.Fatalf("after %v: %+v", req, st)
			}
			kick.closedByPeer()
			// The socket stays; a full re-init works.
			if err := h.fe.Negotiate(testFeatures, allProto); err != nil {
				t.Fatal(err)
			}
			if err := h.fe.SetMemTable(vhosttest.Layout{Size: 4 << 20}); err != nil {
				t.Fatal(err)
			}
			if err := h.fe.SetupRings(2, 128); err != nil {
				t.Fatal(err)
			}
			st = h.state()
			if len(st.Running) != 2 || st.Running[0].Size != 128 || st.Acked == 0 {
				t.Fatalf("after re-init: %+v", st)
			}
		})
	}
	t.Run("RESET_DEVICE not negotiated", func(t *testing.T) {
		h := newHarness(t)
		if err := h.fe.Negotiate(testFeatures, 1<<vhost.ProtoReplyAck); err != nil {
			t.Fatal(err)
		}
		before := h.state()
		h.nack(vhost.ReqResetDevice, nil)
		h.logged(vhost.ReqResetDevice, "protocol_features")
		h.unchanged(before)
	})
}

// refusingDevice is a NullDevice whose StartRing fails.
type refusingDevice struct{ *vhosttest.NullDevice }

func (refusingDevice) StartRing(vhost.RingSpec) error { return fmt.Errorf("refused") }

// TestKickRefusedByDevice: when the device refuses to start a ring, the
// SET_VRING_KICK is rejected like any other message: failure answer, log
// line, and the kick fd it carried is closed, not kept.
func TestKickRefusedByDevice(t *testing.T) {
	nd := vhosttest.NewNullDevice(testFeatures, testVrings)
	l := newListening(t, refusingDevice{nd}, nd)
	fe := l.dial(t, uniqueName("refuse"))
	defer fe.Close()
	if err := fe.Negotiate(testFeatures, allProto); err != nil {
		t.Fatal(err)
	}
	if err := fe.SetMemTable(vhosttest.Layout{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	r, err := fe.LayoutRing(0, 64, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := fe.SetVringNum(0, 64); err != nil {
		t.Fatal(err)
	}
	if err := fe.SetVringAddr(0); err != nil {
		t.Fatal(err)
	}
	_ = r
	p := eventfdProbe(t)
	v, err := fe.Ack(vhost.ReqSetVringKick, u64(0), p.Fd)
	if err != nil || v == 0 {
		t.Fatalf("SET_VRING_KICK refused by the device: ack %d, %v", v, err)
	}
	p.closedByPeer()
	if !l.logs.hasLine("request=SET_VRING_KICK", "field=vring") {
		t.Fatalf("log:\n%s", l.logs)
	}
}

package netdev

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// fakeHost stands in for a TAP: one datagram socketpair per queue, the
// test holding the far ends.
type fakeHost struct {
	queues []*tap.Queue
	peers  []int
	mtu    int
	off    tap.Offloads
}

func newFakeHost(t testing.TB, n int) *fakeHost {
	h := &fakeHost{mtu: 1500}
	for i := 0; i < n; i++ {
		q, peer := tapStandIn(t, i)
		h.queues = append(h.queues, q)
		h.peers = append(h.peers, peer)
	}
	return h
}

func (h *fakeHost) Name() string           { return "fake" }
func (h *fakeHost) Ifindex() int           { return 0 }
func (h *fakeHost) Kind() tap.Kind         { return tap.KindTAP }
func (h *fakeHost) NumQueues() int         { return len(h.queues) }
func (h *fakeHost) Queue(i int) *tap.Queue { return h.queues[i] }
func (h *fakeHost) SetMTU(m int) error     { h.mtu = m; return nil }
func (h *fakeHost) MTU() (int, error)      { return h.mtu, nil }
func (h *fakeHost) SetUp(bool) error       { return nil }
func (h *fakeHost) SetOffload(o tap.Offloads) (tap.Offloads, error) {
	h.off = o.Effective()
	return h.off, nil
}
func (h *fakeHost) Close() error {
	for _, q := range h.queues {
		q.Close()
	}
	return nil
}

// waitReadable waits up to d for fd to turn readable. poll(2) is retried
// on EINTR, which the Go runtime's preemption signals cause often (more so
// under -race): the -1 it returns then says nothing about the fd.
func waitReadable(fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		n, err := unix.Poll(pfd, int(left.Milliseconds()))
		if err == unix.EINTR && left > 0 {
			continue
		}
		return n == 1
	}
}

// peerRead waits up to d for one frame on queue i's far end.
func (h *fakeHost) peerRead(t testing.TB, i int, d time.Duration) []byte {
	t.Helper()
	if !waitReadable(h.peers[i], d) {
		t.Fatalf("no frame on TAP queue %d within %v", i, d)
	}
	b := make([]byte, 70000)
	n, err := unix.Read(h.peers[i], b)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

type devRig struct {
	dev  *Device
	host *fakeHost
	fe   *vhosttest.FrontEnd
}

// startDevice serves a Device over a fake host to a vhosttest front-end
// that negotiates features (masked with what the device offers) and starts
// 2*pairs rings of 256.
func startDevice(t testing.TB, cfg Config, features uint64, layouts ...vhosttest.Layout) *devRig {
	t.Helper()
	if cfg.QueuePairs == 0 {
		cfg.QueuePairs = 1
	}
	cfg.TAP = "fake"
	host := newFakeHost(t, cfg.QueuePairs)
	dev, err := newDevice(cfg, hclog.NewNullLogger(), host)
	if err != nil {
		t.Fatal(err)
	}
	r := serveDevice(t, dev, cfg.QueuePairs, features, layouts...)
	r.host = host
	return r
}

// serveFE serves dev to a vhosttest front-end; cleanup closes both.
func serveFE(t testing.TB, dev *Device) *vhosttest.FrontEnd {
	t.Helper()
	t.Cleanup(func() { dev.Close() })
	return vhosttest.Serve(t, dev)
}

// serveDevice serves dev to a vhosttest front-end and starts its rings,
// in one region of 32 MiB unless layouts are given.
func serveDevice(t testing.TB, dev *Device, pairs int, features uint64, layouts ...vhosttest.Layout) *devRig {
	t.Helper()
	fe := serveFE(t, dev)
	features &= dev.Features() | 1<<vhost.FeatProtocolFeatures
	fe.Packed = features&bit(FRingPacked) != 0
	proto := uint64(1<<vhost.ProtoReplyAck | 1<<vhost.ProtoMQ)
	if len(layouts) == 0 {
		layouts = []vhosttest.Layout{{Size: 32 << 20}}
	}
	if err := fe.Start(features, proto, 2*pairs, 256, layouts...); err != nil {
		t.Fatal(err)
	}
	return &devRig{dev: dev, fe: fe}
}

// allFeatures is every feature but VIRTIO_F_RING_PACKED: the tests that
// want packed rings ask for it (packedFeatures).
func allFeatures() uint64 { return ^uint64(0) &^ bit(FRingPacked) }

// packedFeatures is every feature, packed rings included.
func packedFeatures() uint64 { return ^uint64(0) }

func TestDeviceMovesFramesBothWays(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mask   uint64
		spin   time.Duration
		packed bool
	}{
		{name: "mrg+eventidx"},
		{name: "no mrg", mask: bit(FMrgRxbuf)},
		{name: "no eventidx", mask: bit(FEventIdx)},
		{name: "neither", mask: bit(FMrgRxbuf) | bit(FEventIdx)},
		{name: "busy-poll", spin: 50 * time.Microsecond},
		{name: "packed/mrg+eventidx", packed: true},
		{name: "packed/neither", mask: bit(FMrgRxbuf) | bit(FEventIdx), packed: true},
		{name: "packed/busy-poll", spin: 50 * time.Microsecond, packed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			features := allFeatures()
			if tc.packed {
				features = packedFeatures()
			}
			r := startDevice(t, Config{QueuePairs: 1, BusyPoll: tc.spin}, features&^tc.mask)
			if (r.fe.Ring(1).Packed != nil) != tc.packed {
				t.Fatalf("packed ring %v, want %v (acked %#x)", r.fe.Ring(1).Packed != nil, tc.packed, r.fe.Features)
			}
			// Guest TX: ring 1.
			tx := r.fe.Ring(1).Guest
			hdr := make([]byte, 12)
			for i := 0; i < 10; i++ {
				if _, err := tx.AddChain([][]byte{hdr, testutil.PatternFrame(60+i, byte(i))}, nil); err != nil {
					t.Fatal(err)
				}
			}
			if tx.Publish() {
				r.fe.Kick(1)
			}
			for i := 0; i < 10; i++ {
				got := r.host.peerRead(t, 0, 5*time.Second)
				if want := append(append([]byte{}, hdr...), testutil.PatternFrame(60+i, byte(i))...); !bytes.Equal(got, want) {
					t.Fatalf("frame %d on the TAP: %x, want %x", i, got, want)
				}
			}
			if err := r.fe.WaitCall(1, 5*time.Second); err != nil {
				t.Fatalf("no TX call: %v", err)
			}
			if cs := tx.UsedAll(); len(cs) != 10 {
				t.Fatalf("%d TX chains returned, want 10", len(cs))
			}
			// Guest RX: ring 0.
			rx := r.fe.Ring(0).Guest
			for i := 0; i < 16; i++ {
				if _, err := rx.AddChain(nil, []int{2048}); err != nil {
					t.Fatal(err)
				}
			}
			if rx.Publish() {
				r.fe.Kick(0)
			}
			var sent [][]byte
			for i := 0; i < 5; i++ {
				f := append(make([]byte, 12), testutil.PatternFrame(100+i, byte(i+50))...)
				sent = append(sent, f)
				if _, err := unix.Write(r.host.peers[0], f); err != nil {
					t.Fatal(err)
				}
			}
			var got [][]byte
			deadline := time.Now().Add(5 * time.Second)
			for len(got) < 5 && time.Now().Before(deadline) {
				r.fe.WaitCall(0, 100*time.Millisecond)
				for _, c := range rx.UsedAll() {
					got = append(got, c.Written)
				}
			}
			if len(got) != 5 {
				t.Fatalf("%d frames reached the guest, want 5", len(got))
			}
			for i, g := range got {
				if nb := binary.LittleEndian.Uint16(g[10:]); nb != 1 {
					t.Errorf("frame %d: num_buffers %d", i, nb)
				}
				if !bytes.Equal(g[12:], sent[i][12:]) {
					t.Errorf("frame %d corrupted", i)
				}
			}
			// The worker publishes its counters after it wrote the used
			// ring, before the call: a guest that reads the used ring
			// without waiting for the call may see the frames first.
			var st map[string]uint64
			if !testutil.WaitFor(2*time.Second, time.Millisecond, func() bool {
				st = r.dev.Stats()[0].Values
				return st["tx_packets"] == 10 && st["rx_packets"] == 5
			}) {
				t.Errorf("counters %v", st)
			}
			// GET_VRING_BASE: TX consumed 10; RX consumed 5 of the 16
			// offered (stocked chains are handed back). A packed ring
			// answers both positions in ring slots, wrap counters (1) in
			// bit 15: each TX chain took two (header, frame).
			want := func(n, slots uint32) uint32 {
				if tc.packed {
					return (0x8000 | n*slots) * 0x10001
				}
				return n
			}
			if b, err := r.fe.GetVringBase32(1); err != nil || b != want(10, 2) {
				t.Errorf("TX base %#x (%v), want %#x", b, err, want(10, 2))
			}
			if b, err := r.fe.GetVringBase32(0); err != nil || b != want(5, 1) {
				t.Errorf("RX base %#x (%v), want %#x", b, err, want(5, 1))
			}
		})
	}
}

// TestDisabledRing: a started but disabled ring processes and discards TX
// and delivers no RX (BAD-INPUTS 47); enabling it again resumes traffic
// without a new kick.
func TestDisabledRing(t *testing.T) {
	r := startDevice(t, Config{QueuePairs: 1}, allFeatures())
	if err := r.fe.Enable(1, false); err != nil {
		t.Fatal(err)
	}
	if err := r.fe.Enable(0, false); err != nil {
		t.Fatal(err)
	}
	tx := r.fe.Ring(1).Driver
	tx.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(60, 1)}, nil)
	tx.Publish()
	r.fe.Kick(1)
	if err := r.fe.WaitCall(1, 5*time.Second); err != nil {
		t.Fatalf("disabled TX ring did not complete the chain: %v", err)
	}
	if cs := tx.UsedAll(); len(cs) != 1 {
		t.Fatalf("%d chains back", len(cs))
	}
	if waitReadable(r.host.peers[0], 100*time.Millisecond) {
		t.Fatalf("a frame from a disabled ring reached the TAP")
	}
	rx := r.fe.Ring(0).Driver
	rx.AddChain(nil, []int{2048})
	rx.Publish()
	unix.Write(r.host.peers[0], append(make([]byte, 12), testutil.PatternFrame(80, 3)...))
	time.Sleep(100 * time.Millisecond)
	if cs := rx.UsedAll(); len(cs) != 0 {
		t.Fatalf("a disabled RX ring delivered %d frames", len(cs))
	}
	// Enable without kicking: the frame waiting in the TAP arrives.
	if err := r.fe.Enable(0, true); err != nil {
		t.Fatal(err)
	}
	if err := r.fe.WaitCall(0, 5*time.Second); err != nil {
		t.Fatalf("no RX after enable: %v", err)
	}
	if cs := rx.UsedAll(); len(cs) != 1 || cs[0].Len != 92 {
		t.Fatalf("used %+v", cs)
	}
	if d := r.dev.Stats()[0].Values["tx_discarded"]; d != 1 {
		t.Errorf("tx_discarded %d, want 1", d)
	}
}

// TestTwoQueuePairs: each pair moves its own traffic on its own TAP queue.
func TestTwoQueuePairs(t *testing.T) {
	r := startDevice(t, Config{QueuePairs: 2}, allFeatures())
	for p := 0; p < 2; p++ {
		tx := r.fe.Ring(2*p + 1).Driver
		tx.AddChain([][]byte{make([]byte, 12), []byte(fmt.Sprintf("pair %d frame", p))}, nil)
		tx.Publish()
		r.fe.Kick(2*p + 1)
	}
	for p := 0; p < 2; p++ {
		got := r.host.peerRead(t, p, 5*time.Second)
		if want := fmt.Sprintf("pair %d frame", p); string(got[12:]) != want {
			t.Fatalf("TAP queue %d got %q, want %q", p, got[12:], want)
		}
		// The worker publishes its counters after the write and before it
		// returns the chain: wait for the chain, not the frame.
		r.waitReturned(t, 2*p+1, 1)
	}
	st := r.dev.Stats()
	if st[0].Values["tx_packets"] != 1 || st[1].Values["tx_packets"] != 1 {
		t.Fatalf("per-pair counters %v %v", st[0].Values, st[1].Values)
	}
}

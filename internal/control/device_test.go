package control

import (
	"net"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/netdev"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// TestRealDeviceCountersMove serves the control socket over a real
// netdev.Device (a TAP in a fresh netns) driven by a vhosttest front-end,
// pushes frames both ways, and checks /status, /stats and /metrics move.
func TestRealDeviceCountersMove(t *testing.T) {
	privtest.NetNS(t)
	dev, err := netdev.Open(netdev.Config{TAP: "vhc" + testutil.Suffix(8), QueuePairs: 1})
	if err != nil {
		t.Fatal(err)
	}
	fe := serveReal(t, dev)
	_, c, _ := startFake(t, Config{Device: dev, Version: "test", Mode: "fd", Socket: "fd 3"})

	var st StatusReply
	getJSON(t, c, "/status", &st)
	if !st.Features.Negotiated || st.Queues[0].RX.State != "enabled" || st.Queues[0].TX.Size != 256 || st.Interface.Name != dev.Name() {
		t.Fatalf("status: %+v", st)
	}
	// Guest TX: 5 frames of 1000 bytes to the TAP.
	tx := fe.Ring(1).Driver
	for i := 0; i < 5; i++ {
		if _, err := tx.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(1000, byte(i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tx.Publish()
	fe.Kick(1)
	// Guest RX: buffers posted, then a frame injected into the TAP.
	rx := fe.Ring(0).Driver
	for i := 0; i < 8; i++ {
		if _, err := rx.AddChain(nil, []int{2048}); err != nil {
			t.Fatal(err)
		}
	}
	rx.Publish()
	fe.Kick(0)
	injectFrame(t, dev.Ifindex(), testutil.TaggedFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}, "ctl", 1, 200))

	var sr StatsReply
	if !testutil.WaitFor(5*time.Second, 10*time.Millisecond, func() bool {
		sr = StatsReply{}
		getJSON(t, c, "/stats", &sr)
		q := sr.Queues[0].Counters
		return q["tx_packets"] == 5 && q["rx_packets"] >= 1
	}) {
		t.Fatalf("counters did not move: %v", sr.Queues[0].Counters)
	}
	if q := sr.Queues[0].Counters; q["tx_bytes"] != 5*1000 || q["kicks"] == 0 {
		t.Fatalf("tx_bytes %d kicks %d", q["tx_bytes"], q["kicks"])
	}
	if w := sr.Queues[0].Workers; len(w) != 1 || w[0].Polls == 0 || w[0].Work == 0 {
		t.Fatalf("workers: %+v", w)
	}
	_, text := get(t, c, "/metrics")
	fams := parseExposition(t, text)
	if v := sample(t, fams, "vhostd_frames_total", map[string]string{"queue": "0", "direction": "tx"}); v != 5 {
		t.Fatalf("vhostd_frames_total tx = %v, want 5", v)
	}
	if v := sample(t, fams, "vhostd_frames_total", map[string]string{"queue": "0", "direction": "rx"}); v < float64(sr.Queues[0].Counters["rx_packets"]) {
		t.Fatalf("vhostd_frames_total rx = %v, /stats said %d before", v, sr.Queues[0].Counters["rx_packets"])
	}
	if v := sample(t, fams, "vhostd_worker_polls_total", map[string]string{"queue": "0"}); v == 0 {
		t.Fatal("vhostd_worker_polls_total is 0")
	}
}

// serveReal serves dev to a vhosttest front-end with one pair of rings of
// 256, as QEMU would.
func serveReal(t *testing.T, dev *netdev.Device) *vhosttest.FrontEnd {
	t.Cleanup(func() { dev.Close() })
	fe := vhosttest.Serve(t, dev)
	features := dev.Features() | 1<<vhost.FeatProtocolFeatures
	if err := fe.Start(features, 1<<vhost.ProtoReplyAck|1<<vhost.ProtoMQ, 2, 256, vhosttest.Layout{Size: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	return fe
}

// injectFrame sends f into the interface with an AF_PACKET socket, so the
// TAP reads it (host to guest).
func injectFrame(t *testing.T, ifindex int, f []byte) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("AF_PACKET socket: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}); err != nil {
		t.Fatalf("AF_PACKET send: %v", err)
	}
}

package netdev

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// roundTrip sends one TX frame and waits for it on the TAP stand-in.
func (r *devRig) roundTrip(t *testing.T, tag byte) {
	t.Helper()
	tx := r.fe.Ring(1).Driver
	if _, err := tx.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(64, tag)}, nil); err != nil {
		t.Fatal(err)
	}
	tx.Publish()
	r.fe.Kick(1)
	got := r.host.peerRead(t, 0, 5*time.Second)
	if got[12] != tag {
		t.Fatalf("frame %d: got tag %d", tag, got[12])
	}
	r.waitTXReturned(t, 1)
}

// TestBadInput54MemoryHotplug: regions added and removed while traffic
// flows (ADD_MEM_REG, REM_MEM_REG) leave the running rings working; a
// removal that would take a running ring's memory away is refused.
func TestBadInput54MemoryHotplug(t *testing.T) {
	cfg := Config{QueuePairs: 1, TAP: "fake"}
	host := newFakeHost(t, 1)
	dev, err := newDevice(cfg, hclog.NewNullLogger(), host)
	if err != nil {
		t.Fatal(err)
	}
	srv := vhost.NewServer(dev, nil)
	fe, be, err := vhosttest.Pair()
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeConn(t.Context(), be)
	t.Cleanup(func() { fe.Close(); dev.Close() })
	proto := uint64(1<<vhost.ProtoReplyAck | 1<<vhost.ProtoConfigureMemSlots)
	if err := fe.Start(dev.Features()|1<<vhost.FeatProtocolFeatures, proto, 2, 256, vhosttest.Layout{Size: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	r := &devRig{dev: dev, host: host, fe: fe}
	r.roundTrip(t, 1)
	// RX buffers in stock across the memory change: they are handed back
	// and popped again through the new table.
	rx := fe.Ring(0).Driver
	for i := 0; i < 8; i++ {
		rx.AddChain(nil, []int{2048})
	}
	rx.Publish()
	fe.Kick(0)
	time.Sleep(50 * time.Millisecond)
	added, err := fe.AddMemReg(vhosttest.Layout{GPA: 1 << 32, Size: 8 << 20})
	if err != nil {
		t.Fatalf("ADD_MEM_REG: %v", err)
	}
	r.roundTrip(t, 2)
	unix.Write(host.peers[0], append(make([]byte, 12), testutil.PatternFrame(70, 9)...))
	if err := fe.WaitCall(0, 5*time.Second); err != nil {
		t.Fatalf("no RX after the memory change: %v", err)
	}
	if cs := rx.UsedAll(); len(cs) != 1 || cs[0].Len != 82 {
		t.Fatalf("RX used %+v", cs)
	}
	if err := fe.RemMemReg(added); err != nil {
		t.Fatalf("REM_MEM_REG: %v", err)
	}
	r.roundTrip(t, 3)
	// The rings live in the first region: removing it must fail and
	// change nothing.
	first := fe.Regions()[0]
	if err := fe.RemMemReg(first); err == nil {
		t.Fatalf("REM_MEM_REG of the rings' region was accepted")
	}
	first.Live = true
	r.roundTrip(t, 4)
	// Seven RX buffers are still unfilled: GET_VRING_BASE hands them back.
	if b, err := fe.GetVringBase(0); err != nil || b != 1 {
		t.Fatalf("RX base %d (%v), want 1", b, err)
	}
}

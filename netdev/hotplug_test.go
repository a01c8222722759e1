package netdev

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

// roundTrip sends one TX frame and waits for it on the TAP stand-in.
func (r *devRig) roundTrip(t *testing.T, tag byte) {
	t.Helper()
	tx := r.fe.Ring(1).Driver
	if _, err := tx.AddChain([][]byte{make([]byte, 12), frameOf(64, tag)}, nil); err != nil {
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
	added, err := fe.AddMemReg(vhosttest.Layout{GPA: 1 << 32, Size: 8 << 20})
	if err != nil {
		t.Fatalf("ADD_MEM_REG: %v", err)
	}
	r.roundTrip(t, 2)
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
}

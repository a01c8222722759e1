package vhost_test

import (
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

// newPackedHarness is a harness whose device offers VIRTIO_F_RING_PACKED,
// negotiated (the front-end acks it) with a 16 MiB memory table.
func newPackedHarness(t *testing.T) *harness {
	t.Helper()
	dev := vhosttest.NewNullDevice(testFeatures|1<<vhost.FeatRingPacked, testVrings)
	h := newHarnessDev(t, hclog.Debug, dev, dev)
	h.fe.Packed = true
	if err := h.fe.Negotiate(testFeatures|1<<vhost.FeatRingPacked, allProto); err != nil {
		t.Fatal(err)
	}
	if err := h.fe.SetMemTable(vhosttest.Layout{Size: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestPackedRingSpec: with VIRTIO_F_RING_PACKED acked a ring of any size
// 1..32768 is accepted, SET_VRING_ADDR's three addresses are the
// descriptor ring and the two 4-byte event areas, the whole 32-bit
// SET_VRING_BASE value reaches the device (RingSpec.Packed set) and
// GET_VRING_BASE answers the device's 32-bit value.
func TestPackedRingSpec(t *testing.T) {
	h := newPackedHarness(t)
	r, err := h.fe.LayoutRing(0, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Packed == nil {
		t.Fatal("front-end laid out a split ring")
	}
	h.ack(vhost.ReqSetVringNum, vstate(0, 100)) // not a power of two
	h.ack(vhost.ReqSetVringBase, vstate(0, 0x80058005))
	if err := h.fe.SetVringAddr(0); err != nil {
		t.Fatal(err)
	}
	if err := h.fe.SetVringKick(0); err != nil {
		t.Fatal(err)
	}
	h.alive()
	spec, ok := h.state().Running[0]
	if !ok || !spec.Packed || spec.Base != 0x80058005 || spec.Size != 100 {
		t.Fatalf("ring spec %+v (running %v)", spec, ok)
	}
	if spec.Desc != r.PackedConfig.Desc || spec.Avail != r.PackedConfig.Driver || spec.Used != r.PackedConfig.Device {
		t.Fatalf("ring spec addresses %#x %#x %#x, want %+v", spec.Desc, spec.Avail, spec.Used, r.PackedConfig)
	}
	if b, err := h.fe.GetVringBase32(0); err != nil || b != 0x80058005 {
		t.Fatalf("GET_VRING_BASE = %#x, %v", b, err)
	}
}

// TestBadInput75PackedVringBase: a packed ring's SET_VRING_BASE whose avail
// or used index (bits 0-14 of either half) is not below the ring size is
// refused naming num, before anything changes; a split ring's base over 16
// bits still is, and so is a split size that is not a power of two.
func TestBadInput75PackedVringBase(t *testing.T) {
	h := newPackedHarness(t)
	h.ack(vhost.ReqSetVringNum, vstate(1, 100))
	before := h.state()
	for _, base := range []uint32{100, 0x8064, 0x7fff, 0x8000 | 100<<16, 0x80008000 | 0xffff<<16} {
		h.nack(vhost.ReqSetVringBase, vstate(1, base))
		h.unchanged(before)
	}
	h.logged(vhost.ReqSetVringBase, "num")
	h.ack(vhost.ReqSetVringBase, vstate(1, 0x80638063)) // index 99: the last slot
	if b, err := h.fe.GetVringBase32(1); err != nil || b != 0x80638063 {
		t.Fatalf("GET_VRING_BASE of a stopped ring = %#x, %v", b, err)
	}

	// Split: 16 bits, and the size is a power of two.
	s := newHarness(t)
	s.negotiate()
	s.nack(vhost.ReqSetVringBase, vstate(0, 0x10000))
	s.logged(vhost.ReqSetVringBase, "num")
	s.nack(vhost.ReqSetVringNum, vstate(0, 100))
	s.logged(vhost.ReqSetVringNum, "num")
}

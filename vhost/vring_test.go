package vhost_test

// Vring setup: SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE and the inflight fd
// (BAD-INPUTS section C, items 23-26).

import (
	"math"
	"testing"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

func TestBadInput23VringNum(t *testing.T) {
	h := newHarness(t)
	h.start(1)
	before := h.state()
	for _, n := range []uint32{0, 3, 100, 32769, 65536, 1 << 31, math.MaxUint32} {
		h.nack(vhost.ReqSetVringNum, vstate(1, n))
	}
	h.logged(vhost.ReqSetVringNum, "num")
	// A running ring's size cannot change.
	h.nack(vhost.ReqSetVringNum, vstate(0, 128))
	h.unchanged(before)
	for _, n := range []uint32{1, 2, 32768} {
		h.ack(vhost.ReqSetVringNum, vstate(1, n))
	}
}

func TestBadInput24VringAddr(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	// Two regions adjacent in both GPA and user-address space.
	if err := h.fe.SetMemTable(vhosttest.Layout{Size: 1 << 20, UserAddr: 1 << 40}, vhosttest.Layout{GPA: 1 << 20, Size: 1 << 20, UserAddr: 1<<40 + 1<<20}); err != nil {
		t.Fatal(err)
	}
	const n = 256
	h.ack(vhost.ReqSetVringNum, vstate(0, n))
	base := uint64(1 << 40)
	desc, avail, used := base, base+16*n, base+1<<20-4096
	ok := func(d, a, u uint64) []byte { return vhosttest.VringAddr(0, 0, d, u, a, 0) }
	h.ack(vhost.ReqSetVringAddr, ok(desc, avail, used))
	before := h.state()
	end := base + 2<<20
	cases := []struct {
		field   string
		d, a, u uint64
	}{
		{"desc", 0x1000, avail, used},                   // not in any region
		{"desc", base + 1<<20 - 16*n + 16, avail, used}, // crosses into the next region
		{"desc", end - 16*n + 16, avail, used},          // runs past the end
		{"desc", desc + 8, avail, used},                 // misaligned
		{"avail", desc, end - 4, used},
		{"avail", desc, base + 1<<20 - 6, used},
		{"avail", desc, avail + 1, used},
		{"used", desc, avail, end - 6 - 8*n + 8},
		{"used", desc, avail, used + 2},
		{"used", desc, avail, math.MaxUint64 - 8},
	}
	for _, c := range cases {
		h.nack(vhost.ReqSetVringAddr, ok(c.d, c.a, c.u))
	}
	h.logged(vhost.ReqSetVringAddr, "desc")
	h.logged(vhost.ReqSetVringAddr, "avail")
	h.logged(vhost.ReqSetVringAddr, "used")
	h.nack(vhost.ReqSetVringAddr, vhosttest.VringAddr(0, 2, desc, used, avail, 0))
	h.unchanged(before)
	// A ring that fits at 256 but not at 32768: SET_VRING_NUM is refused.
	h.nack(vhost.ReqSetVringNum, vstate(0, 32768))
	// In the second region, it works.
	h.ack(vhost.ReqSetVringAddr, ok(desc+1<<20, avail+1<<20, used+1<<20))
}

func TestBadInput25VringBase(t *testing.T) {
	h := newHarness(t)
	h.start(1)
	before := h.state()
	for _, b := range []uint32{65536, 1 << 31, math.MaxUint32} {
		h.nack(vhost.ReqSetVringBase, vstate(1, b))
	}
	h.logged(vhost.ReqSetVringBase, "num")
	h.nack(vhost.ReqSetVringBase, vstate(0, 5)) // ring 0 runs
	h.logged(vhost.ReqSetVringBase, "index")
	h.unchanged(before)
	h.ack(vhost.ReqSetVringBase, vstate(1, 65535))
}

func TestBadInput26Inflight(t *testing.T) {
	t.Run("SET_INFLIGHT_FD", func(t *testing.T) {
		h := newHarness(t)
		h.start(1)
		if h.fe.OfferedProto&(1<<vhost.ProtoInflightShmfd) != 0 {
			t.Fatal("INFLIGHT_SHMFD offered")
		}
		before := h.state()
		// {mmap_size, mmap_offset, num_queues, queue_size}
		pl := make([]byte, 24)
		copy(pl, u64(1<<20))
		copy(pl[16:], vstate(2, 256)[:4])
		pl[20] = 0
		p := memfdProbe(t, 1<<20)
		h.nack(vhost.ReqSetInflightFd, pl, p.Fd)
		p.closedByPeer()
		h.logged(vhost.ReqSetInflightFd, "protocol_features")
		h.unchanged(before)
	})
	t.Run("GET_INFLIGHT_FD", func(t *testing.T) {
		// No failure answer exists for a request whose reply carries an
		// fd: the connection closes.
		h := newHarness(t)
		h.start(1)
		if err := h.fe.Send(vhost.ReqGetInflightFd, 0, make([]byte, 24)); err != nil {
			t.Fatal(err)
		}
		h.closedClean()
		h.logged(vhost.ReqGetInflightFd, "protocol_features")
	})
}

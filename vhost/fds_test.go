package vhost_test

// File descriptors sent with a message: on a request that takes none, too many, too
// few, replacing an earlier one (BAD-INPUTS section A, items 6-9).

import (
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

func TestBadInput06FdsOnFdlessRequest(t *testing.T) {
	cases := []struct {
		req     vhost.Request
		payload []byte
	}{
		{vhost.ReqSetFeatures, u64(1 << vhost.FeatVersion1)},
		{vhost.ReqSetOwner, nil},
		{vhost.ReqResetOwner, nil},
		{vhost.ReqSetProtocolFeatures, u64(1 << vhost.ProtoReplyAck)},
		{vhost.ReqSetVringNum, vstate(0, 256)},
		{vhost.ReqSetVringBase, vstate(0, 0)},
		{vhost.ReqSetVringEnable, vstate(0, 1)},
		{vhost.ReqSetVringAddr, vhosttest.VringAddr(0, 0, 0, 0, 0, 0)},
		{vhost.ReqNetSetMTU, u64(1500)},
		{vhost.ReqSetStatus, u64(1)},
		{vhost.ReqSendRARP, u64(0)},
		{vhost.ReqRemMemReg, nil}, // takes at most one: tested with two below
	}
	h := newHarness(t)
	h.negotiate()
	for i, c := range cases {
		p := pipeProbe(t)
		before := h.state()
		fds := []int{p.Fd}
		if c.req == vhost.ReqRemMemReg {
			c.payload = vhosttest.MemReg(vhosttest.RegionDesc{Size: 4096})
			fds = append(fds, p.Fd)
		}
		h.nack(c.req, c.payload, fds...)
		p.closedByPeer()
		if i < 8 { // the log is rate-limited to 10 lines a second
			h.logged(c.req, "fds")
		}
		h.unchanged(before)
	}
	t.Run("GET_FEATURES", func(t *testing.T) {
		h := newHarness(t)
		p := pipeProbe(t)
		if err := h.fe.Send(vhost.ReqGetFeatures, 0, nil, p.Fd); err != nil {
			t.Fatal(err)
		}
		h.closedClean()
		p.closedByPeer()
		h.logged(vhost.ReqGetFeatures, "fds")
	})
}

func TestBadInput07TooManyFds(t *testing.T) {
	h := newHarnessLevel(t, 0)
	h.start(2)
	for _, n := range []int{2, 9, 17, 64, 253} {
		p := pipeProbe(t)
		before := h.state()
		fds := make([]int, n)
		for i := range fds {
			fds[i] = p.Fd
		}
		// A kick for a running ring would restart it: with 2+ fds it must
		// change nothing.
		h.nack(vhost.ReqSetVringKick, u64(0), fds...)
		p.closedByPeer()
		h.unchanged(before)
		m := memfdProbe(t, 1<<20)
		mfds := make([]int, n)
		for i := range mfds {
			mfds[i] = m.Fd
		}
		h.nack(vhost.ReqSetMemTable, vhosttest.MemTable(vhosttest.RegionDesc{GPA: 1 << 30, Size: 1 << 20, UserAddr: 1 << 40}), mfds...)
		m.closedByPeer()
		h.unchanged(before)
	}
	h.logged(vhost.ReqSetVringKick, "fds")
	h.logged(vhost.ReqSetMemTable, "fds")

	// The loop: 100 000 messages with 9 fds each (17 every other time,
	// which truncates the control message) keep the fd count flat.
	count := 100000
	if testing.Short() || testutil.Race {
		count = 5000
	}
	p := pipeProbe(t)
	nine := make([]int, 9)
	seventeen := make([]int, 17)
	for i := range seventeen {
		seventeen[i] = p.Fd
	}
	copy(nine, seventeen)
	start := privtest.OpenFds()
	before := h.state()
	t0 := time.Now()
	for i := 0; i < count; i++ {
		fds := nine
		if i%2 == 1 {
			fds = seventeen
		}
		if err := h.fe.Send(vhost.ReqSetVringCall, 0, u64(1), fds...); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i%1000 == 999 {
			h.alive()
			if n := privtest.OpenFds(); n > start+2 {
				t.Fatalf("after %d messages: %d fds open, %d at the start", i+1, n, start)
			}
		}
	}
	h.alive()
	if n := privtest.OpenFds(); n != start {
		t.Fatalf("after %d messages: %d fds open, %d at the start", count, n, start)
	}
	p.closedByPeer()
	h.unchanged(before)
	t.Logf("%d messages with too many fds in %v", count, time.Since(t0))
}

func TestBadInput08TooFewFds(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	for _, req := range []vhost.Request{vhost.ReqSetVringKick, vhost.ReqSetVringCall, vhost.ReqSetVringErr} {
		before := h.state()
		h.nack(req, u64(0)) // no fd, and bit 8 (no fd) clear
		h.logged(req, "fds")
		h.unchanged(before)
	}
	// The no-fd bit with an fd is the same fault the other way round.
	p := pipeProbe(t)
	h.nack(vhost.ReqSetVringCall, u64(1<<8), p.Fd)
	p.closedByPeer()

	before := h.state()
	h.nack(vhost.ReqAddMemReg, vhosttest.MemReg(vhosttest.RegionDesc{Size: 1 << 20, UserAddr: 1 << 40}))
	h.logged(vhost.ReqAddMemReg, "fds")
	m := memfdProbe(t, 1<<20)
	h.nack(vhost.ReqAddMemReg, vhosttest.MemReg(vhosttest.RegionDesc{Size: 1 << 20, UserAddr: 1 << 40}), m.Fd, m.Fd)
	m.closedByPeer()
	h.unchanged(before)
	h.alive()
}

func TestBadInput09ReplaceFd(t *testing.T) {
	h := newHarness(t)
	h.start(2)
	for _, req := range []vhost.Request{vhost.ReqSetVringCall, vhost.ReqSetVringErr, vhost.ReqSetVringKick} {
		a, b := eventfdProbe(t), eventfdProbe(t)
		h.ack(req, u64(1), a.Fd)
		a.keptByPeer()
		h.ack(req, u64(1), b.Fd)
		a.closedByPeer() // replaced: closed first
		b.keptByPeer()
		if req == vhost.ReqSetVringKick {
			// A no-fd kick is refused (TestBadInput57); stopping the
			// ring releases the kick.
			if _, err := h.fe.GetVringBase(1); err != nil {
				t.Fatal(err)
			}
			b.closedByPeer()
			continue
		}
		// And the no-fd form releases it too.
		h.ack(req, u64(1|1<<8))
		b.closedByPeer()
	}
	st := h.state()
	if r, ok := st.Running[1]; ok {
		t.Fatalf("ring 1 runs after GET_VRING_BASE: %+v", r)
	}
	// Repeated SET_VRING_NUM and SET_VRING_CALL do not grow fds (the first
	// call creates the front-end's own eventfds for ring 2).
	if err := h.fe.SetVringCall(2); err != nil {
		t.Fatal(err)
	}
	h.alive()
	start := privtest.OpenFds()
	for i := 0; i < 1000; i++ {
		if err := h.fe.SetVringNum(2, 256); err != nil {
			t.Fatal(err)
		}
		if err := h.fe.SetVringCall(2); err != nil {
			t.Fatal(err)
		}
	}
	h.alive()
	if n := privtest.OpenFds(); n != start {
		t.Fatalf("fds: %d before, %d after 1000 replacements", start, n)
	}
}

package vhost_test

// Socket and message framing (BAD-INPUTS section A, items 1-13). See
// BAD-INPUTS.md in this directory for the item -> test table.

import (
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

func TestBadInput01ShortHeader(t *testing.T) {
	t.Run("header", func(t *testing.T) {
		h := newHarness(t)
		p := pipeProbe(t)
		before := h.state()
		if err := h.fe.SendBytes([]byte{1, 0, 0, 0, 1}, []int{p.Fd}); err != nil {
			t.Fatal(err)
		}
		h.fe.Conn().CloseWrite()
		h.closedClean()
		p.closedByPeer()
		h.logged(0, "header")
		_ = before
	})
	t.Run("payload", func(t *testing.T) {
		h := newHarness(t)
		p := pipeProbe(t)
		before := h.state()
		hdr := vhosttest.Header{Req: uint32(vhost.ReqSetFeatures), Flags: 1, Size: 8}
		if err := h.fe.SendRaw(hdr, []byte{1, 2, 3}, []int{p.Fd}); err != nil {
			t.Fatal(err)
		}
		h.fe.Conn().CloseWrite()
		h.closedClean()
		p.closedByPeer()
		h.logged(vhost.ReqSetFeatures, "payload")
		_ = before
	})
}

func TestBadInput02OversizedPayload(t *testing.T) {
	for _, size := range []uint32{0x1001, 1 << 20, 0xffffffff} {
		h := newHarness(t)
		p := pipeProbe(t)
		before := h.state()
		// Only the header is sent: a server that allocated or waited for
		// size bytes would hang here instead of closing.
		hdr := vhosttest.Header{Req: uint32(vhost.ReqSetMemTable), Flags: 1, Size: size}
		if err := h.fe.SendRaw(hdr, nil, []int{p.Fd}); err != nil {
			t.Fatal(err)
		}
		h.closedClean()
		p.closedByPeer()
		h.logged(vhost.ReqSetMemTable, "size")
		_ = before
	}
}

func TestBadInput03WrongSize(t *testing.T) {
	cases := []struct {
		req  vhost.Request
		size int
	}{
		{vhost.ReqSetFeatures, 4},
		{vhost.ReqSetFeatures, 16},
		{vhost.ReqSetOwner, 8},
		{vhost.ReqSetVringNum, 12},
		{vhost.ReqSetVringBase, 4},
		{vhost.ReqSetVringAddr, 32},
		{vhost.ReqSetVringAddr, 48},
		{vhost.ReqSetVringCall, 4},
		{vhost.ReqSetVringEnable, 16},
		{vhost.ReqSetProtocolFeatures, 0},
		{vhost.ReqSetStatus, 1},
		// One region declared, but the 264-byte maximum sent (and the
		// reverse): SET_MEM_TABLE is 8 + 32·n exactly.
		{vhost.ReqSetMemTable, 264},
		{vhost.ReqSetMemTable, 39},
		{vhost.ReqSetMemTable, 4},
	}
	for _, c := range cases {
		t.Run(c.req.String(), func(t *testing.T) {
			h := newHarness(t)
			h.negotiate()
			before := h.state()
			payload := make([]byte, c.size)
			var fds []int
			if c.req == vhost.ReqSetMemTable && c.size >= 8 {
				payload[0] = 1 // nregions
				p := memfdProbe(t, 1<<20)
				fds = []int{p.Fd}
				defer p.closedByPeer()
			}
			h.nack(c.req, payload, fds...)
			h.logged(c.req, "size")
			h.unchanged(before)
			h.alive()
		})
	}
	t.Run("GET_FEATURES", func(t *testing.T) {
		// A GET_* request has no failure answer: the connection closes.
		h := newHarness(t)
		before := h.state()
		if err := h.fe.Send(vhost.ReqGetFeatures, 0, u64(0)); err != nil {
			t.Fatal(err)
		}
		h.closedClean()
		h.logged(vhost.ReqGetFeatures, "size")
		_ = before
	})
}

// TestBadInput03SizeFromHeader: a header that declares the wrong size for a
// fixed-size request is refused from the header alone: the answer comes
// before any payload byte is sent, and the declared bytes are then skipped
// so the session goes on.
func TestBadInput03SizeFromHeader(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	before := h.state()
	hdr := vhosttest.Header{Req: uint32(vhost.ReqSetVringNum), Flags: vhosttest.FlagVersion | vhosttest.FlagNeedReply, Size: 64}
	if err := h.fe.SendRaw(hdr, nil, nil); err != nil {
		t.Fatal(err)
	}
	r, err := h.fe.ReadReply()
	if err != nil {
		t.Fatalf("no answer before the payload: %v", err)
	}
	if v, err := r.U64(); err != nil || r.Req != vhost.ReqSetVringNum || v == 0 {
		t.Fatalf("answer %v %x, %v; want a failure REPLY_ACK for SET_VRING_NUM", r.Req, r.Payload, err)
	}
	h.logged(vhost.ReqSetVringNum, "size")
	// The 64 declared bytes follow, with an fd that is closed as well;
	// the next message is read where it starts.
	q := pipeProbe(t)
	if err := h.fe.SendBytes(make([]byte, 64), []int{q.Fd}); err != nil {
		t.Fatal(err)
	}
	h.alive()
	q.closedByPeer()
	h.unchanged(before)

	t.Run("GET_VRING_BASE", func(t *testing.T) {
		// A request with a reply of its own closes without waiting for
		// the payload.
		h := newHarness(t)
		h.negotiate()
		hdr := vhosttest.Header{Req: uint32(vhost.ReqGetVringBase), Flags: vhosttest.FlagVersion, Size: 64}
		if err := h.fe.SendRaw(hdr, nil, nil); err != nil {
			t.Fatal(err)
		}
		h.closedClean()
		h.logged(vhost.ReqGetVringBase, "size")
	})
}

func TestBadInput04Flags(t *testing.T) {
	for _, flags := range []uint32{0, 2, 3, 1 | vhost.FlagReply, 1 | 1<<4, 1 | 1<<31, 1 | vhost.FlagNeedReply | 1<<8} {
		h := newHarness(t)
		h.negotiate()
		p := pipeProbe(t)
		before := h.state()
		hdr := vhosttest.Header{Req: uint32(vhost.ReqSetFeatures), Flags: flags, Size: 8}
		if err := h.fe.SendRaw(hdr, u64(0), []int{p.Fd}); err != nil {
			t.Fatal(err)
		}
		h.closedClean()
		p.closedByPeer()
		h.logged(vhost.ReqSetFeatures, "flags")
		_ = before
	}
}

func TestBadInput05UnknownRequest(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	for _, code := range []uint32{0, 44, 1000, 1 << 31, 0xffffffff} {
		p := pipeProbe(t)
		before := h.state()
		h.nack(vhost.Request(code), []byte{1, 2, 3, 4, 5}, p.Fd)
		p.closedByPeer()
		h.logged(vhost.Request(code), "request")
		h.unchanged(before)
	}
	// Without NEED_REPLY the message is dropped silently and the session
	// goes on.
	if err := h.fe.Send(vhost.Request(99), 0, nil); err != nil {
		t.Fatal(err)
	}
	h.alive()
}

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
		a, b := pipeProbe(t), pipeProbe(t)
		h.ack(req, u64(1), a.Fd)
		a.keptByPeer()
		h.ack(req, u64(1), b.Fd)
		a.closedByPeer() // replaced: closed first
		b.keptByPeer()
		// And the polling / no-fd form releases it too.
		h.ack(req, u64(1|1<<8))
		b.closedByPeer()
	}
	st := h.state()
	if r, ok := st.Running[1]; !ok || r.Kick != -1 {
		t.Fatalf("ring 1 after a no-fd kick: %+v (running %v)", r, ok)
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

func TestBadInput10VringIndex(t *testing.T) {
	h := newHarness(t)
	h.start(1)
	before := h.state()
	for _, idx := range []uint32{testVrings, 255, 256, 0x10000, 0x80000000, 0xffffffff} {
		h.nack(vhost.ReqSetVringNum, vstate(idx, 256))
		h.nack(vhost.ReqSetVringBase, vstate(idx, 0))
		h.nack(vhost.ReqSetVringEnable, vstate(idx, 1))
		h.nack(vhost.ReqSetVringAddr, vhosttest.VringAddr(idx, 0, 0, 0, 0, 0))
	}
	h.logged(vhost.ReqSetVringNum, "index")
	// KICK/CALL/ERR: the index is bits 0-7 of a u64; anything above bit 8
	// is refused whole, not masked away.
	for _, u := range []uint64{testVrings, 0xff, 0x100 | testVrings, 0x200, 1 << 32, 1<<63 | 0} {
		for _, req := range []vhost.Request{vhost.ReqSetVringKick, vhost.ReqSetVringCall, vhost.ReqSetVringErr} {
			p := pipeProbe(t)
			var fds []int
			if u&0x100 == 0 {
				fds = []int{p.Fd}
			}
			h.nack(req, u64(u), fds...)
			p.closedByPeer()
		}
	}
	h.unchanged(before)
	t.Run("GET_VRING_BASE", func(t *testing.T) {
		// GET_VRING_BASE has no failure answer: the connection closes.
		h := newHarness(t)
		h.start(1)
		if err := h.fe.Send(vhost.ReqGetVringBase, 0, vstate(0x100, 0)); err != nil {
			t.Fatal(err)
		}
		h.closedClean()
		h.logged(vhost.ReqGetVringBase, "index")
	})
}

func TestBadInput11Prerequisites(t *testing.T) {
	t.Run("protocol features before GET_FEATURES", func(t *testing.T) {
		h := newHarness(t)
		h.nack(vhost.ReqSetProtocolFeatures, u64(1<<vhost.ProtoReplyAck))
		h.logged(vhost.ReqSetProtocolFeatures, "features")
		h.nack(vhost.ReqSetVringEnable, vstate(0, 1))
		h.logged(vhost.ReqSetVringEnable, "protocol_features")
		if err := h.fe.Send(vhost.ReqGetProtocolFeatures, 0, nil); err != nil {
			t.Fatal(err)
		}
		h.closedClean()
		h.logged(vhost.ReqGetProtocolFeatures, "features")
	})
	t.Run("ring before memory", func(t *testing.T) {
		h := newHarness(t)
		h.negotiate()
		before := h.state()
		h.ack(vhost.ReqSetVringNum, vstate(0, 256))
		h.nack(vhost.ReqSetVringAddr, vhosttest.VringAddr(0, 0, 0x1000, 0x3000, 0x2000, 0))
		h.logged(vhost.ReqSetVringAddr, "memory")
		p := pipeProbe(t)
		h.nack(vhost.ReqSetVringKick, u64(0), p.Fd)
		p.closedByPeer()
		h.logged(vhost.ReqSetVringKick, "memory")
		h.unchanged(before)
	})
	t.Run("kick before addr and num", func(t *testing.T) {
		h := newHarness(t)
		h.negotiate()
		if err := h.fe.SetMemTable(vhosttest.Layout{Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		before := h.state()
		h.nack(vhost.ReqSetVringKick, u64(1|1<<8))
		h.logged(vhost.ReqSetVringKick, "num")
		h.nack(vhost.ReqSetVringAddr, vhosttest.VringAddr(1, 0, 0, 0, 0, 0))
		h.logged(vhost.ReqSetVringAddr, "num")
		h.ack(vhost.ReqSetVringNum, vstate(1, 256))
		h.nack(vhost.ReqSetVringKick, u64(1|1<<8))
		h.logged(vhost.ReqSetVringKick, "addr")
		h.unchanged(before)
	})
	t.Run("kick before SET_FEATURES", func(t *testing.T) {
		h := newHarness(t)
		if _, err := h.fe.GetU64(vhost.ReqGetFeatures); err != nil {
			t.Fatal(err)
		}
		h.ack(vhost.ReqSetProtocolFeatures, u64(1<<vhost.ProtoReplyAck))
		if err := h.fe.SetMemTable(vhosttest.Layout{Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		r, err := h.fe.LayoutRing(0, 64, false)
		if err != nil {
			t.Fatal(err)
		}
		h.ack(vhost.ReqSetVringNum, vstate(0, 64))
		h.ack(vhost.ReqSetVringAddr, vhosttest.VringAddr(0, 0, r.DescVA, r.UsedVA, r.AvailVA, 0))
		h.nack(vhost.ReqSetVringKick, u64(0), r.Kick)
		h.logged(vhost.ReqSetVringKick, "features")
		if len(h.state().Running) != 0 {
			t.Fatal("ring started")
		}
	})
	t.Run("GET_QUEUE_NUM without MQ", func(t *testing.T) {
		h := newHarness(t)
		if err := h.fe.Negotiate(testFeatures, 1<<vhost.ProtoReplyAck); err != nil {
			t.Fatal(err)
		}
		if err := h.fe.Send(vhost.ReqGetQueueNum, 0, nil); err != nil {
			t.Fatal(err)
		}
		h.closedClean()
		h.logged(vhost.ReqGetQueueNum, "protocol_features")
	})
	t.Run("queue beyond GET_QUEUE_NUM", func(t *testing.T) {
		h := newHarness(t)
		h.negotiate()
		q, err := h.fe.GetU64(vhost.ReqGetQueueNum)
		if err != nil {
			t.Fatal(err)
		}
		h.ack(vhost.ReqSetVringNum, vstate(uint32(2*q-1), 256))
		h.nack(vhost.ReqSetVringNum, vstate(uint32(2*q), 256))
		h.logged(vhost.ReqSetVringNum, "index")
	})
}

func TestBadInput12UnofferedFeatures(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	before := h.state()
	for _, b := range []uint{vhost.FeatRingPacked, vhost.FeatLogAll, vhost.FeatIOMMUPlatform, 63} {
		h.nack(vhost.ReqSetFeatures, u64(h.fe.Features|1<<b))
		h.unchanged(before)
	}
	h.logged(vhost.ReqSetFeatures, "features")
	h.nack(vhost.ReqSetProtocolFeatures, u64(h.fe.Proto|1<<vhost.ProtoBackendReq))
	h.logged(vhost.ReqSetProtocolFeatures, "protocol_features")
	h.nack(vhost.ReqSetProtocolFeatures, u64(h.fe.Proto|1<<vhost.ProtoLogShmfd))
	h.unchanged(before)
	// The accepted set is still in force.
	if got := h.state().Acked; got != h.fe.Features&^(1<<vhost.FeatProtocolFeatures) {
		t.Fatalf("acked %#x", got)
	}
}

func TestBadInput13InbandNotifications(t *testing.T) {
	t.Run("without BACKEND_REQ and REPLY_ACK closes", func(t *testing.T) {
		for _, p := range []uint64{1 << vhost.ProtoInbandNotification,
			1<<vhost.ProtoInbandNotification | 1<<vhost.ProtoReplyAck,
			1<<vhost.ProtoInbandNotification | 1<<vhost.ProtoBackendReq} {
			h := newHarness(t)
			if _, err := h.fe.GetU64(vhost.ReqGetFeatures); err != nil {
				t.Fatal(err)
			}
			if err := h.fe.Send(vhost.ReqSetProtocolFeatures, 0, u64(p)); err != nil {
				t.Fatal(err)
			}
			h.closedClean()
			if !h.logs.hasLine("closing connection", "request=SET_PROTOCOL_FEATURES", "INBAND") {
				t.Fatalf("log:\n%s", h.logs.String())
			}
		}
	})
	t.Run("with them: not offered", func(t *testing.T) {
		h := newHarness(t)
		h.negotiate()
		if h.fe.OfferedProto&(1<<vhost.ProtoInbandNotification) != 0 {
			t.Fatal("INBAND_NOTIFICATIONS offered")
		}
		before := h.state()
		h.nack(vhost.ReqSetProtocolFeatures, u64(1<<vhost.ProtoInbandNotification|1<<vhost.ProtoBackendReq|1<<vhost.ProtoReplyAck))
		h.logged(vhost.ReqSetProtocolFeatures, "protocol_features")
		p := pipeProbe(t)
		h.nack(vhost.ReqVringKick, vstate(0, 0), p.Fd)
		p.closedByPeer()
		h.logged(vhost.ReqVringKick, "protocol_features")
		h.unchanged(before)
	})
}

// TestBadInput03Config covers GET_CONFIG / SET_CONFIG, whose size is
// 12 + the size field: a refused GET_CONFIG is answered with an empty
// payload (vhost-user.rst), a refused SET_CONFIG with a failure REPLY_ACK.
func TestBadInput03Config(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	if h.fe.Proto&(1<<vhost.ProtoConfig) == 0 {
		t.Fatal("CONFIG not negotiated")
	}
	r, err := h.fe.Call(vhost.ReqGetConfig, 0, configMsg(0, 8))
	if err != nil || len(r.Payload) != 20 {
		t.Fatalf("GET_CONFIG: %x, %v", r.Payload, err)
	}
	before := h.state()
	for i, c := range []struct {
		payload []byte
		field   string
	}{
		{configMsg(20, 8), "offset"},         // beyond the 24-byte config space
		{configMsg(0, 300)[:12], "size"},     // size field over 256
		{configMsg(0, 8)[:16], "size"},       // payload ≠ 12 + size
		{configMsg(0, 4)[:8], "size"},        // shorter than the header
		{append(configMsg(0, 4), 0), "size"}, // one byte too many
		{configFlags(configMsg(0, 4), 2), "flags"},
	} {
		p := pipeProbe(t)
		r, err := h.fe.Call(vhost.ReqGetConfig, 0, c.payload, p.Fd)
		if err != nil || len(r.Payload) != 0 {
			t.Fatalf("case %d: GET_CONFIG with an fd: %x, %v; want an empty payload", i, r.Payload, err)
		}
		p.closedByPeer()
		r, err = h.fe.Call(vhost.ReqGetConfig, 0, c.payload)
		if err != nil || len(r.Payload) != 0 {
			t.Fatalf("case %d: GET_CONFIG: %x, %v; want an empty payload", i, r.Payload, err)
		}
		if i < 3 {
			h.logged(vhost.ReqGetConfig, c.field)
		}
		h.nack(vhost.ReqSetConfig, c.payload)
	}
	// The NullDevice's config space is read-only for the driver.
	h.nack(vhost.ReqSetConfig, configMsg(0, 4))
	h.unchanged(before)
	h.alive()
}

func configFlags(b []byte, flags uint32) []byte {
	copy(b[8:], u64(uint64(flags))[:4])
	return b
}

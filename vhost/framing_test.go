package vhost_test

// Message framing: the header, the payload size, the flags and the request code
// (BAD-INPUTS section A, items 1-5). BAD-INPUTS.md in this directory maps items to
// tests.

import (
	"testing"

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

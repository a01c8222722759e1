package vhost_test

// Which requests are taken when: vring indices, prerequisites, features never offered
// and the requests that need them (BAD-INPUTS section A, items 10-13, and 6 for the
// unoffered requests' fds).

import (
	"testing"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

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

// TestUnofferedRequests sends every request for a feature vhostd does not
// offer, each with an fd: it is refused (a failure REPLY_ACK, or the
// connection closed for requests whose reply has no failure form) and the
// fd is closed.
func TestUnofferedRequests(t *testing.T) {
	h := newHarness(t)
	h.start(1)
	before := h.state()
	for _, req := range []vhost.Request{vhost.ReqSetBackendReqFd, vhost.ReqSetLogFd, vhost.ReqSetLogBase,
		vhost.ReqSetVringEndian, vhost.ReqPostcopyListen, vhost.ReqCloseCryptoSession, vhost.ReqGPUSetSocket,
		vhost.ReqIOTLBMsg, vhost.ReqSetInflightFd, vhost.ReqVringKick, vhost.ReqSetDeviceStateFd, vhost.ReqCheckDeviceState} {
		p := pipeProbe(t)
		h.nack(req, make([]byte, 8), p.Fd)
		p.closedByPeer()
		h.unchanged(before)
	}
	for _, req := range []vhost.Request{vhost.ReqPostcopyAdvise, vhost.ReqPostcopyEnd, vhost.ReqCreateCryptoSession,
		vhost.ReqGetSharedObject, vhost.ReqGetInflightFd} {
		t.Run(req.String(), func(t *testing.T) {
			h := newHarness(t)
			h.start(1)
			p := pipeProbe(t)
			if err := h.fe.Send(req, vhosttest.FlagNeedReply, make([]byte, 8), p.Fd); err != nil {
				t.Fatal(err)
			}
			h.closedClean()
			p.closedByPeer()
		})
	}
}

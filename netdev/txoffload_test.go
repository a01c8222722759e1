package netdev

import (
	"bytes"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
	"golang.org/x/sys/unix"
)

// offloadCases are valid TX headers asking for each offload, with the
// features that must have been acked for each to reach the TAP.
var offloadCases = []struct {
	name  string
	hdr   tap.VnetHdr
	size  int
	needs []uint
}{
	{"csum", tap.VnetHdr{Flags: tap.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}, 100, []uint{FCsum}},
	{"tso4", gsoHdr(tap.VirtioNetHdrGSOTCPv4), 3000, []uint{FCsum, FHostTSO4}},
	{"tso6", gsoHdr(tap.VirtioNetHdrGSOTCPv6), 3000, []uint{FCsum, FHostTSO6}},
	{"tso4+ecn", gsoHdr(tap.VirtioNetHdrGSOTCPv4 | tap.VirtioNetHdrGSOECN), 3000, []uint{FCsum, FHostTSO4, FHostECN}},
	{"ufo", gsoHdr(tap.VirtioNetHdrGSOUDP), 3000, []uint{FCsum, FHostUFO}},
	{"uso", gsoHdr(tap.VirtioNetHdrGSOUDPL4), 3000, []uint{FCsum, FHostUSO}},
}

func gsoHdr(gso uint8) tap.VnetHdr {
	return tap.VnetHdr{Flags: tap.VirtioNetHdrFNeedsCsum, GSOType: gso, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
}

// TestBadInput65TXOffloadNotNegotiated: a valid TX header asking for an
// offload (checksum, TSO4/6, ECN, UFO, USO) reaches the TAP only if the
// guest acked every feature the request needs; without one of them the
// frame is dropped, returned, and counted tx_offload_refused (before, the
// TAP acted on it whatever was negotiated).
func TestBadInput65TXOffloadNotNegotiated(t *testing.T) {
	for _, tc := range offloadCases {
		var all uint64
		for _, f := range tc.needs {
			all |= bit(f)
		}
		t.Run(tc.name, func(t *testing.T) {
			frame := append(hdrBytes(tc.hdr), testutil.PatternFrame(tc.size, 5)...)
			send := func(acked uint64) (*rig, bool) {
				r := newRig(t, 64, 4096, false)
				tx := newTxPath()
				tx.reset(r.q, maxGSOFrame)
				tx.offloads = txOffloads(acked)
				if _, err := r.drv.AddChain([][]byte{frame}, nil); err != nil {
					t.Fatal(err)
				}
				r.drv.Publish()
				r.runTX(tx)
				if cs := r.drv.UsedAll(); len(cs) != 1 {
					t.Fatalf("%d chains returned, want 1", len(cs))
				}
				return r, waitReadable(r.peer, 0)
			}
			if r, ok := send(all); !ok || !bytes.Equal(r.recv(), frame) || r.c.local[cTxOffloadRefused] != 0 {
				t.Fatalf("acked %s: the frame did not reach the TAP intact (tx_offload_refused %d)",
					FeatureString(all), r.c.local[cTxOffloadRefused])
			}
			for _, f := range tc.needs {
				acked := all &^ bit(f)
				r, ok := send(acked)
				if ok {
					t.Fatalf("acked %s (no %s): the frame reached the TAP", FeatureString(acked), FeatureString(bit(f)))
				}
				if n := r.c.local[cTxOffloadRefused]; n != 1 {
					t.Fatalf("acked %s: tx_offload_refused %d, want 1", FeatureString(acked), n)
				}
			}
		})
	}
}

// TestBadInput65DeviceTSO: through the device, a guest that did not ack
// HOST_TSO4 has its TSO4 frame dropped and counted while its TSO6 frame
// (HOST_TSO6 acked) goes to the TAP.
func TestBadInput65DeviceTSO(t *testing.T) {
	r := startDevice(t, Config{QueuePairs: 1}, allFeatures()&^bit(FHostTSO4))
	tx := r.fe.Ring(1).Driver
	for _, gso := range []uint8{tap.VirtioNetHdrGSOTCPv4, tap.VirtioNetHdrGSOTCPv6} {
		if _, err := tx.AddChain([][]byte{hdrBytes(gsoHdr(gso)), testutil.PatternFrame(1400, gso)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tx.Publish()
	r.fe.Kick(1)
	r.waitTXReturned(t, 2)
	got := r.host.peerRead(t, 0, 5*time.Second)
	var h tap.VnetHdr
	h.Unmarshal((*[tap.VnetHdrLen]byte)(got))
	if h.GSOType != tap.VirtioNetHdrGSOTCPv6 {
		t.Fatalf("the TAP got gso_type %d, want TCPV6 only", h.GSOType)
	}
	if _, err := unix.Read(r.host.peers[0], make([]byte, 10)); err != unix.EAGAIN {
		t.Fatalf("a second frame reached the TAP (read: %v)", err)
	}
	if st := r.dev.Stats()[0].Values; st["tx_offload_refused"] != 1 || st["tx_packets"] != 1 {
		t.Fatalf("tx_offload_refused %d tx_packets %d, want 1 and 1", st["tx_offload_refused"], st["tx_packets"])
	}
}

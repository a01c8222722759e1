package netdev

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/tap"

	"github.com/vhostd/vhostd/vhost/vhosttest"
	"github.com/vhostd/vhostd/virtqueue"
)

// TestDirtyLogCoversEveryWrite: with dirty logging on (live migration),
// every byte of guest memory the device changes lies in a page the log
// marks: RX frames and their headers, used elements and indexes, used
// flags and avail_event, through polls, sleeps, spills and stops. Guest
// and device take turns: the auditor snapshots memory once the guest has
// posted, only the device runs, then the changes are checked against the
// log. Removing any one of the marks fails it.
func TestDirtyLogCoversEveryWrite(t *testing.T) {
	for _, mrg := range []bool{false, true} {
		for _, ev := range []bool{false, true} {
			for _, packed := range []bool{false, true} {
				cfg := modelConfig{size: 256, mrg: mrg, eventIdx: ev, packed: packed, inOrder: mrg && ev}
				t.Run(cfg.String(), func(t *testing.T) { auditDirtyLog(t, cfg) })
			}
		}
	}
}

func auditDirtyLog(t *testing.T, cfg modelConfig) {
	var fails []string
	m := newModel(t, cfg, func(f string, a ...any) { fails = append(fails, f) })
	m.rnd = newModelRand(11)
	bits := make([]byte, (testBase+uint64(len(m.buf)))/virtqueue.LogPage/8+1)
	m.life.dev.SetDirtyLog(virtqueue.NewDirtyLog(bits))
	m.logUsed = true
	for _, g := range m.rings {
		_, _, _, used := g.drv.area()
		m.life.dev.SetRingLog(g.role, true, used)
	}
	aud := vhosttest.NewLogAuditor(m.buf, testBase)
	total := 0
	for round := 0; round < 30; round++ {
		m.postRX(int(cfg.size))
		m.postTX(48)
		m.hostSend(16)
		clear(bits)
		aud.Snapshot()
		for i := 0; i < 6; i++ {
			m.poll()
			m.sleep()
		}
		if round%6 == 5 {
			// GET_VRING_BASE: what settle returns is logged too.
			for role := range m.rings {
				m.life.dev.StopRing(role)
				m.startRing(role, m.rings[role].drv.Base())
			}
		}
		changed, err := aud.Check(bits)
		if err != nil {
			t.Fatalf("round %d: %v (%d bytes changed)", round, err, changed)
		}
		total += changed
		m.reap(rxRing)
		m.reap(txRing)
		m.hostDrain()
	}
	if total < 10000 {
		t.Fatalf("the device changed only %d bytes of guest memory in 30 rounds: the audit saw too little", total)
	}
	m.life.dev.SetDirtyLog(nil)
	m.finish()
	if len(fails) > 0 {
		t.Fatalf("ring model: %v", fails)
	}
}

// TestSendRARPAnnounces: SEND_RARP puts one broadcast RARP from the guest's
// MAC into the host interface (switches learn the new port after a
// migration); a second one within 100 ms is dropped, not sent.
func TestSendRARPAnnounces(t *testing.T) {
	host := newFakeHost(t, 1)
	dev, err := newDevice(Config{QueuePairs: 1, TAP: "fake"}, hclog.NewNullLogger(), keptHost{host})
	if err != nil {
		t.Fatal(err)
	}
	mac := [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	if err := dev.SendRARP(mac); err != nil {
		t.Fatal(err)
	}
	f := host.peerRead(t, 0, time.Second)[tap.VnetHdrLen:]
	if len(f) != 60 || !bytes.Equal(f[:6], []byte{255, 255, 255, 255, 255, 255}) || !bytes.Equal(f[6:12], mac[:]) ||
		binary.BigEndian.Uint16(f[12:]) != 0x8035 || binary.BigEndian.Uint16(f[20:]) != 3 ||
		!bytes.Equal(f[22:28], mac[:]) || !bytes.Equal(f[32:38], mac[:]) {
		t.Fatalf("announcement: % x", f)
	}
	if err := dev.SendRARP(mac); err != nil {
		t.Fatal(err)
	}
	if waitReadable(host.peers[0], 50*time.Millisecond) {
		t.Fatal("a second SEND_RARP within 100 ms was sent too")
	}
	time.Sleep(rarpEvery)
	if err := dev.SendRARP(mac); err != nil {
		t.Fatal(err)
	}
	host.peerRead(t, 0, time.Second)
}

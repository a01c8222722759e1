package xdptap

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestGuardCapture: with a capture open, each frame the guard drops is reported with its
// rule, its length and its first GuardSnap bytes; a frame it passes is not; with the
// capture closed nothing is reported and Read ends.
func TestGuardCapture(t *testing.T) {
	d, _ := newTAP(t, 1)
	a := attach(t, d.Ifindex(), Config{Mode: ModeGuard, Guard: guestGuard()})
	udp := layers.IPProtocolUDP
	spoofed := ipFrame(t, otherMAC, guestIP4, "10.9.0.1", udp, 4000, 53)
	big := append(ipFrame(t, guestMAC, "10.9.0.3", "10.9.0.1", udp, 4000, 53), make([]byte, 400)...)
	// Off: a drop is not reported (the reader opened later sees nothing of it).
	write(t, d.Queue(0), spoofed)
	c, err := a.StartCapture()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan GuardDrop, 8)
	done := make(chan error, 1)
	go func() {
		for {
			g, err := c.Read()
			if err != nil {
				done <- err
				return
			}
			got <- g
		}
	}()
	write(t, d.Queue(0), ipFrame(t, guestMAC, guestIP4, "10.9.0.1", udp, 4000, 53), spoofed, big)
	for _, want := range []GuardDrop{{Rule: "src_mac", Len: len(spoofed), Data: spoofed}, {Rule: "src_ipv4", Len: len(big), Data: big[:GuardSnap]}} {
		select {
		case g := <-got:
			if g.Rule != want.Rule || g.Len != want.Len || !bytes.Equal(g.Data, want.Data) {
				t.Errorf("reported %s len %d data %d bytes, want %s len %d, %d bytes", g.Rule, g.Len, len(g.Data), want.Rule, want.Len, len(want.Data))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no report of the frame dropped by %s", want.Rule)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not end at Close")
	}
	if len(got) != 0 {
		t.Errorf("%d more reports: the passed frame or the one before the capture", len(got))
	}
	// Closed: drops are counted, not reported (the flag is off).
	var on uint32
	if err := a.Map(xdpMapGuardCapture).Lookup(uint32(0), &on); err != nil || on != 0 {
		t.Errorf("capture flag after Close: %d, %v", on, err)
	}
}

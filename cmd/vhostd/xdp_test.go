package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/netdev"
	"github.com/vhostd/vhostd/tap"
)

// xdpOn reports whether interface name in ns has an XDP program attached.
func xdpOn(t *testing.T, ns, name string) bool {
	t.Helper()
	out, err := privtest.TryIP(ns, "link", "show", "dev", name)
	if err != nil {
		t.Fatalf("ip link show %s: %v: %s", name, err, out)
	}
	return bytes.Contains(out, []byte("xdp"))
}

// TestXDPReattach: when the host interface comes back under a new ifindex
// (netdev calls the hook registered with OnReattach), the program leaves
// the old attachment and is attached to the new interface, and its
// counters and close keep working (BAD-INPUTS 51).
func TestXDPReattach(t *testing.T) {
	ns := privtest.NetNS(t)
	first, second := "vxa"+testutil.Suffix(8), "vxb"+testutil.Suffix(8)
	dev, err := netdev.Open(netdev.Config{TAP: first, QueuePairs: 1, Log: hclog.NewNullLogger()})
	if err != nil {
		t.Fatalf("open TAP in netns %s: %v", ns, err)
	}
	defer dev.Close()
	var x xdpOptions
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	x.register(fs)
	if err := fs.Parse([]string{"--xdp", "count"}); err != nil {
		t.Fatal(err)
	}
	cfg, on, err := x.config(nil)
	if err != nil || !on {
		t.Fatalf("xdp config: %v (on %v)", err, on)
	}
	st, err := attachXDP(&x, cfg, dev, nil, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if !xdpOn(t, ns, first) {
		t.Fatalf("no XDP program on %s after attach", first)
	}
	// The interface that "came back": another TAP, another ifindex.
	td, err := tap.OpenTAP(tap.Config{Name: second, Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer td.Close()
	if err := st.reattach(td.Ifindex()); err != nil {
		t.Fatalf("reattach to %s: %v", second, err)
	}
	if xdpOn(t, ns, first) || !xdpOn(t, ns, second) {
		t.Fatalf("after reattach: XDP on %s %v (want false), on %s %v (want true)", first, xdpOn(t, ns, first), second, xdpOn(t, ns, second))
	}
	if s := st.statsText(); !strings.HasPrefix(s, "xdp:") || strings.Contains(s, "unavailable") || strings.Contains(s, "not attached") {
		t.Fatalf("counters after reattach: %q", s)
	}
	st.close()
	if xdpOn(t, ns, second) {
		t.Fatalf("XDP still on %s after close", second)
	}
}

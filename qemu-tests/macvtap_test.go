package qemutests

import (
	"testing"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// TestMacvtap: vhostd --macvtap on a macvtap (mode bridge) over one end of a veth pair whose
// other end, in a namespace of its own, holds the host address. The guest and the namespace
// ping each other and a 16 MiB transfer each way keeps its SHA-256 (the host's sockets are
// made inside the namespace).
func TestMacvtap(t *testing.T) {
	Gate(t)
	sfx := guest.RandomSuffix(6)
	ns, veth, peer, mvt := "vhqn"+sfx, "vhqv"+sfx, "vhqp"+sfx, "vhqm"+sfx
	mac := guest.RandomMAC()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%v", err)
		}
	}
	must(guest.NewNetns(ns))
	t.Cleanup(func() { cleanupErr(t, guest.DelNetns(ns)) })
	must(guest.IP("link", "add", veth, "type", "veth", "peer", "name", peer, "netns", ns))
	t.Cleanup(func() { cleanupErr(t, delLink(veth)) })
	must(guest.IP("link", "set", veth, "up"))
	// macvlan delivers a frame to the macvtap whose address is its destination: the guest's.
	must(guest.IP("link", "add", "link", veth, "name", mvt, "address", mac, "type", "macvtap", "mode", "bridge"))
	t.Cleanup(func() { cleanupErr(t, delLink(mvt)) })
	must(guest.IP("link", "set", mvt, "up"))

	flows := []Flow{{Port: 5001, MiB: 16}, {ToGuest: true, Port: 5002, MiB: 16}}
	b := StartBed(t, BedConfig{Macvtap: mvt, Netns: ns, NIC: guest.NIC{MAC: mac},
		Guest: guest.Options{MemoryMiB: 512, Script: PingBothWays + FlowScript(false, flows...)}})
	must(guest.IP("-n", ns, "addr", "add", b.Net.HostCIDR(), "dev", peer))
	must(guest.IP("-n", ns, "link", "set", peer, "up"))
	b.CheckPingBothWays(0)
	b.RunFlows(flows...)
	b.WaitExit()
}

// delLink deletes the interface dev if it still exists.
func delLink(dev string) error {
	if !guest.LinkExists(dev) {
		return nil
	}
	return guest.IP("link", "del", dev)
}

// cleanupErr logs a cleanup's error: the test's verdict stands, but a leak must show.
func cleanupErr(t *testing.T, err error) {
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

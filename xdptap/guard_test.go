package xdptap

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

const (
	guestIP4 = "10.9.0.2"
	guestIP6 = "2001:db8:9::2"
	guestLL  = "fe80::76:68ff:fe64:1"
)

func guestGuard() GuardConfig {
	return GuardConfig{
		MAC:       guestMAC,
		IPv4:      []netip.Prefix{netip.MustParsePrefix(guestIP4 + "/32")},
		IPv6:      []netip.Prefix{netip.MustParsePrefix(guestIP6 + "/128"), netip.MustParsePrefix(guestLL + "/128")},
		AllowDHCP: true,
	}
}

// Each kind of frame, legitimate or spoofed, is written into the TAP as the guest would
// send it, and moves exactly the counter of its verdict.
func TestGuard(t *testing.T) {
	d, _ := newTAP(t, 1)
	a := attach(t, d.Ifindex(), Config{Mode: ModeGuard, Guard: guestGuard()})
	if a.Mode() != AttachNative {
		t.Fatalf("Mode() = %v, want native on a TAP", a.Mode())
	}
	udp, tcp := layers.IPProtocolUDP, layers.IPProtocolTCP
	tag := func(b []byte) []byte { return b }
	cases := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"ipv4 udp", ipFrame(t, guestMAC, guestIP4, "10.9.0.1", udp, 4000, 53), "xdp_guard_pass"},
		{"ipv4 tcp", ipFrame(t, guestMAC, guestIP4, "192.0.2.1", tcp, 4000, 80), "xdp_guard_pass"},
		{"ipv4 icmp", ipFrame(t, guestMAC, guestIP4, "192.0.2.1", layers.IPProtocolICMPv4, 0, 0), "xdp_guard_pass"},
		{"ipv6 udp", ipFrame(t, guestMAC, guestIP6, "2001:db8:9::1", udp, 4000, 53), "xdp_guard_pass"},
		{"ipv6 link-local", ipFrame(t, guestMAC, guestLL, "fe80::1", udp, 4000, 53), "xdp_guard_pass"},
		{"dhcp discover", ipFrame(t, guestMAC, "0.0.0.0", "255.255.255.255", udp, 68, 67), "xdp_guard_pass"},
		{"arp request", arpFrame(t, guestMAC, guestMAC, guestIP4, "10.9.0.1"), "xdp_guard_pass"},
		{"arp probe", arpFrame(t, guestMAC, guestMAC, "0.0.0.0", guestIP4), "xdp_guard_pass"},
		{"neighbor solicitation", ndFrame(t, guestMAC, guestLL, "fe80::1", layers.ICMPv6TypeNeighborSolicitation, guestMAC), "xdp_guard_pass"},
		{"neighbor advertisement", ndFrame(t, guestMAC, guestLL, guestIP6, layers.ICMPv6TypeNeighborAdvertisement, guestMAC), "xdp_guard_pass"},
		{"router solicitation from ::", rsFrame(t), "xdp_guard_pass"},
		{"dad solicitation", ndFrame(t, guestMAC, "::", guestIP6, layers.ICMPv6TypeNeighborSolicitation, guestMAC)[:78], "xdp_guard_pass"},
		{"other ethertype", tag(rawFrame(guestMAC, hostMAC, "other")), "xdp_guard_pass"},

		{"wrong source mac", ipFrame(t, otherMAC, guestIP4, "10.9.0.1", udp, 4000, 53), "xdp_guard_drop_src_mac"},
		{"wrong source mac, other ethertype", rawFrame(otherMAC, hostMAC, "spoof"), "xdp_guard_drop_src_mac"},
		{"wrong ipv4 source", ipFrame(t, guestMAC, "10.9.0.3", "10.9.0.1", udp, 4000, 53), "xdp_guard_drop_src_ipv4"},
		{"dhcp source, not dhcp", ipFrame(t, guestMAC, "0.0.0.0", "10.9.0.1", udp, 68, 53), "xdp_guard_drop_src_ipv4"},
		{"wrong ipv6 source", ipFrame(t, guestMAC, "2001:db8:9::3", "2001:db8:9::1", udp, 4000, 53), "xdp_guard_drop_src_ipv6"},
		{"unspecified ipv6 source, udp", ipFrame(t, guestMAC, "::", "2001:db8:9::1", udp, 4000, 53), "xdp_guard_drop_src_ipv6"},
		{"arp forged sender mac", arpFrame(t, guestMAC, otherMAC, guestIP4, "10.9.0.1"), "xdp_guard_drop_arp"},
		{"arp forged sender ip", arpFrame(t, guestMAC, guestMAC, "10.9.0.1", "10.9.0.1"), "xdp_guard_drop_arp"},
		{"nd forged source lladdr", ndFrame(t, guestMAC, guestLL, "fe80::1", layers.ICMPv6TypeNeighborSolicitation, otherMAC), "xdp_guard_drop_nd"},
		{"nd forged target", ndFrame(t, guestMAC, guestLL, "2001:db8:9::1", layers.ICMPv6TypeNeighborAdvertisement, guestMAC), "xdp_guard_drop_nd"},
		{"nd forged target lladdr", ndFrame(t, guestMAC, guestLL, guestIP6, layers.ICMPv6TypeNeighborAdvertisement, otherMAC), "xdp_guard_drop_nd"},
		{"router advertisement", ndFrame(t, guestMAC, guestLL, "", layers.ICMPv6TypeRouterAdvertisement, guestMAC), "xdp_guard_drop_nd"},
		{"vlan tag", vlanFrame(), "xdp_guard_drop_vlan"},
		{"truncated ipv4", ipFrame(t, guestMAC, guestIP4, "10.9.0.1", udp, 4000, 53)[:14+19], "xdp_guard_drop_malformed"},
	}
	for _, c := range cases {
		before := counters(t, a)
		write(t, d.Queue(0), c.frame)
		after := waitCounters(t, a, func(m map[string]uint64) bool { return m[c.want] > before[c.want] })
		if got := delta(before, after); len(got) != 1 || got[c.want] != 1 {
			t.Errorf("%s: counters moved %v, want %s +1", c.name, got, c.want)
		}
	}
	if t.Failed() {
		t.Logf("counters: %v", counters(t, a))
	}
}

func TestEUI64LinkLocal(t *testing.T) {
	if got := EUI64LinkLocal(guestMAC); got != netip.MustParsePrefix(guestLL+"/128") {
		t.Fatalf("EUI64LinkLocal(%v) = %v, want %s/128", guestMAC, got, guestLL)
	}
}

func rsFrame(t testing.TB) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP("::"), DstIP: net.ParseIP("ff02::2")}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterSolicitation, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(guestMAC, layers.EthernetTypeIPv6), ip, icmp, &layers.ICMPv6RouterSolicitation{})
}

func vlanFrame() []byte {
	f := append(append([]byte{}, hostMAC...), guestMAC...)
	f = append(f, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00) // 802.1Q VID 5, IPv4
	return append(f, make([]byte, 46)...)
}

// ACL drops match the rules, and the rules change at runtime: UpdateACL and LoadRules.
func TestGuardACL(t *testing.T) {
	d, _ := newTAP(t, 1)
	g := guestGuard()
	rules := []Rule{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24")},                               // everything
		{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Proto: protoTCP, Port: 22}, // one port
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Proto: protoUDP},            // one protocol
		{Prefix: netip.MustParsePrefix("2001:db8:dead::/48"), Proto: protoTCP, Port: 443},
		{Prefix: netip.MustParsePrefix("fd00::/8"), Proto: protoUDP}, // the other shard
	}
	a := attach(t, d.Ifindex(), Config{Mode: ModeGuard, Guard: g, ACL: rules})
	udp, tcp := layers.IPProtocolUDP, layers.IPProtocolTCP
	type frameCase struct {
		name  string
		frame []byte
		want  string
	}
	check := func(step string, cases []frameCase) {
		t.Helper()
		for _, c := range cases {
			before := counters(t, a)
			write(t, d.Queue(0), c.frame)
			after := waitCounters(t, a, func(m map[string]uint64) bool { return m[c.want] > before[c.want] })
			if got := delta(before, after); len(got) != 1 || got[c.want] != 1 {
				t.Errorf("%s: %s: counters moved %v, want %s +1", step, c.name, got, c.want)
			}
		}
	}
	check("initial", []frameCase{
		{"prefix any proto", ipFrame(t, guestMAC, guestIP4, "192.0.2.77", udp, 1, 9), "xdp_guard_drop_acl_ipv4"},
		{"prefix icmp", ipFrame(t, guestMAC, guestIP4, "192.0.2.1", layers.IPProtocolICMPv4, 0, 0), "xdp_guard_drop_acl_ipv4"},
		{"port rule hit", ipFrame(t, guestMAC, guestIP4, "198.51.100.7", tcp, 1000, 22), "xdp_guard_drop_acl_ipv4"},
		{"port rule other port", ipFrame(t, guestMAC, guestIP4, "198.51.100.7", tcp, 1000, 23), "xdp_guard_pass"},
		{"port rule other proto", ipFrame(t, guestMAC, guestIP4, "198.51.100.7", udp, 1000, 22), "xdp_guard_pass"},
		{"port rule other host", ipFrame(t, guestMAC, guestIP4, "198.51.100.8", tcp, 1000, 22), "xdp_guard_pass"},
		{"proto rule hit", ipFrame(t, guestMAC, guestIP4, "203.0.113.9", udp, 1000, 5353), "xdp_guard_drop_acl_ipv4"},
		{"proto rule other proto", ipFrame(t, guestMAC, guestIP4, "203.0.113.9", tcp, 1000, 5353), "xdp_guard_pass"},
		{"ipv6 port rule hit", ipFrame(t, guestMAC, guestIP6, "2001:db8:dead:1::1", tcp, 1000, 443), "xdp_guard_drop_acl_ipv6"},
		{"ipv6 port rule miss", ipFrame(t, guestMAC, guestIP6, "2001:db8:dead:1::1", tcp, 1000, 80), "xdp_guard_pass"},
		{"ipv6 upper half", ipFrame(t, guestMAC, guestIP6, "fd00::1", udp, 1000, 80), "xdp_guard_drop_acl_ipv6"},
		{"ipv6 upper half other proto", ipFrame(t, guestMAC, guestIP6, "fd00::1", tcp, 1000, 80), "xdp_guard_pass"},
		{"spoof beats acl", ipFrame(t, guestMAC, "10.9.0.99", "192.0.2.77", udp, 1, 9), "xdp_guard_drop_src_ipv4"},
	})

	// Replace: the /24 goes, a new rule for 10.9.0.1 port 53 comes, the port-22 rule stays.
	rules2 := []Rule{rules[1], {Prefix: netip.MustParsePrefix("10.9.0.1/32"), Proto: protoUDP, Port: 53}}
	if err := a.UpdateACL(rules2); err != nil {
		t.Fatal(err)
	}
	check("after UpdateACL", []frameCase{
		{"removed rule", ipFrame(t, guestMAC, guestIP4, "192.0.2.77", udp, 1, 9), "xdp_guard_pass"},
		{"kept rule", ipFrame(t, guestMAC, guestIP4, "198.51.100.7", tcp, 1000, 22), "xdp_guard_drop_acl_ipv4"},
		{"new rule", ipFrame(t, guestMAC, guestIP4, "10.9.0.1", udp, 1000, 53), "xdp_guard_drop_acl_ipv4"},
		{"ipv6 rule removed", ipFrame(t, guestMAC, guestIP6, "2001:db8:dead:1::1", tcp, 1000, 443), "xdp_guard_pass"},
	})

	// A rules file, as vhostd re-reads on SIGHUP.
	path := filepath.Join(t.TempDir(), "acl.rules")
	if err := os.WriteFile(path, []byte("# test\ndeny 2001:db8:9::1 udp 53\ndeny 0.0.0.0/0 tcp 25 # smtp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := a.LoadRules(path); err != nil || n != 2 {
		t.Fatalf("LoadRules = %d, %v", n, err)
	}
	check("after LoadRules", []frameCase{
		{"old rule gone", ipFrame(t, guestMAC, guestIP4, "198.51.100.7", tcp, 1000, 22), "xdp_guard_pass"},
		{"default route port", ipFrame(t, guestMAC, guestIP4, "8.8.8.8", tcp, 1000, 25), "xdp_guard_drop_acl_ipv4"},
		{"default route port, upper half", ipFrame(t, guestMAC, guestIP4, "200.1.1.1", tcp, 1000, 25), "xdp_guard_drop_acl_ipv4"},
		{"ipv6 upper half rule gone", ipFrame(t, guestMAC, guestIP6, "fd00::1", udp, 1000, 80), "xdp_guard_pass"},
		{"ipv6 host port", ipFrame(t, guestMAC, guestIP6, "2001:db8:9::1", udp, 1000, 53), "xdp_guard_drop_acl_ipv6"},
	})

	// A broken file changes nothing.
	if err := os.WriteFile(path, []byte("deny 10.0.0.0/8\ndeny 10.1.2.3/8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.LoadRules(path); err == nil {
		t.Fatal("LoadRules of a broken file succeeded")
	}
	check("after a broken file", []frameCase{
		{"rule still there", ipFrame(t, guestMAC, guestIP4, "8.8.8.8", tcp, 1000, 25), "xdp_guard_drop_acl_ipv4"},
		{"nothing added", ipFrame(t, guestMAC, guestIP4, "10.9.0.1", udp, 1000, 9), "xdp_guard_pass"},
	})

	// The allowed sources change at runtime too.
	g.IPv4 = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/29")}
	if err := a.UpdateGuard(g); err != nil {
		t.Fatal(err)
	}
	check("after UpdateGuard", []frameCase{
		{"newly allowed source", ipFrame(t, guestMAC, "10.9.0.5", "10.9.0.1", udp, 4000, 9), "xdp_guard_pass"},
		{"still spoofed", ipFrame(t, guestMAC, "10.9.0.9", "10.9.0.1", udp, 4000, 9), "xdp_guard_drop_src_ipv4"},
	})

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateACL(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("UpdateACL after Close = %v", err)
	}
}

func TestGuardConfigRejected(t *testing.T) {
	bad := []GuardConfig{
		{},
		{MAC: []byte{1, 2, 3, 4, 5, 6}}, // multicast
		{MAC: make([]byte, 6)},          // zero
		{MAC: guestMAC, IPv4: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}},
		{MAC: guestMAC, IPv6: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{MAC: guestMAC, IPv6: []netip.Prefix{{}}},
	}
	for i, g := range bad {
		if err := g.validate(); err == nil {
			t.Errorf("%d: %+v accepted", i, g)
		}
	}
	if err := guestGuard().validate(); err != nil {
		t.Fatal(err)
	}
	// Refused before anything is loaded: no privileges needed.
	rules := []Rule{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}
	if _, err := Attach(1, Config{Mode: ModeCount, ACL: rules}); err == nil {
		t.Error("an ACL with mode count accepted")
	}
	if _, err := Attach(1, Config{Mode: ModeGuard, Macvtap: true, Guard: guestGuard()}); err == nil {
		t.Error("the guard on a macvtap accepted")
	}
	if _, err := Attach(0, Config{Mode: ModeCount}); err == nil {
		t.Error("ifindex 0 accepted")
	}
}

package xdptap

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseRules(t *testing.T) {
	p := netip.MustParsePrefix
	good := []struct {
		name, in string
		want     []Rule
	}{
		{"empty", "", nil},
		{"comments and blanks", "# nothing\n\n   \t\n# more\n", nil},
		{"prefix", "deny 10.0.0.0/8", []Rule{{Prefix: p("10.0.0.0/8")}}},
		{"bare v4", "deny 192.0.2.1", []Rule{{Prefix: p("192.0.2.1/32")}}},
		{"bare v6", "deny 2001:db8::1", []Rule{{Prefix: p("2001:db8::1/128")}}},
		{"proto", "deny 10.0.0.0/8 udp", []Rule{{Prefix: p("10.0.0.0/8"), Proto: protoUDP}}},
		{"port", "deny 10.0.0.0/8 tcp 22", []Rule{{Prefix: p("10.0.0.0/8"), Proto: protoTCP, Port: 22}}},
		{"sctp port", "deny 10.0.0.0/8 sctp 65535", []Rule{{Prefix: p("10.0.0.0/8"), Proto: protoSCTP, Port: 65535}}},
		{"numeric proto", "deny 10.0.0.0/8 47", []Rule{{Prefix: p("10.0.0.0/8"), Proto: 47}}},
		{"numeric tcp with port", "deny 10.0.0.0/8 6 80", []Rule{{Prefix: p("10.0.0.0/8"), Proto: protoTCP, Port: 80}}},
		{"icmp", "deny 0.0.0.0/0 icmp", []Rule{{Prefix: p("0.0.0.0/0"), Proto: protoICMP}}},
		{"icmpv6", "deny ::/0 icmpv6", []Rule{{Prefix: p("::/0"), Proto: protoICMPv6}}},
		{"v6 port", "deny 2001:db8::/32 udp 53", []Rule{{Prefix: p("2001:db8::/32"), Proto: protoUDP, Port: 53}}},
		{"trailing comment, tabs, CRLF", "\tdeny   10.0.0.0/8\ttcp 22 # ssh\r\n", []Rule{{Prefix: p("10.0.0.0/8"), Proto: protoTCP, Port: 22}}},
		{"duplicates kept", "deny 10.0.0.0/8\ndeny 10.0.0.0/8\n", []Rule{{Prefix: p("10.0.0.0/8")}, {Prefix: p("10.0.0.0/8")}}},
		{"no final newline", "deny 10.0.0.0/8\ndeny 10.1.0.0/16", []Rule{{Prefix: p("10.0.0.0/8")}, {Prefix: p("10.1.0.0/16")}}},
	}
	for _, c := range good {
		got, err := ParseRules(strings.NewReader(c.in))
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: ParseRules(%q) = %v, %v; want %v", c.name, c.in, got, err, c.want)
		}
	}
	bad := []struct{ name, in, want string }{
		{"allow", "allow 10.0.0.0/8", "line 1: unknown action"},
		{"bare word", "deny", "line 1: want: deny PREFIX"},
		{"too many fields", "deny 10.0.0.0/8 tcp 22 33", "want: deny PREFIX"},
		{"bad prefix", "deny 10.0.0.0/33", "line 1:"},
		{"bad addr", "deny 10.0.0", "line 1:"},
		{"host bits", "\ndeny 10.1.2.3/8", "line 2: 10.1.2.3/8 has host bits set (did you mean 10.0.0.0/8?)"},
		{"mapped", "deny ::ffff:10.0.0.0/104", "IPv4-mapped"},
		{"zone", "deny fe80::1%eth0", "zone"},
		{"zone in prefix", "deny fe80::1%eth0/128", "line 1:"},
		{"bad proto", "deny 10.0.0.0/8 tcpx", "bad protocol"},
		{"proto 0", "deny 10.0.0.0/8 0", "bad protocol"},
		{"proto 256", "deny 10.0.0.0/8 256", "bad protocol"},
		{"port 0", "deny 10.0.0.0/8 tcp 0", "bad port"},
		{"port 65536", "deny 10.0.0.0/8 tcp 65536", "bad port"},
		{"port -1", "deny 10.0.0.0/8 tcp -1", "bad port"},
		{"port on icmp", "deny 10.0.0.0/8 icmp 5", "a port needs tcp, udp or sctp"},
		{"icmp v6", "deny ::/0 icmp", "use icmpv6"},
		{"icmpv6 v4", "deny 0.0.0.0/0 icmpv6", "use icmp"},
		{"long line", "deny 10.0.0.0/8 #" + strings.Repeat("x", maxLine), "longer than"},
		{"later line", "deny 10.0.0.0/8\n# ok\ndeny x", "line 3:"},
	}
	for _, c := range bad {
		got, err := ParseRules(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) || got != nil {
			t.Errorf("%s: ParseRules(%q) = %v, %v; want an error with %q and no rules", c.name, c.in, got, err, c.want)
		}
	}
}

func TestParseRulesLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a file of MaxRules+1 rules")
	}
	var b strings.Builder
	for i := 0; i <= MaxRules; i++ {
		b.WriteString("deny 10.0.0.1 tcp 1\n")
	}
	if _, err := ParseRules(strings.NewReader(b.String())); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("ParseRules of MaxRules+1 rules: %v", err)
	}
}

// Rule.String is a line ParseRules reads back as the same rule.
func TestRuleStringRoundTrip(t *testing.T) {
	for _, s := range []string{"deny 10.0.0.0/8", "deny 10.0.0.0/8 tcp 22", "deny ::/0 icmpv6", "deny 192.0.2.0/24 47"} {
		rs, err := ParseRules(strings.NewReader(s))
		if err != nil || len(rs) != 1 || rs[0].String() != s {
			t.Errorf("%q: %v, %v", s, rs, err)
		}
	}
}

func TestACLKeys(t *testing.T) {
	acl, err := aclKeys([]Rule{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Proto: protoTCP, Port: 0x1234},
		{Prefix: netip.MustParsePrefix("2001:db8::/32")},
	})
	if err != nil {
		t.Fatal(err)
	}
	k4, k6 := acl.v4[0], acl.v6[0]
	want4 := xdpAcl4{Prefixlen: 40, Proto: protoTCP, Port: be16(0x1234), Addr: [4]byte{10}}
	if len(k4) != 1 || k4[0] != want4 {
		t.Errorf("k4 = %v, want %v", k4, want4)
	}
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], want4.Port) // the key's bytes as the kernel sees them
	if b != [2]byte{0x12, 0x34} {
		t.Errorf("port bytes %x, want network order 12 34", b[:])
	}
	want6 := xdpAcl6{Prefixlen: 64, Addr: [16]byte{0x20, 0x01, 0x0d, 0xb8}}
	if len(k6) != 1 || k6[0] != want6 {
		t.Errorf("k6 = %v, want %v", k6, want6)
	}
	if _, err := aclKeys([]Rule{{Prefix: netip.MustParsePrefix("10.1.0.0/8")}}); err == nil {
		t.Error("a rule with host bits was accepted")
	}
}

// FuzzParseRules checks invariants, not outputs: no panic; on success every rule is valid
// and its String form parses back to the same rules.
func FuzzParseRules(f *testing.F) {
	for _, s := range []string{
		"deny 10.0.0.0/8\n",
		"deny 10.0.0.0/8 tcp 22 # c\n\ndeny 2001:db8::/32 udp 53\n",
		"deny ::/0 icmpv6\r\ndeny 0.0.0.0/0 47\n",
		"deny 192.0.2.1\ndeny fe80::1%x\n",
		"allow 1.2.3.4/40 tcp 70000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rules, err := ParseRules(strings.NewReader(in))
		if err != nil {
			if rules != nil {
				t.Fatalf("rules %v with error %v", rules, err)
			}
			return
		}
		var b strings.Builder
		for _, r := range rules {
			if err := r.Validate(); err != nil {
				t.Fatalf("invalid rule %v accepted: %v", r, err)
			}
			b.WriteString(r.String() + "\n")
		}
		again, err := ParseRules(strings.NewReader(b.String()))
		if err != nil || !reflect.DeepEqual(again, rules) {
			t.Fatalf("round trip: %v, %v; want %v", again, err, rules)
		}
		if _, err := aclKeys(rules); err != nil {
			t.Fatalf("aclKeys: %v", err)
		}
	})
}

func TestParseAddrList(t *testing.T) {
	v4, v6, err := ParseAddrList(" 10.0.0.2, 2001:db8::2/128,,fe80::1/64 ,192.168.1.7/24")
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix
	if !reflect.DeepEqual(v4, []netip.Prefix{p("10.0.0.2/32"), p("192.168.1.0/24")}) ||
		!reflect.DeepEqual(v6, []netip.Prefix{p("2001:db8::2/128"), p("fe80::/64")}) {
		t.Fatalf("got %v %v", v4, v6)
	}
	for _, bad := range []string{"10.0.0", "10.0.0.0/33", "fe80::1%eth0", "::ffff:10.0.0.1", "x"} {
		if _, _, err := ParseAddrList(bad); err == nil {
			t.Errorf("ParseAddrList(%q) accepted", bad)
		}
	}
	if v4, v6, err := ParseAddrList(""); v4 != nil || v6 != nil || err != nil {
		t.Errorf("empty list: %v %v %v", v4, v6, err)
	}
}

// The key orders agree with the byte order the trie walks.
func TestCompareACL(t *testing.T) {
	keyBytes := func(proto, pad uint8, port uint16, addr []byte) []byte {
		return append([]byte{proto, pad, byte(port >> 8), byte(port)}, addr...)
	}
	rules := benchRules(2000)
	for i := 1; i < len(rules); i++ {
		ra, rb := rules[i-1], rules[i]
		a, b := acl4Key(ra), acl4Key(rb)
		want := cmp.Or(bytes.Compare(keyBytes(a.Proto, a.Pad, ra.Port, a.Addr[:]), keyBytes(b.Proto, b.Pad, rb.Port, b.Addr[:])), cmp.Compare(a.Prefixlen, b.Prefixlen))
		if got := compareACL4(a, b); got != want {
			t.Fatalf("compareACL4(%v, %v) = %d, want %d", ra, rb, got, want)
		}
		// The same rules moved into IPv6 (2001:db8::/32 + the IPv4 address).
		to6 := func(r Rule) Rule {
			a16 := [16]byte{0x20, 0x01, 0x0d, 0xb8}
			copy(a16[12:], r.Prefix.Addr().AsSlice())
			return Rule{Prefix: netip.PrefixFrom(netip.AddrFrom16(a16), 96+r.Prefix.Bits()), Proto: r.Proto, Port: r.Port}
		}
		r6a, r6b := to6(ra), to6(rb)
		a6, b6 := acl6Key(r6a), acl6Key(r6b)
		want6 := cmp.Or(bytes.Compare(keyBytes(a6.Proto, a6.Pad, r6a.Port, a6.Addr[:]), keyBytes(b6.Proto, b6.Pad, r6b.Port, b6.Addr[:])), cmp.Compare(a6.Prefixlen, b6.Prefixlen))
		if got := compareACL6(a6, b6); got != want6 {
			t.Fatalf("compareACL6(%v, %v) = %d, want %d", r6a, r6b, got, want6)
		}
	}
}

// A key goes in the trie of its address's top bit; a /0 goes in both.
func TestACLShards(t *testing.T) {
	rules := []Rule{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Proto: protoTCP, Port: 25},
		{Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("128.0.0.0/1")},
		{Prefix: netip.MustParsePrefix("200.0.0.0/8"), Proto: protoUDP},
		{Prefix: netip.MustParsePrefix("::/0")},
		{Prefix: netip.MustParsePrefix("fd00::/8")},
	}
	acl, err := aclKeys(rules)
	if err != nil {
		t.Fatal(err)
	}
	want := func(rs ...Rule) []xdpAcl4 {
		var ks []xdpAcl4
		for _, r := range rs {
			ks = append(ks, acl4Key(r))
		}
		return ks
	}
	if !reflect.DeepEqual(acl.v4[0], want(rules[0], rules[1])) || !reflect.DeepEqual(acl.v4[1], want(rules[0], rules[2], rules[3])) {
		t.Fatalf("IPv4: lo %v hi %v", acl.v4[0], acl.v4[1])
	}
	if len(acl.v6[0]) != 1 || len(acl.v6[1]) != 2 {
		t.Fatalf("IPv6: lo %v hi %v", acl.v6[0], acl.v6[1])
	}
}

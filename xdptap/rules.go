package xdptap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Rule denies frames from the guest to a destination prefix, optionally only for one IP
// protocol and, for TCP, UDP and SCTP, one destination port. Proto 0 means any protocol;
// Port 0 means any port.
type Rule struct {
	Prefix netip.Prefix // masked (no host bits), IPv4 or IPv6 (not IPv4-mapped)
	Proto  uint8
	Port   uint16
}

// MaxRules is how many ACL rules of each family (IPv4, IPv6) the guard holds
// (ACL_MAX in bpf/xdptap.c).
const MaxRules = 1 << 20

// maxLine bounds one line of a rules file.
const maxLine = 4096

// IP protocol numbers (include/uapi/linux/in.h, in6.h).
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

var protoNames = map[string]uint8{"icmp": protoICMP, "tcp": protoTCP, "udp": protoUDP, "icmpv6": protoICMPv6, "sctp": protoSCTP}

func protoName(p uint8) string {
	for n, v := range protoNames {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(int(p))
}

func hasPorts(p uint8) bool { return p == protoTCP || p == protoUDP || p == protoSCTP }

// Validate reports whether r is a rule the guard can hold, and why not.
func (r Rule) Validate() error {
	switch {
	case !r.Prefix.IsValid():
		return errors.New("invalid prefix")
	case r.Prefix.Addr().Is4In6():
		return fmt.Errorf("%v is IPv4-mapped IPv6: write the IPv4 prefix", r.Prefix)
	case r.Prefix.Addr().Zone() != "":
		return fmt.Errorf("%v has a zone", r.Prefix)
	case r.Prefix != r.Prefix.Masked():
		return fmt.Errorf("%v has host bits set (did you mean %v?)", r.Prefix, r.Prefix.Masked())
	case r.Port != 0 && !hasPorts(r.Proto):
		return fmt.Errorf("a port needs tcp, udp or sctp, not %s", protoName(r.Proto))
	case r.Proto == protoICMP && r.Prefix.Addr().Is6():
		return errors.New("icmp with an IPv6 prefix: use icmpv6")
	case r.Proto == protoICMPv6 && r.Prefix.Addr().Is4():
		return errors.New("icmpv6 with an IPv4 prefix: use icmp")
	}
	return nil
}

// String is r as a line of a rules file.
func (r Rule) String() string {
	s := "deny " + r.Prefix.String()
	if r.Proto != 0 {
		s += " " + protoName(r.Proto)
	}
	if r.Port != 0 {
		s += " " + strconv.Itoa(int(r.Port))
	}
	return s
}

// ParseRules reads a rules file: one rule a line,
//
//	deny PREFIX [PROTO [PORT]]
//
// PREFIX is an IPv4 or IPv6 CIDR prefix without host bits, or a bare address (/32, /128);
// PROTO is tcp, udp, sctp, icmp, icmpv6 or a number 1-255; PORT (1-65535) only follows tcp,
// udp or sctp. '#' starts a comment; blank lines are ignored. Duplicates are kept (the map
// holds one). The first error names its line; no partial result is returned.
func ParseRules(r io.Reader) ([]Rule, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 256), maxLine)
	var rules []Rule
	var n4, n6 int
	for line := 1; s.Scan(); line++ {
		text, _, _ := strings.Cut(s.Text(), "#")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		rule, err := parseRule(f)
		if err != nil {
			return nil, fmt.Errorf("xdptap: rules line %d: %w", line, err)
		}
		if rule.Prefix.Addr().Is4() {
			n4++
		} else {
			n6++
		}
		if n4 > MaxRules || n6 > MaxRules {
			return nil, fmt.Errorf("xdptap: rules line %d: more than %d rules of one family", line, MaxRules)
		}
		rules = append(rules, rule)
	}
	if err := s.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("xdptap: rules: a line longer than %d bytes", maxLine)
		}
		return nil, fmt.Errorf("xdptap: rules: %w", err)
	}
	return rules, nil
}

// ParseRulesFile is ParseRules on the file at path.
func ParseRulesFile(path string) ([]Rule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("xdptap: %w", err)
	}
	defer f.Close()
	rules, err := ParseRules(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rules, nil
}

func parseRule(f []string) (Rule, error) {
	var r Rule
	if f[0] != "deny" {
		return r, fmt.Errorf("unknown action %q (want deny)", f[0])
	}
	if len(f) < 2 || len(f) > 4 {
		return r, errors.New("want: deny PREFIX [PROTO [PORT]]")
	}
	var err error
	if strings.Contains(f[1], "/") {
		r.Prefix, err = netip.ParsePrefix(f[1])
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(f[1])
		if err == nil && a.Zone() != "" {
			return r, fmt.Errorf("%v has a zone", a)
		}
		if err == nil {
			r.Prefix = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return r, err
	}
	if len(f) >= 3 {
		if p, ok := protoNames[f[2]]; ok {
			r.Proto = p
		} else if v, err := strconv.ParseUint(f[2], 10, 8); err == nil && v != 0 {
			r.Proto = uint8(v)
		} else {
			return r, fmt.Errorf("bad protocol %q (want tcp, udp, sctp, icmp, icmpv6 or 1-255)", f[2])
		}
	}
	if len(f) == 4 {
		v, err := strconv.ParseUint(f[3], 10, 16)
		if err != nil || v == 0 {
			return r, fmt.Errorf("bad port %q (want 1-65535)", f[3])
		}
		r.Port = uint16(v)
	}
	return r, r.Validate()
}

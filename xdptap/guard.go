package xdptap

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
)

// guardAllowDHCP4 is GUARD_ALLOW_DHCP4 in bpf/xdptap.c.
const guardAllowDHCP4 = 1

// guardState is the guard's maps; the sets remember what they hold, so that an update
// writes only the difference.
type guardState struct {
	cfg  *ebpf.Map
	src4 *mapSet[xdpLpm4]
	src6 *mapSet[xdpLpm6]
	// The ACL tries, by the top bit of the destination address (shardOf).
	acl4 [2]*mapSet[xdpAcl4]
	acl6 [2]*mapSet[xdpAcl6]
}

func (a *Attachment) loadGuard(c Config) (*ebpf.Program, error) {
	if err := c.Guard.validate(); err != nil {
		return nil, err
	}
	acl, err := aclKeys(c.ACL)
	if err != nil {
		return nil, err
	}
	p, err := a.loadBuiltin(progGuard)
	if err != nil {
		return nil, err
	}
	m := a.objs.Maps
	a.guard = &guardState{
		cfg:  m[xdpMapGuardConfig],
		src4: newMapSet(m[xdpMapGuardSrc4], maxSources, compareLpm4),
		src6: newMapSet(m[xdpMapGuardSrc6], maxSources, compareLpm6),
		acl4: [2]*mapSet[xdpAcl4]{
			newMapSet(m[xdpMapGuardAcl4Lo], MaxRules, compareACL4),
			newMapSet(m[xdpMapGuardAcl4Hi], MaxRules, compareACL4),
		},
		acl6: [2]*mapSet[xdpAcl6]{
			newMapSet(m[xdpMapGuardAcl6Lo], MaxRules, compareACL6),
			newMapSet(m[xdpMapGuardAcl6Hi], MaxRules, compareACL6),
		},
	}
	if err := a.guard.setGuard(c.Guard); err != nil {
		return nil, err
	}
	if err := a.guard.setACL(acl); err != nil {
		return nil, err
	}
	return p, nil
}

func (g GuardConfig) validate() error {
	if len(g.MAC) != 6 {
		return fmt.Errorf("xdptap: guard: the guest's MAC %q is not a 6-byte Ethernet address", g.MAC)
	}
	if g.MAC[0]&1 != 0 || [6]byte(g.MAC) == [6]byte{} {
		return fmt.Errorf("xdptap: guard: the guest's MAC %v is not a unicast address", g.MAC)
	}
	if len(g.IPv4) > maxSources || len(g.IPv6) > maxSources {
		return fmt.Errorf("xdptap: guard: more than %d allowed source prefixes of one family", maxSources)
	}
	for _, p := range g.IPv4 {
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("xdptap: guard: %v is not an IPv4 prefix", p)
		}
	}
	for _, p := range g.IPv6 {
		if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return fmt.Errorf("xdptap: guard: %v is not an IPv6 prefix", p)
		}
	}
	return nil
}

func (g *guardState) setGuard(c GuardConfig) error {
	var v xdpGuardConfig
	copy(v.Mac[:], c.MAC)
	if c.AllowDHCP {
		v.Flags |= guardAllowDHCP4
	}
	if err := g.cfg.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("xdptap: guard: write config: %w", err)
	}
	s4 := make([]xdpLpm4, 0, len(c.IPv4))
	for _, p := range c.IPv4 {
		p = p.Masked()
		s4 = append(s4, xdpLpm4{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()})
	}
	s6 := make([]xdpLpm6, 0, len(c.IPv6))
	for _, p := range c.IPv6 {
		p = p.Masked()
		s6 = append(s6, xdpLpm6{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()})
	}
	if err := g.src4.sync(sortKeys(s4, compareLpm4)); err != nil {
		return fmt.Errorf("xdptap: guard: allowed IPv4 sources: %w", err)
	}
	if err := g.src6.sync(sortKeys(s6, compareLpm6)); err != nil {
		return fmt.Errorf("xdptap: guard: allowed IPv6 sources: %w", err)
	}
	return nil
}

// aclShards is an ACL as keys of each shard trie (index 0: _lo, 1: _hi), not yet sorted.
type aclShards struct {
	v4 [2][]xdpAcl4
	v6 [2][]xdpAcl6
}

// setACL makes the ACL maps hold acl. Each shard is sorted and written by its own
// goroutine (so its own thread, blocked in the kernel): an LPM trie serializes its inserts
// on one lock, two tries do not (BenchmarkACLInsert).
func (g *guardState) setACL(acl aclShards) error {
	var errs [2]error
	var wg sync.WaitGroup
	for shard := range 2 {
		wg.Go(func() {
			if err := g.acl4[shard].sync(sortKeys(acl.v4[shard], compareACL4)); err != nil {
				errs[shard] = fmt.Errorf("xdptap: ACL (IPv4, shard %d): %w", shard, err)
				return
			}
			if err := g.acl6[shard].sync(sortKeys(acl.v6[shard], compareACL6)); err != nil {
				errs[shard] = fmt.Errorf("xdptap: ACL (IPv6, shard %d): %w", shard, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs[0], errs[1])
}

// shards says which tries a rule's key goes in: bit 0 for _lo, bit 1 for _hi. The top
// bit of the address picks one; a /0 prefix matches addresses of both halves and goes in
// both.
func shards(p netip.Prefix) uint8 {
	if p.Bits() == 0 {
		return 3
	}
	a := p.Addr()
	if a.Is4() {
		return 1 << (a.As4()[0] >> 7)
	}
	return 1 << (a.As16()[0] >> 7)
}

// aclKeys turns rules into the guard's LPM keys (struct acl4/acl6 in bpf/xdptap.c:
// the prefix covers proto, pad and port, 32 bits, then the address), by shard.
func aclKeys(rules []Rule) (aclShards, error) {
	var acl aclShards
	var n4, n6 int
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return aclShards{}, fmt.Errorf("xdptap: ACL rule %q: %w", r, err)
		}
		sh := shards(r.Prefix)
		if r.Prefix.Addr().Is4() {
			n4++
			k := acl4Key(r)
			for s := range 2 {
				if sh&(1<<s) != 0 {
					acl.v4[s] = append(acl.v4[s], k)
				}
			}
		} else {
			n6++
			k := acl6Key(r)
			for s := range 2 {
				if sh&(1<<s) != 0 {
					acl.v6[s] = append(acl.v6[s], k)
				}
			}
		}
	}
	if n4 > MaxRules || n6 > MaxRules {
		return aclShards{}, fmt.Errorf("xdptap: ACL: more than %d rules of one family", MaxRules)
	}
	return acl, nil
}

// be16 returns the uint16 whose in-memory bytes are p in network order.
func be16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func acl4Key(r Rule) xdpAcl4 {
	return xdpAcl4{Prefixlen: 32 + uint32(r.Prefix.Bits()), Proto: r.Proto, Port: be16(r.Port), Addr: r.Prefix.Addr().As4()}
}

func acl6Key(r Rule) xdpAcl6 {
	return xdpAcl6{Prefixlen: 32 + uint32(r.Prefix.Bits()), Proto: r.Proto, Port: be16(r.Port), Addr: r.Prefix.Addr().As16()}
}

// compareLpm4 and compareLpm6 order source prefixes as the trie sees their bits.
func compareLpm4(a, b xdpLpm4) int {
	if c := cmp.Compare(binary.BigEndian.Uint32(a.Addr[:]), binary.BigEndian.Uint32(b.Addr[:])); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefixlen, b.Prefixlen)
}

func compareLpm6(a, b xdpLpm6) int {
	if c := cmp.Compare(binary.BigEndian.Uint64(a.Addr[:8]), binary.BigEndian.Uint64(b.Addr[:8])); c != 0 {
		return c
	}
	if c := cmp.Compare(binary.BigEndian.Uint64(a.Addr[8:]), binary.BigEndian.Uint64(b.Addr[8:])); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefixlen, b.Prefixlen)
}

// compareACL4 orders keys as the trie sees their bits: proto, pad, port (network order),
// address, then the shorter prefix first.
func compareACL4(a, b xdpAcl4) int {
	if c := cmp.Compare(acl4Bits(a), acl4Bits(b)); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefixlen, b.Prefixlen)
}

// acl4Bits is an acl4 key's data as one big-endian number.
func acl4Bits(k xdpAcl4) uint64 {
	return uint64(k.Proto)<<56 | uint64(k.Pad)<<48 | uint64(be16(k.Port))<<32 | uint64(binary.BigEndian.Uint32(k.Addr[:]))
}

func compareACL6(a, b xdpAcl6) int {
	ha := uint64(a.Proto)<<24 | uint64(a.Pad)<<16 | uint64(be16(a.Port))
	hb := uint64(b.Proto)<<24 | uint64(b.Pad)<<16 | uint64(be16(b.Port))
	if c := cmp.Compare(ha, hb); c != 0 {
		return c
	}
	if c := cmp.Compare(binary.BigEndian.Uint64(a.Addr[:8]), binary.BigEndian.Uint64(b.Addr[:8])); c != 0 {
		return c
	}
	if c := cmp.Compare(binary.BigEndian.Uint64(a.Addr[8:]), binary.BigEndian.Uint64(b.Addr[8:])); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefixlen, b.Prefixlen)
}

// UpdateACL replaces the guard's denied destinations with rules, without reloading the
// program: only the difference is written, with batched map updates. New rules go in
// before old ones come out (unless both together would overflow the map), so a rule in
// both sets never lapses. On error the ACL may hold part of the update; a later
// successful UpdateACL puts it right.
func (a *Attachment) UpdateACL(rules []Rule) error {
	acl, err := aclKeys(rules)
	if err != nil {
		return err
	}
	return a.withGuard(func(g *guardState) error { return g.setACL(acl) })
}

// LoadRules reads the rules file at path (ParseRules) and applies it with UpdateACL.
// It returns the number of rules read. A file with an error changes nothing.
func (a *Attachment) LoadRules(path string) (int, error) {
	rules, err := ParseRulesFile(path)
	if err != nil {
		return 0, err
	}
	return len(rules), a.UpdateACL(rules)
}

// UpdateGuard replaces the guest's MAC and allowed source prefixes, without reloading.
func (a *Attachment) UpdateGuard(g GuardConfig) error {
	if err := g.validate(); err != nil {
		return err
	}
	return a.withGuard(func(s *guardState) error { return s.setGuard(g) })
}

// withGuard runs f on the guard's maps under a.mu: ErrClosed after Close, an error if
// a is not the guard program.
func (a *Attachment) withGuard(f func(*guardState) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.guard == nil {
		return fmt.Errorf("xdptap: %s is not the guard", a.prog)
	}
	return f(a.guard)
}

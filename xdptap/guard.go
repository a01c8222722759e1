package xdptap

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
)

// guardAllowDHCP4 is GUARD_ALLOW_DHCP4 in bpf/xdptap.c.
const guardAllowDHCP4 = 1

// guardState is what the guard's maps hold, as last written, so that an update writes
// only the difference. A nil set means the map's content is unknown (a failed update):
// the next update clears the map first.
type guardState struct {
	cfg        *ebpf.Map
	src4, src6 *ebpf.Map
	acl4, acl6 *ebpf.Map
	haveSrc4   map[xdpLpm4]struct{}
	haveSrc6   map[xdpLpm6]struct{}
	rules4     map[xdpAcl4]struct{}
	rules6     map[xdpAcl6]struct{}
}

func (a *Attachment) loadGuard(c Config) (*ebpf.Program, error) {
	if err := c.Guard.validate(); err != nil {
		return nil, err
	}
	acl4, acl6, err := aclKeys(c.ACL)
	if err != nil {
		return nil, err
	}
	p, err := a.loadBuiltin(progGuard)
	if err != nil {
		return nil, err
	}
	m := a.objs.Maps
	a.guard = &guardState{
		cfg: m[xdpMapGuardConfig], src4: m[xdpMapGuardSrc4], src6: m[xdpMapGuardSrc6],
		acl4: m[xdpMapGuardAcl4], acl6: m[xdpMapGuardAcl6],
		haveSrc4: map[xdpLpm4]struct{}{}, haveSrc6: map[xdpLpm6]struct{}{},
		rules4: map[xdpAcl4]struct{}{}, rules6: map[xdpAcl6]struct{}{},
	}
	if err := a.guard.setGuard(c.Guard); err != nil {
		return nil, err
	}
	if err := a.guard.setACL(acl4, acl6); err != nil {
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
	s4 := make(map[xdpLpm4]struct{}, len(c.IPv4))
	for _, p := range c.IPv4 {
		p = p.Masked()
		s4[xdpLpm4{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}] = struct{}{}
	}
	s6 := make(map[xdpLpm6]struct{}, len(c.IPv6))
	for _, p := range c.IPv6 {
		p = p.Masked()
		s6[xdpLpm6{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}] = struct{}{}
	}
	var err error
	if g.haveSrc4, err = syncSet(g.src4, g.haveSrc4, s4, maxSources, nil); err != nil {
		return fmt.Errorf("xdptap: guard: allowed IPv4 sources: %w", err)
	}
	if g.haveSrc6, err = syncSet(g.src6, g.haveSrc6, s6, maxSources, nil); err != nil {
		return fmt.Errorf("xdptap: guard: allowed IPv6 sources: %w", err)
	}
	return nil
}

func (g *guardState) setACL(want4 map[xdpAcl4]struct{}, want6 map[xdpAcl6]struct{}) error {
	var err error
	if g.rules4, err = syncSet(g.acl4, g.rules4, want4, MaxRules, compareACL4); err != nil {
		return fmt.Errorf("xdptap: ACL (IPv4): %w", err)
	}
	if g.rules6, err = syncSet(g.acl6, g.rules6, want6, MaxRules, compareACL6); err != nil {
		return fmt.Errorf("xdptap: ACL (IPv6): %w", err)
	}
	return nil
}

// aclKeys turns rules into the guard's LPM keys (struct acl4/acl6 in bpf/xdptap.c:
// the prefix covers proto, pad and port, 32 bits, then the address).
func aclKeys(rules []Rule) (map[xdpAcl4]struct{}, map[xdpAcl6]struct{}, error) {
	k4 := make(map[xdpAcl4]struct{})
	k6 := make(map[xdpAcl6]struct{})
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, nil, fmt.Errorf("xdptap: ACL rule %q: %w", r, err)
		}
		if r.Prefix.Addr().Is4() {
			k4[acl4Key(r)] = struct{}{}
		} else {
			k6[acl6Key(r)] = struct{}{}
		}
	}
	if len(k4) > MaxRules || len(k6) > MaxRules {
		return nil, nil, fmt.Errorf("xdptap: ACL: more than %d rules of one family", MaxRules)
	}
	return k4, k6, nil
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

// compareACL4 orders keys as the trie sees their bits: proto, pad, port (network order),
// address, then the shorter prefix first.
func compareACL4(a, b xdpAcl4) int {
	return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Pad, b.Pad), cmp.Compare(be16(a.Port), be16(b.Port)),
		bytes.Compare(a.Addr[:], b.Addr[:]), cmp.Compare(a.Prefixlen, b.Prefixlen))
}

func compareACL6(a, b xdpAcl6) int {
	return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Pad, b.Pad), cmp.Compare(be16(a.Port), be16(b.Port)),
		bytes.Compare(a.Addr[:], b.Addr[:]), cmp.Compare(a.Prefixlen, b.Prefixlen))
}

// UpdateACL replaces the guard's denied destinations with rules, without reloading the
// program: only the difference is written, with batched map updates. New rules go in
// before old ones come out (unless both together would overflow the map), so a rule in
// both sets never lapses. On error the ACL may hold part of the update; a later
// successful UpdateACL puts it right.
func (a *Attachment) UpdateACL(rules []Rule) error {
	k4, k6, err := aclKeys(rules)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.guardLocked(); err != nil {
		return err
	}
	return a.guard.setACL(k4, k6)
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
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.guardLocked(); err != nil {
		return err
	}
	return a.guard.setGuard(g)
}

func (a *Attachment) guardLocked() error {
	if a.closed {
		return errClosed
	}
	if a.guard == nil {
		return fmt.Errorf("xdptap: %s is not the guard", a.prog)
	}
	return nil
}

// syncSet makes m hold exactly the keys in want (values 1), given that it holds have
// (nil: unknown). It returns what m holds afterwards: want, or nil after a failure.
//
// Additions are sorted by key (order, if not nil) before they go in: an LPM trie insert
// walks the trie from the root, and keys in order walk paths the previous insert left in
// the cache (about 1.3 to 1.6 times faster than random order; BenchmarkACLInsert).
func syncSet[K comparable](m *ebpf.Map, have, want map[K]struct{}, max int, order func(a, b K) int) (map[K]struct{}, error) {
	if have == nil {
		if err := clearMap[K](m); err != nil {
			return nil, err
		}
		have = map[K]struct{}{}
	}
	var add, del []K
	for k := range want {
		if _, ok := have[k]; !ok {
			add = append(add, k)
		}
	}
	union := len(have) + len(add)
	for k := range have {
		if _, ok := want[k]; !ok {
			del = append(del, k)
		}
	}
	if order != nil {
		slices.SortFunc(add, order)
	}
	if union > max { // make room first
		if err := deleteBatch(m, del); err != nil {
			return nil, err
		}
		del = nil
	}
	if err := updateBatch(m, add); err != nil {
		return nil, err
	}
	if err := deleteBatch(m, del); err != nil {
		return nil, err
	}
	return want, nil
}

// batchSize bounds one BPF_MAP_*_BATCH call: the kernel walks the elements one by one
// either way (generic_map_update_batch), so larger batches save nothing measurable and
// cost a larger marshalling buffer (BenchmarkACLInsert: 4096 and 1M per call are even).
const batchSize = 1 << 14

// updateBatch writes keys with value 1, batchSize keys per BPF_MAP_UPDATE_BATCH (one
// element at a time only where the kernel has no batch operations for the map).
func updateBatch[K any](m *ebpf.Map, keys []K) error {
	if len(keys) == 0 {
		return nil
	}
	vals := make([]uint32, min(len(keys), batchSize))
	for i := range vals {
		vals[i] = 1
	}
	for done := 0; done < len(keys); {
		chunk := keys[done:min(done+batchSize, len(keys))]
		n, err := m.BatchUpdate(chunk, vals[:len(chunk)], nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			for i := done + n; i < len(keys); i++ {
				if err := m.Put(&keys[i], &vals[0]); err != nil {
					return fmt.Errorf("update %v: %w", keys[i], err)
				}
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("batch update (%d of %d done): %w", done+n, len(keys), err)
		}
		if n == 0 {
			return fmt.Errorf("batch update (%d of %d done): no progress", done, len(keys))
		}
		done += n
	}
	return nil
}

func deleteBatch[K any](m *ebpf.Map, keys []K) error {
	for done := 0; done < len(keys); {
		chunk := keys[done:min(done+batchSize, len(keys))]
		n, err := m.BatchDelete(chunk, nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			for i := done + n; i < len(keys); i++ {
				if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					return fmt.Errorf("delete %v: %w", keys[i], err)
				}
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("batch delete (%d of %d done): %w", done+n, len(keys), err)
		}
		if n == 0 {
			return fmt.Errorf("batch delete (%d of %d done): no progress", done, len(keys))
		}
		done += n
	}
	return nil
}

// clearMap deletes every key in m.
func clearMap[K any](m *ebpf.Map) error {
	var keys []K
	var k K
	var v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	return deleteBatch(m, keys)
}

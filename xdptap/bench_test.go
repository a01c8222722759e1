package xdptap

import (
	"time"

	"fmt"
	"golang.org/x/sys/unix"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

// benchRules returns n distinct IPv4 rules: random /24 to /32 prefixes, a third with a
// protocol, a third with a protocol and port (a fixed seed: every run inserts the same).
func benchRules(n int) []Rule {
	r := rand.New(rand.NewPCG(1, 2))
	seen := make(map[Rule]struct{}, n)
	out := make([]Rule, 0, n)
	for len(out) < n {
		a := netip.AddrFrom4([4]byte{byte(r.UintN(224)), byte(r.UintN(256)), byte(r.UintN(256)), byte(r.UintN(256))})
		p := netip.PrefixFrom(a, 24+r.IntN(9)).Masked()
		rule := Rule{Prefix: p}
		switch r.IntN(3) {
		case 1:
			rule.Proto = protoUDP
		case 2:
			rule.Proto, rule.Port = protoTCP, uint16(1+r.UintN(65535))
		}
		if _, ok := seen[rule]; !ok {
			seen[rule] = struct{}{}
			out = append(out, rule)
		}
	}
	return out
}

// newACLMap creates an empty map like the guard's guard_acl4_lo.
func newACLMap(b testing.TB) *ebpf.Map {
	spec, err := builtin()
	if err != nil {
		panic(err)
	}
	m, err := ebpf.NewMap(spec.Maps[xdpMapGuardAcl4Lo])
	if err != nil {
		panic(err)
	}
	return m
}

// BenchmarkACLInsert measures how fast rules go into the guard's ACL: into one LPM trie,
// one BPF_MAP_UPDATE_ELEM per rule against BPF_MAP_UPDATE_BATCH in batches of 4096 and of
// batchSize, each in random and in sorted key order; and the whole UpdateACL path (keys
// built, sorted and diffed against what the maps hold, then batched updates into the two
// shard tries in parallel). Each iteration fills empty maps with the same n IPv4 rules.
// Read rules/s and rules/cpu-s, and the ratios within one run: the machines are shared
// and noisy.
//
//	go test -run '^$' -bench ACLInsert -benchtime 3x ./xdptap/
func BenchmarkACLInsert(b *testing.B) {
	requireXDP(b)
	for _, n := range []int{1 << 16, 1 << 20} {
		rules := benchRules(n)
		keys := make([]xdpAcl4, n)
		for i, r := range rules {
			keys[i] = acl4Key(r)
		}
		sorted := slices.Clone(keys)
		slices.SortFunc(sorted, compareACL4)
		for _, order := range []struct {
			name string
			keys []xdpAcl4
		}{{"random", keys}, {"sorted", sorted}} {
			b.Run(fmt.Sprintf("n=%d/%s/single", n, order.name), func(b *testing.B) {
				benchInsert(b, 1, func(ms []*ebpf.Map) error {
					m, one := ms[0], uint32(1)
					for i := range order.keys {
						if err := m.Put(&order.keys[i], &one); err != nil {
							return err
						}
					}
					return nil
				})
			})
			for _, batch := range []int{4096, batchSize} {
				b.Run(fmt.Sprintf("n=%d/%s/batch=%d", n, order.name, batch), func(b *testing.B) {
					benchInsert(b, 1, func(ms []*ebpf.Map) error {
						for i := 0; i < n; i += batch {
							if err := updateBatch(ms[0], order.keys[i:min(i+batch, n)]); err != nil {
								return err
							}
						}
						return nil
					})
				})
			}
		}
		b.Run(fmt.Sprintf("n=%d/UpdateACL", n), func(b *testing.B) {
			benchInsert(b, 2, func(ms []*ebpf.Map) error {
				g := &guardState{
					acl4: [2]*mapSet[xdpAcl4]{newMapSet(ms[0], MaxRules, compareACL4), newMapSet(ms[1], MaxRules, compareACL4)},
					acl6: [2]*mapSet[xdpAcl6]{newMapSet[xdpAcl6](nil, MaxRules, compareACL6), newMapSet[xdpAcl6](nil, MaxRules, compareACL6)},
				}
				acl, err := aclKeys(rules)
				if err != nil {
					return err
				}
				return g.setACL(acl) // no IPv6 rules: acl6 is not touched
			})
		})
	}
}

// benchInsert times fill on nmaps fresh ACL maps per iteration and reports rules/s
// (wall clock) and rules/cpu-s (the process's user+system CPU time during fill: with
// one thread, the rate the work would reach with a CPU to itself).
func benchInsert(b *testing.B, nmaps int, fill func([]*ebpf.Map) error) {
	var n int
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		ms := make([]*ebpf.Map, nmaps)
		for i := range ms {
			ms[i] = newACLMap(b)
		}
		c0 := cpuTime(b)
		b.StartTimer()
		if err := fill(ms); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += cpuTime(b) - c0
		n = 0
		for _, m := range ms {
			n += countKeys(b, m)
			m.Close()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rules/s")
	b.ReportMetric(float64(n)*float64(b.N)/cpu.Seconds(), "rules/cpu-s")
}

func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func countKeys(b *testing.B, m *ebpf.Map) int {
	var k xdpAcl4
	var v uint32
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		b.Fatal(err)
	}
	return n
}

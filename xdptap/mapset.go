package xdptap

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
)

// mapSet is a BPF map used as a set of keys (values 1), and what it holds as last
// written, so that an update writes only the difference. Keys are kept sorted by order,
// the order in which an LPM trie walks their bits: an insert walks the trie from the root,
// and keys in order walk paths the previous insert left in the cache (1.3 to 2 times
// faster than random order; BenchmarkACLInsert).
type mapSet[K comparable] struct {
	m     *ebpf.Map
	keys  []K  // what m holds, sorted, no duplicates
	known bool // false after a failed update: m's content is unknown
	limit int  // m's max_entries
	order func(a, b K) int
}

func newMapSet[K comparable](m *ebpf.Map, limit int, order func(a, b K) int) *mapSet[K] {
	return &mapSet[K]{m: m, known: true, limit: limit, order: order}
}

// sortKeys sorts keys by order and removes duplicates, in place.
func sortKeys[K comparable](keys []K, order func(a, b K) int) []K {
	slices.SortFunc(keys, order)
	return slices.Compact(keys)
}

// sync makes the map hold exactly want (sorted by s.order, no duplicates: sortKeys). New
// keys go in before old ones come out, unless both together would overflow the map; so a
// key in both sets is never missing. After a failure the map holds part of the update and
// the next sync clears it first.
func (s *mapSet[K]) sync(want []K) error {
	if len(want) > s.limit {
		return fmt.Errorf("%d keys, more than the map's %d", len(want), s.limit)
	}
	if !s.known {
		if err := clearMap[K](s.m); err != nil {
			return err
		}
		s.keys, s.known = nil, true
	}
	// Merge the two sorted lists.
	have := s.keys
	add := make([]K, 0, max(len(want)-len(have), 0))
	var del []K
	i, j := 0, 0
	for i < len(have) || j < len(want) {
		switch {
		case j == len(want):
			del = append(del, have[i])
			i++
		case i == len(have):
			add = append(add, want[j])
			j++
		default:
			switch c := s.order(have[i], want[j]); {
			case c < 0:
				del = append(del, have[i])
				i++
			case c > 0:
				add = append(add, want[j])
				j++
			default:
				i++
				j++
			}
		}
	}
	s.known = false
	if len(have)+len(add) > s.limit { // make room first
		if err := deleteBatch(s.m, del); err != nil {
			return err
		}
		del = nil
	}
	if err := updateBatch(s.m, add); err != nil {
		return err
	}
	if err := deleteBatch(s.m, del); err != nil {
		return err
	}
	s.keys, s.known = want, true
	return nil
}

// batchSize bounds one BPF_MAP_*_BATCH call: the kernel walks the elements one by one
// either way (generic_map_update_batch), so larger batches save nothing measurable and
// cost a larger marshalling buffer.
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
	return inBatches(keys, "update",
		func(chunk []K) (int, error) { return m.BatchUpdate(chunk, vals[:len(chunk)], nil) },
		func(k *K) error { return m.Put(k, &vals[0]) })
}

// deleteBatch deletes keys, batchSize per BPF_MAP_DELETE_BATCH. A key that is not
// there counts as deleted where the kernel deletes one element at a time.
func deleteBatch[K any](m *ebpf.Map, keys []K) error {
	return inBatches(keys, "delete",
		func(chunk []K) (int, error) { return m.BatchDelete(chunk, nil) },
		func(k *K) error {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return err
			}
			return nil
		})
}

// inBatches applies batch to keys, batchSize keys a call; when the kernel has no batch
// operations for the map (ebpf.ErrNotSupported) it applies one to each key not yet done.
// op names the operation in errors.
func inBatches[K any](keys []K, op string, batch func(chunk []K) (int, error), one func(k *K) error) error {
	for done := 0; done < len(keys); {
		n, err := batch(keys[done:min(done+batchSize, len(keys))])
		if errors.Is(err, ebpf.ErrNotSupported) {
			for i := done + n; i < len(keys); i++ {
				if err := one(&keys[i]); err != nil {
					return fmt.Errorf("%s %v: %w", op, keys[i], err)
				}
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("batch %s (%d of %d done): %w", op, done+n, len(keys), err)
		}
		if n == 0 {
			return fmt.Errorf("batch %s (%d of %d done): no progress", op, done, len(keys))
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

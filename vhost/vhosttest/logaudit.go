package vhosttest

import (
	"fmt"

	"github.com/vhostd/vhostd/virtqueue"
)

// LogAuditor checks a device's dirty logging against guest memory. Take a
// snapshot while the guest is still (after it posted its buffers, before
// the device runs), let only the device run, then Check: every byte that
// changed must lie in a page the dirty log marks, or the migration
// destination would get a stale copy of it.
type LogAuditor struct {
	mem  []byte // guest memory from guest-physical address base
	base uint64
	snap []byte
}

// NewLogAuditor audits mem, the guest memory at guest-physical base.
func NewLogAuditor(mem []byte, base uint64) *LogAuditor {
	return &LogAuditor{mem: mem, base: base}
}

// Snapshot records guest memory as it is now.
func (a *LogAuditor) Snapshot() { a.snap = append(a.snap[:0], a.mem...) }

// Check compares guest memory with the snapshot and returns an error
// naming the first changed bytes whose pages log (the bitmap) does not
// mark, and how many such pages there are. It returns the number of
// changed bytes too, so a test can tell that the device wrote at all.
func (a *LogAuditor) Check(log []byte) (changed int, err error) {
	var missed []uint64
	seen := map[uint64]bool{}
	for i := range a.mem {
		if a.mem[i] == a.snap[i] {
			continue
		}
		changed++
		gpa := a.base + uint64(i)
		page := gpa / virtqueue.LogPage
		if page/8 < uint64(len(log)) && log[page/8]&(1<<(page%8)) != 0 {
			continue
		}
		if !seen[page] {
			seen[page] = true
			missed = append(missed, gpa)
		}
	}
	if len(missed) > 0 {
		return changed, fmt.Errorf("%d changed pages not in the dirty log, first at guest-physical %#x", len(missed), missed[0])
	}
	return changed, nil
}

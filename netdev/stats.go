package netdev

import (
	"fmt"
	"strings"
)

// StatsText renders the per-queue counters, one line per queue pair.
func (d *Device) StatsText() string {
	var b strings.Builder
	for i := range d.pairs {
		fmt.Fprintf(&b, "queue %d: (no data path yet)\n", i)
	}
	return b.String()
}

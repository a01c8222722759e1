package xdptap

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// guardCounterNames mirror enum guard_counter in bpf/xdptap.c, in order.
var guardCounterNames = [...]string{
	"xdp_guard_pass",
	"xdp_guard_drop_src_mac",
	"xdp_guard_drop_src_ipv4",
	"xdp_guard_drop_src_ipv6",
	"xdp_guard_drop_arp",
	"xdp_guard_drop_nd",
	"xdp_guard_drop_acl_ipv4",
	"xdp_guard_drop_acl_ipv6",
	"xdp_guard_drop_malformed",
	"xdp_guard_drop_vlan",
}

// switchCounterNames mirror enum switch_counter.
var switchCounterNames = [...]string{"xdp_switch_redirected", "xdp_switch_passed"}

// maxQueues is MAX_QUEUES in bpf/xdptap.c.
const maxQueues = 256

// Counters returns the program's counters, summed over CPUs, by name:
//
//	guard:                    xdp_guard_pass, xdp_guard_drop_<reason> (every reason, zero or not)
//	count, count-drop, reflect: xdp_q<N>_packets, xdp_q<N>_bytes for each TAP queue N that saw a frame
//	switch:                   xdp_switch_redirected, xdp_switch_passed (the whole switch, all ports)
//	object:                   none (read the object's maps with Map)
//
// The names share netdev's counter namespace, so they can be shown next to its counters.
func (a *Attachment) Counters() (map[string]uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrClosed
	}
	out := map[string]uint64{}
	var err error
	switch a.mode {
	case ModeGuard:
		err = sumCounters(a.objs.Maps[xdpMapGuardStats], guardCounterNames[:], out)
	case ModeCount, ModeCountDrop, ModeReflect:
		err = queueCounters(a.objs.Maps[xdpMapQueueStats], out)
	case ModeSwitch:
		err = sumCounters(a.sw.stats, switchCounterNames[:], out)
	}
	if err != nil {
		return nil, fmt.Errorf("xdptap: counters of %s: %w", a, err)
	}
	return out, nil
}

// sumCounters reads a per-CPU array of uint64, one entry per name.
func sumCounters(m *ebpf.Map, names []string, out map[string]uint64) error {
	var per []uint64
	for i, n := range names {
		if err := m.Lookup(uint32(i), &per); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		var s uint64
		for _, v := range per {
			s += v
		}
		out[n] = s
	}
	return nil
}

func queueCounters(m *ebpf.Map, out map[string]uint64) error {
	var per []xdpQueueCount
	for q := range uint32(maxQueues) {
		if err := m.Lookup(q, &per); err != nil {
			return fmt.Errorf("queue %d: %w", q, err)
		}
		var s xdpQueueCount
		for _, v := range per {
			s.Packets += v.Packets
			s.Bytes += v.Bytes
		}
		if s.Packets != 0 {
			out[fmt.Sprintf("xdp_q%d_packets", q)] = s.Packets
			out[fmt.Sprintf("xdp_q%d_bytes", q)] = s.Bytes
		}
	}
	return nil
}

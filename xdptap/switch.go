package xdptap

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/vhostd/vhostd/internal/closeflag"
)

// SwitchConfig configures a Switch.
type SwitchConfig struct {
	// PinPath, if set, is a directory on a BPF filesystem (e.g. /sys/fs/bpf/vhostd) where
	// the switch's maps are pinned by name, so that several vhostd processes share one
	// switch: each adds its own guest's port. Empty: the switch lives in this process.
	PinPath string
}

// Switch is a guest-to-guest fast path: xdp_switch, attached to each local guest's TAP
// (Attach with ModeSwitch), redirects a frame whose destination MAC is another port's
// guest straight into that guest's TAP through a devmap, skipping the bridge. Other frames
// (unknown unicast, broadcast, multicast) pass to the host stack as usual. Ports are added
// explicitly: nothing is learned from traffic, so a guest cannot claim another's MAC.
type Switch struct {
	mu     sync.Mutex // guards closed and the ports' maps against concurrent Close
	closed closeflag.Flag
	objs   *ebpf.Collection
	fdb    *ebpf.Map // switch_fdb: MAC -> ifindex
	ports  *ebpf.Map // switch_ports: ifindex -> ifindex (DEVMAP_HASH)
	stats  *ebpf.Map // switch_stats
	prog   *ebpf.Program
}

// OpenSwitch loads the switch program and its maps.
func OpenSwitch(c SwitchConfig) (*Switch, error) {
	rlimitOnce.Do(removeMemlock)
	spec, err := builtin()
	if err != nil {
		return nil, err
	}
	var opts ebpf.CollectionOptions
	if c.PinPath != "" {
		for _, n := range []string{xdpMapSwitchFdb, xdpMapSwitchPorts, xdpMapSwitchStats} {
			spec.Maps[n].Pinning = ebpf.PinByName
		}
		opts.Maps.PinPath = c.PinPath
	}
	objs, err := loadOnly(spec, progSwitch, opts)
	if err != nil {
		return nil, fmt.Errorf("xdptap: switch: %w", err)
	}
	return &Switch{
		objs: objs, prog: objs.Programs[progSwitch],
		fdb: objs.Maps[xdpMapSwitchFdb], ports: objs.Maps[xdpMapSwitchPorts], stats: objs.Maps[xdpMapSwitchStats],
	}, nil
}

func (s *Switch) program() (*ebpf.Program, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("xdptap: switch closed")
	}
	return s.prog, nil
}

// AddPort makes frames to mac (from any port) go into the TAP ifindex.
// A MAC already on another port moves to this one.
func (s *Switch) AddPort(ifindex int, mac net.HardwareAddr) error {
	if len(mac) != 6 || mac[0]&1 != 0 {
		return fmt.Errorf("xdptap: switch: %v is not a unicast Ethernet address", mac)
	}
	if ifindex <= 0 {
		return fmt.Errorf("xdptap: switch: bad ifindex %d", ifindex)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("xdptap: switch closed")
	}
	if err := s.ports.Put(uint32(ifindex), uint32(ifindex)); err != nil {
		return fmt.Errorf("xdptap: switch: add ifindex %d to %s: %w", ifindex, xdpMapSwitchPorts, err)
	}
	k := xdpMacKey{Addr: [6]byte(mac)}
	if err := s.fdb.Put(&k, uint32(ifindex)); err != nil {
		return fmt.Errorf("xdptap: switch: add %v -> ifindex %d: %w", mac, ifindex, err)
	}
	return nil
}

// RemovePort removes the TAP ifindex and every MAC that pointed at it.
func (s *Switch) RemovePort(ifindex int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("xdptap: switch closed")
	}
	var k xdpMacKey
	var v uint32
	var stale []xdpMacKey
	it := s.fdb.Iterate()
	for it.Next(&k, &v) {
		if v == uint32(ifindex) {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("xdptap: switch: list %s: %w", xdpMapSwitchFdb, err)
	}
	for i := range stale {
		if err := s.fdb.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdptap: switch: remove %v: %w", net.HardwareAddr(stale[i].Addr[:]), err)
		}
	}
	if err := s.ports.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("xdptap: switch: remove ifindex %d: %w", ifindex, err)
	}
	return nil
}

// Close releases this process's handles on the program and maps. Attachments using the
// switch keep the program alive until they are closed; pinned maps stay pinned. Idempotent.
func (s *Switch) Close() error {
	return s.closed.Close(&s.mu, func() error { s.objs.Close(); return nil })
}

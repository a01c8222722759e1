package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/netdev"
	"github.com/vhostd/vhostd/xdptap"
)

// xdpOptions are the --xdp* flags.
type xdpOptions struct {
	mode       string
	guardAddrs string
	acl        string
	object     string
	program    string
	attach     string
	switchPin  string
}

func (x *xdpOptions) register(fs *flag.FlagSet) {
	for _, f := range []struct {
		p                *string
		name, def, usage string
	}{
		{&x.mode, "xdp", "off", "XDP program on the host interface: off, guard, count, count-drop, reflect, switch (an --xdp-object sets it to object)"},
		{&x.guardAddrs, "xdp-guard-addrs", "", "guard: the guest's allowed source addresses or prefixes, comma-separated (its MAC comes from --mac)"},
		{&x.acl, "xdp-acl", "", "guard: a rules file of denied destinations ('deny PREFIX [PROTO [PORT]]'), re-read on SIGHUP"},
		{&x.object, "xdp-object", "", "load your own XDP program from this ELF object"},
		{&x.program, "xdp-program", "", "with --xdp-object: the program's name (optional if the object has one)"},
		{&x.attach, "xdp-attach", "auto", "auto (native on a TAP, generic on a macvtap), native or generic"},
		{&x.switchPin, "xdp-switch-pin", "", "switch: a bpffs path where vhostd processes share the switch's maps"},
	} {
		fs.StringVar(f.p, f.name, f.def, f.usage)
	}
}

// config validates the flags into an xdptap configuration; mode off
// returns ok == false.
func (x *xdpOptions) config(mac net.HardwareAddr) (cfg xdptap.Config, ok bool, err error) {
	if x.object != "" {
		if x.mode != "off" && x.mode != "object" {
			return cfg, false, fmt.Errorf("--xdp-object and --xdp %s are incompatible", x.mode)
		}
		x.mode = "object"
	} else if x.program != "" {
		return cfg, false, errors.New("--xdp-program needs --xdp-object")
	}
	mode, err := xdptap.ParseMode(x.mode)
	if err != nil {
		return cfg, false, fmt.Errorf("--xdp: %w", err)
	}
	if mode == xdptap.ModeOff {
		if x.guardAddrs != "" || x.acl != "" || x.switchPin != "" {
			return cfg, false, errors.New("--xdp-guard-addrs, --xdp-acl and --xdp-switch-pin need an --xdp program")
		}
		return cfg, false, nil
	}
	cfg.Mode, cfg.ObjectFile, cfg.ProgramName = mode, x.object, x.program
	switch x.attach {
	case "auto":
	case "native":
		cfg.Attach = xdptap.AttachNative
	case "generic":
		cfg.Attach = xdptap.AttachGeneric
	default:
		return cfg, false, fmt.Errorf("--xdp-attach %q: want auto, native or generic", x.attach)
	}
	if (x.guardAddrs != "" || x.acl != "") && mode != xdptap.ModeGuard {
		return cfg, false, errors.New("--xdp-guard-addrs and --xdp-acl belong to --xdp guard")
	}
	if mode == xdptap.ModeGuard {
		if mac == nil {
			return cfg, false, errors.New("--xdp guard needs the guest's MAC: give --mac")
		}
		v4, v6, err := xdptap.ParseAddrList(x.guardAddrs)
		if err != nil {
			return cfg, false, fmt.Errorf("--xdp-guard-addrs: %w", err)
		}
		cfg.Guard = xdptap.GuardConfig{MAC: mac, IPv4: v4, IPv6: append(v6, xdptap.EUI64LinkLocal(mac)), AllowDHCP: true}
		if x.acl != "" {
			if cfg.ACL, err = xdptap.ParseRulesFile(x.acl); err != nil {
				return cfg, false, fmt.Errorf("--xdp-acl: %w", err)
			}
		}
	}
	return cfg, true, nil
}

// xdpState is an attached program and what it needs at run time. mu
// guards a: the host interface can come back under a new ifindex (the
// netdev host watch calls reattach) while signals read counters or reload
// the ACL.
type xdpState struct {
	mu  sync.Mutex
	a   *xdptap.Attachment
	sw  *xdptap.Switch
	cfg xdptap.Config
	mac net.HardwareAddr
	acl string
	log hclog.Logger
}

// attachXDP attaches the configured program to dev's interface, and again
// to the interface that replaces it if it goes away and comes back.
// Failures are reported in plain words: no silent fallback.
func attachXDP(x *xdpOptions, cfg xdptap.Config, dev *netdev.Device, mac net.HardwareAddr, log hclog.Logger) (*xdpState, error) {
	st := &xdpState{cfg: cfg, mac: mac, acl: x.acl, log: log}
	st.cfg.Macvtap = dev.Macvtap()
	if cfg.Mode == xdptap.ModeSwitch {
		sw, err := xdptap.OpenSwitch(xdptap.SwitchConfig{PinPath: x.switchPin})
		if err != nil {
			return nil, fmt.Errorf("xdp switch: %w", err)
		}
		st.cfg.Switch, st.sw = sw, sw
	}
	if err := st.attach(dev.Ifindex()); err != nil {
		if st.sw != nil {
			st.sw.Close()
		}
		return nil, fmt.Errorf("xdp on %s: %w", dev.Name(), err)
	}
	dev.OnReattach(st.reattach)
	return st, nil
}

// attach attaches the program to ifindex (and makes it a switch port).
// s.mu held, or s not yet shared.
func (s *xdpState) attach(ifindex int) error {
	if s.sw != nil && s.mac != nil {
		if err := s.sw.AddPort(ifindex, s.mac); err != nil {
			return fmt.Errorf("switch port: %w", err)
		}
	}
	a, err := xdptap.Attach(ifindex, s.cfg)
	if err != nil {
		if s.sw != nil && s.mac != nil {
			s.sw.RemovePort(ifindex)
		}
		return err
	}
	s.a = a
	s.log.Info("XDP program attached", "program", a.String(), "mode", a.Mode().String())
	return nil
}

// reattach moves the program, with its maps and counters, to the host
// interface that came back as ifindex, before any frame flows through it
// (netdev.Device.OnReattach). Nothing is loaded again: a sandboxed vhostd
// keeps the capability to attach (CAP_NET_ADMIN), not to load.
func (s *xdpState) reattach(ifindex int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.a == nil {
		return errors.New("xdp: no program to move (closed)")
	}
	old := s.a.Ifindex()
	port := s.sw != nil && s.mac != nil
	if port {
		if err := s.sw.AddPort(ifindex, s.mac); err != nil {
			return fmt.Errorf("xdp switch port: %w", err)
		}
	}
	if err := s.a.Move(ifindex); err != nil {
		if port {
			s.sw.RemovePort(ifindex)
		}
		return err
	}
	if port {
		s.sw.RemovePort(old)
	}
	s.log.Info("XDP program moved to the interface that came back", "program", s.a.String())
	return nil
}

// detach releases the current attachment, if any. s.mu held.
func (s *xdpState) detach() {
	if s.a == nil {
		return
	}
	if s.sw != nil && s.mac != nil {
		s.sw.RemovePort(s.a.Ifindex())
	}
	s.a.Close()
	s.a = nil
}

// reload re-reads the ACL file (SIGHUP).
func (s *xdpState) reload() {
	if s == nil || s.acl == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.a == nil {
		s.log.Error("ACL not changed: no XDP program attached (the host interface is gone)", "file", s.acl)
		return
	}
	n, err := s.a.LoadRules(s.acl)
	if err != nil {
		s.log.Error("ACL not changed", "file", s.acl, "error", err)
		return
	}
	s.log.Info("ACL reloaded", "file", s.acl, "rules", n)
}

// statsText renders the program's counters on one line.
func (s *xdpState) statsText() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.a == nil {
		return "xdp: not attached (the host interface is gone)\n"
	}
	c, err := s.a.Counters()
	if err != nil {
		return fmt.Sprintf("xdp: counters unavailable: %v\n", err)
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("xdp:")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, c[k])
	}
	b.WriteByte('\n')
	return b.String()
}

func (s *xdpState) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detach()
	if s.sw != nil {
		s.sw.Close()
	}
}

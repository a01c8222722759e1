package xdptap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vhostd/vhostd/internal/closeflag"
)

// Mode is the program Attach puts on the TAP.
type Mode uint8

const (
	// ModeOff attaches nothing; Attach refuses it.
	ModeOff Mode = iota
	// ModeGuard polices the guest's source addresses and applies the ACL (xdp_guard).
	ModeGuard
	// ModeCount counts frames and bytes per TAP queue and passes them (xdp_count).
	ModeCount
	// ModeCountDrop counts like ModeCount and drops: the perf harness's sink (xdp_count_drop).
	ModeCountDrop
	// ModeReflect redirects every frame back into the same TAP (xdp_reflect).
	ModeReflect
	// ModeSwitch redirects frames for another local guest's MAC into its TAP (xdp_switch).
	ModeSwitch
	// ModeObject loads Config.ProgramName from the user's Config.ObjectFile.
	ModeObject
)

var modeNames = [...]string{"off", "guard", "count", "count-drop", "reflect", "switch", "object"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", m)
}

// ParseMode parses a Mode's String form, as a --xdp flag would take it.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if s == n {
			return Mode(i), nil
		}
	}
	return ModeOff, fmt.Errorf("xdptap: unknown XDP mode %q (want off, guard, count, count-drop, reflect, switch or object)", s)
}

// AttachMode is how the program hooks into the device.
type AttachMode uint8

const (
	// AttachAuto is native on a TAP and generic on a macvtap, whose driver has no native
	// XDP. It never falls back: if that mode fails, Attach fails.
	AttachAuto AttachMode = iota
	// AttachNative runs the program in the driver (tun's XDP path, before any skb).
	AttachNative
	// AttachGeneric runs the program on the skb, after the driver (XDP_FLAGS_SKB_MODE).
	AttachGeneric
)

func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachNative:
		return "native"
	case AttachGeneric:
		return "generic"
	}
	return fmt.Sprintf("AttachMode(%d)", m)
}

// Config says what Attach loads and how.
type Config struct {
	Mode Mode
	// Macvtap is set when ifindex is a macvtap: AttachAuto then means generic.
	Macvtap bool
	// Attach forces a mode; the zero value is AttachAuto.
	Attach AttachMode

	// Guard is ModeGuard's policy; ACL its initial denied destinations.
	Guard GuardConfig
	ACL   []Rule

	// Switch is ModeSwitch's shared switch (OpenSwitch); the attachment does not own it.
	Switch *Switch

	// ObjectFile and ProgramName select ModeObject's program: an ELF BPF object and the
	// name of an XDP program in it (may be empty if the object has exactly one).
	ObjectFile  string
	ProgramName string
}

// GuardConfig is what the guest may send as: its MAC, and the source prefixes it may use.
// An empty IPv4 (IPv6) list means the guest may send no IPv4 (IPv6) at all, apart from
// DHCP (AllowDHCP), ARP probes and duplicate address detection. IPv6 link-local addresses
// are not implied: list the guest's own (EUI64LinkLocal) or fe80::/64 to allow them.
type GuardConfig struct {
	MAC  net.HardwareAddr
	IPv4 []netip.Prefix
	IPv6 []netip.Prefix
	// AllowDHCP lets the guest send from 0.0.0.0 UDP port 68 to port 67 (a DHCP client
	// without an address yet).
	AllowDHCP bool
}

// EUI64LinkLocal is the IPv6 link-local address (as a /128) a guest derives from its MAC
// with modified EUI-64 (RFC 4291 appendix A), the one Linux guests use by default
// (addr_gen_mode 0). Guests with stable-privacy addresses need their own address listed.
func EUI64LinkLocal(mac net.HardwareAddr) netip.Prefix {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	if len(mac) == 6 {
		a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15] = mac[0]^2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), 128)
}

// maxSources is the capacity of the allowed source sets (guard_src4/6 in bpf/xdptap.c).
const maxSources = 1024

// Attachment is one program attached to one device through a BPF link: the program goes
// away when Close is called or the process exits. Methods are safe for concurrent use.
type Attachment struct {
	ifindex int
	mode    Mode
	attach  AttachMode // what was used: native or generic
	prog    string     // program name, for messages

	mu     sync.Mutex // guards everything below
	closed closeflag.Flag
	link   link.Link
	// program and flags are what the link was made from, for Move.
	program *ebpf.Program
	flags   link.XDPAttachFlags
	objs    *ebpf.Collection // the loaded program and maps this attachment owns
	guard   *guardState      // ModeGuard
	sw      *Switch          // ModeSwitch: shared, not owned
}

var rlimitOnce sync.Once

// Attach loads the program c asks for, prepares its maps and attaches it to the device
// ifindex through a BPF link. It reports every failure in plain words (a verifier
// rejection as a *VerifierError with the log's tail) and never falls back silently from
// native to generic mode: Mode says which one is in use.
func Attach(ifindex int, c Config) (*Attachment, error) {
	if ifindex <= 0 {
		return nil, fmt.Errorf("xdptap: attach: bad ifindex %d", ifindex)
	}
	if len(c.ACL) > 0 && c.Mode != ModeGuard {
		return nil, fmt.Errorf("xdptap: attach: an ACL needs mode guard, not %v", c.Mode)
	}
	if c.Macvtap && (c.Mode == ModeGuard || c.Mode == ModeReflect || c.Mode == ModeSwitch) {
		// See the package doc, "macvtap".
		return nil, fmt.Errorf("xdptap: attach: %v does not work on a macvtap: frames the guest writes leave through the lower device's transmit path and never reach XDP on the macvtap; use a TAP", c.Mode)
	}
	flags, used, err := attachFlags(c)
	if err != nil {
		return nil, err
	}
	rlimitOnce.Do(removeMemlock)
	a := &Attachment{ifindex: ifindex, mode: c.Mode, attach: used}
	var prog *ebpf.Program
	switch c.Mode {
	case ModeOff:
		return nil, errors.New("xdptap: attach: mode off attaches nothing")
	case ModeGuard:
		prog, err = a.loadGuard(c)
	case ModeCount, ModeCountDrop, ModeReflect:
		prog, err = a.loadCounting(c.Mode, ifindex)
	case ModeSwitch:
		if c.Switch == nil {
			return nil, errors.New("xdptap: attach: mode switch needs Config.Switch (OpenSwitch)")
		}
		a.sw = c.Switch
		a.prog = progSwitch
		prog, err = c.Switch.program()
	case ModeObject:
		prog, err = a.loadObject(c.ObjectFile, c.ProgramName)
	default:
		return nil, fmt.Errorf("xdptap: attach: unknown mode %v", c.Mode)
	}
	if err != nil {
		a.release()
		return nil, err
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
	if err != nil {
		a.release()
		return nil, attachError(a.prog, ifindex, used, c.Attach, err)
	}
	a.link, a.program, a.flags = l, prog, flags
	return a, nil
}

// Move attaches the loaded program, with its maps and counters, to the device ifindex
// instead: the device it was on went away and came back under a new index. Nothing is
// loaded again, so it needs no more than attaching does (a BPF link; CAP_NET_ADMIN), not
// the privileges of a load. On failure the attachment is unchanged.
func (a *Attachment) Move(ifindex int) error {
	if ifindex <= 0 {
		return fmt.Errorf("xdptap: move: bad ifindex %d", ifindex)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.mode == ModeReflect {
		if err := a.objs.Maps[xdpMapReflectPort].Put(uint32(0), uint32(ifindex)); err != nil {
			return fmt.Errorf("xdptap: move: reflect: put ifindex %d: %w", ifindex, err)
		}
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: a.program, Interface: ifindex, Flags: a.flags})
	if err != nil {
		return attachError(a.prog, ifindex, a.attach, a.attach, err)
	}
	a.link.Close() // its device is gone: the close only releases the link
	a.link, a.ifindex = l, ifindex
	return nil
}

func attachFlags(c Config) (link.XDPAttachFlags, AttachMode, error) {
	switch c.Attach {
	case AttachAuto:
		if c.Macvtap {
			return link.XDPGenericMode, AttachGeneric, nil
		}
		return link.XDPDriverMode, AttachNative, nil
	case AttachNative:
		if c.Macvtap {
			return 0, 0, errors.New("xdptap: attach: macvtap has no native XDP; use generic mode")
		}
		return link.XDPDriverMode, AttachNative, nil
	case AttachGeneric:
		return link.XDPGenericMode, AttachGeneric, nil
	}
	return 0, 0, fmt.Errorf("xdptap: attach: unknown attach mode %v", c.Attach)
}

func attachError(prog string, ifindex int, used, asked AttachMode, err error) error {
	name := fmt.Sprintf("ifindex %d", ifindex)
	if ifi, e := net.InterfaceByIndex(ifindex); e == nil {
		name = fmt.Sprintf("%s (ifindex %d)", ifi.Name, ifindex)
	}
	hint := ""
	if used == AttachNative && asked == AttachAuto {
		hint = "; not falling back to generic mode: ask for it explicitly if that is what you want"
	}
	return fmt.Errorf("xdptap: attach XDP program %s to %s in %s mode: %w%s", prog, name, used, err, hint)
}

// Ifindex is the device the program is attached to.
func (a *Attachment) Ifindex() int { return a.ifindex }

// Program is the mode Attach was asked for.
func (a *Attachment) Program() Mode { return a.mode }

// Mode is the attach mode in use: AttachNative or AttachGeneric, never AttachAuto.
func (a *Attachment) Mode() AttachMode { return a.attach }

// String describes the attachment for a log line, e.g. "xdp_guard native on ifindex 7".
func (a *Attachment) String() string {
	return fmt.Sprintf("%s %s on ifindex %d", a.prog, a.attach, a.ifindex)
}

// Close detaches the program and releases its maps. Idempotent.
func (a *Attachment) Close() error { return a.closed.Close(&a.mu, a.close) }

func (a *Attachment) close() error {
	var err error
	if a.link != nil {
		if e := a.link.Close(); e != nil {
			err = fmt.Errorf("xdptap: detach %s: %w", a, e)
		}
	}
	a.release()
	return err
}

// release closes what the attachment owns, except the link.
func (a *Attachment) release() {
	if a.objs != nil {
		a.objs.Close()
		a.objs = nil
	}
	a.guard = nil
}

// ErrClosed is returned by an Attachment's methods after Close: the program is detached
// and its maps are gone; Attach again to get them back.
var ErrClosed = errors.New("xdptap: attachment closed")

// removeMemlock lifts RLIMIT_MEMLOCK for kernels that still charge BPF memory to it
// (before 5.11); a no-op on kernels with memcg accounting.
func removeMemlock() { _ = rlimit.RemoveMemlock() }

// ParseAddrList parses a comma-separated list of addresses and prefixes, as a flag would
// give the guard's allowed sources ("10.0.0.2,2001:db8::2/128,fe80::/64"), into IPv4 and
// IPv6 prefixes. A bare address is a /32 or /128; host bits are cleared. Spaces around
// items and empty items are ignored.
func ParseAddrList(s string) (ipv4, ipv6 []netip.Prefix, err error) {
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			p, err = netip.ParsePrefix(item)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(item); err == nil {
				if a.Zone() != "" {
					return nil, nil, fmt.Errorf("xdptap: address %q has a zone", item)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("xdptap: address list: %w", err)
		}
		switch a := p.Addr(); {
		case a.Is4In6():
			return nil, nil, fmt.Errorf("xdptap: address list: %v is IPv4-mapped IPv6: write the IPv4 form", p)
		case a.Is4():
			ipv4 = append(ipv4, p.Masked())
		default:
			ipv6 = append(ipv6, p.Masked())
		}
	}
	return ipv4, ipv6, nil
}

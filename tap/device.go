package tap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/vhostd/vhostd/internal/closeflag"
	"golang.org/x/sys/unix"
)

// Kind says which driver a Device talks to.
type Kind uint8

const (
	// KindTAP is a tun/tap device in TAP mode, opened through /dev/net/tun (drivers/net/tun.c).
	KindTAP Kind = iota + 1
	// KindMacvtap is a macvtap (or ipvtap) device, opened through its /dev/tapN character
	// device (drivers/net/tap.c). Each open of the character device is one queue.
	KindMacvtap
)

func (k Kind) String() string {
	switch k {
	case KindTAP:
		return "tap"
	case KindMacvtap:
		return "macvtap"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MaxQueues is the most queues one device takes: MAX_TAP_QUEUES in tun.c and tap.c.
const MaxQueues = 256

// tapFlags are the TUNSETIFF flags for every queue: a TAP (Ethernet frames), no packet-info
// prefix, the virtio-net header in front of every frame, one fd per queue
// (include/uapi/linux/if_tun.h).
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_MULTI_QUEUE

// Config describes the device to open.
type Config struct {
	// Name is the interface. OpenTAP creates it if it does not exist ("" lets the kernel
	// pick tapN) or attaches to it if it does (an existing TAP must be multi_queue:
	// `ip tuntap add NAME mode tap multi_queue`). OpenMacvtap needs an existing macvtap.
	Name string
	// Queues is the number of queue pairs (fds), 1 to MaxQueues; 0 means 1.
	Queues int
	// Persist keeps a TAP that OpenTAP created after Close (TUNSETPERSIST). By default a
	// TAP we created disappears with our last fd; a TAP that existed is never removed.
	// Ignored for macvtap (its lifetime is the link's).
	Persist bool
	// MustExist makes OpenTAP attach only: a missing interface is an error (ErrNoInterface)
	// instead of a new TAP. Reattaching to an interface that went away uses it.
	MustExist bool
}

// ErrNoInterface is OpenTAP's error for a missing interface with Config.MustExist.
var ErrNoInterface = errors.New("no such interface")

// Device is an open TAP or macvtap with its queues. Its control methods (SetOffload, SetMTU,
// SetMAC, SetUp, ...) are safe for concurrent use and act in the network namespace the device
// was opened in, whatever thread calls them. Queue I/O belongs to each queue's owner.
type Device struct {
	name    string
	kind    Kind
	ifindex int
	created bool
	persist bool
	queues  []*Queue

	// mu guards ctl (the control socket, closed by Close) and closed.
	mu     sync.Mutex
	ctl    int
	closed closeflag.Flag
}

// ErrClosed is returned by control methods after Close.
var ErrClosed = errors.New("tap: device closed")

// OpenTAP opens (creating if needed) the TAP c.Name with c.Queues queues, every fd
// O_NONBLOCK|O_CLOEXEC with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR|IFF_MULTI_QUEUE, a 12-byte
// little-endian virtio-net header, and no offloads (call SetOffload once the guest acked
// features). The link is left as it was (a new TAP is down: call SetUp).
//
// Nonblocking matters: tun's build_skb fast path runs only for nonblocking writers
// (DESIGN.md: 1.71 vs 0.79 Mpps).
func OpenTAP(c Config) (*Device, error) {
	nq, err := c.queues()
	if err != nil {
		return nil, err
	}
	if len(c.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap: open %q: name longer than %d bytes", c.Name, unix.IFNAMSIZ-1)
	}
	d := &Device{kind: KindTAP, name: c.Name, ctl: -1}
	if d.ctl, err = controlSocket(); err != nil {
		return nil, fmt.Errorf("tap: open %q: %w", c.Name, err)
	}
	if c.Name != "" {
		_, err := d.lookupIndex()
		d.created = errors.Is(err, unix.ENODEV)
		if d.created && c.MustExist {
			d.Close()
			return nil, fmt.Errorf("tap: attach to %q: %w", c.Name, ErrNoInterface)
		}
	} else {
		d.created = true
	}
	for i := 0; i < nq; i++ {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("tap: open /dev/net/tun: %w", err)
		}
		d.queues = append(d.queues, &Queue{fd: fd, index: i})
		ifr, err := unix.NewIfreq(d.name)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("tap: open %q: %w", d.name, err)
		}
		ifr.SetUint16(tapFlags)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			d.Close()
			if errors.Is(err, unix.EINVAL) && !d.created {
				return nil, fmt.Errorf("tap: attach to %q queue %d: %w (an existing interface must be a multi_queue TAP: ip tuntap add NAME mode tap multi_queue)", d.name, i, err)
			}
			return nil, fmt.Errorf("tap: TUNSETIFF %q queue %d: %w", d.name, i, err)
		}
		d.name = ifr.Name() // the kernel's choice when Name was "" or had a %d
		if err := setVnetHdr(fd); err != nil {
			d.Close()
			return nil, fmt.Errorf("tap: %q queue %d: %w", d.name, i, err)
		}
	}
	if d.created && c.Persist {
		if err := unix.IoctlSetInt(d.queues[0].fd, unix.TUNSETPERSIST, 1); err != nil {
			d.Close()
			return nil, fmt.Errorf("tap: TUNSETPERSIST %q: %w", d.name, err)
		}
		d.persist = true
	}
	if d.ifindex, err = d.lookupIndex(); err != nil {
		d.Close()
		return nil, fmt.Errorf("tap: ifindex of %q: %w", d.name, err)
	}
	return d, nil
}

// OpenMacvtap opens c.Queues queues on the existing macvtap (or ipvtap) c.Name, which must be
// in the caller's network namespace. Each queue is one open of the character device
// /dev/tap<ifindex>, O_NONBLOCK|O_CLOEXEC, set to IFF_TAP|IFF_NO_PI|IFF_VNET_HDR|
// IFF_MULTI_QUEUE with a 12-byte little-endian header and no offloads.
//
// /dev/tapN is named after an ifindex, and ifindexes repeat across network namespaces, so
// the node may be missing (no devtmpfs) or belong to another namespace's device. OpenMacvtap
// checks each fd with TUNGETIFF; when /dev/tapN is missing or is another device, it reads
// major:minor from /sys/class/net/NAME/{macvtap,ipvtap}/tapN/dev (this needs a sysfs mounted
// from the device's namespace), creates a private node in a temporary directory, opens it
// and removes it.
func OpenMacvtap(c Config) (*Device, error) {
	return openMacvtap(c, "/dev", "/sys")
}

func openMacvtap(c Config, devDir, sysDir string) (*Device, error) {
	nq, err := c.queues()
	if err != nil {
		return nil, err
	}
	if c.Name == "" || len(c.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap: open macvtap %q: bad name", c.Name)
	}
	d := &Device{kind: KindMacvtap, name: c.Name, ctl: -1}
	if d.ctl, err = controlSocket(); err != nil {
		return nil, fmt.Errorf("tap: open macvtap %q: %w", c.Name, err)
	}
	if d.ifindex, err = d.lookupIndex(); err != nil {
		d.Close()
		return nil, fmt.Errorf("tap: open macvtap %q: %w", c.Name, err)
	}
	node := filepath.Join(devDir, "tap"+strconv.Itoa(d.ifindex))
	var tmpDir string
	defer func() {
		if tmpDir != "" {
			os.RemoveAll(tmpDir)
		}
	}()
	for i := 0; i < nq; i++ {
		fd, err := openMacvtapQueue(node, d.name)
		if err != nil && tmpDir == "" && (errors.Is(err, unix.ENOENT) || errors.Is(err, errWrongDevice)) {
			// Make our own node from sysfs and use it for this and every later queue.
			var dev uint64
			dev, err = macvtapDevNum(sysDir, d.name, d.ifindex)
			if err == nil {
				tmpDir, err = os.MkdirTemp("", "vhostd-macvtap-")
			}
			if err == nil {
				node = filepath.Join(tmpDir, "tap"+strconv.Itoa(d.ifindex))
				err = unix.Mknod(node, unix.S_IFCHR|0o600, int(dev))
			}
			if err == nil {
				fd, err = openMacvtapQueue(node, d.name)
			}
		}
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("tap: open macvtap %q queue %d: %w", d.name, i, err)
		}
		d.queues = append(d.queues, &Queue{fd: fd, index: i})
	}
	return d, nil
}

var errWrongDevice = errors.New("character device belongs to another interface")

// openMacvtapQueue opens one queue on node and checks, with TUNGETIFF, that it is name's.
func openMacvtapQueue(node, name string) (int, error) {
	fd, err := unix.Open(node, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	ifr, _ := unix.NewIfreq("")
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNGETIFF %s: %w", node, err)
	}
	if got := ifr.Name(); got != name {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is %q, not %q: %w", node, got, name, errWrongDevice)
	}
	// tap.c accepts exactly IFF_TAP|IFF_NO_PI plus IFF_VNET_HDR and IFF_MULTI_QUEUE.
	ifr, _ = unix.NewIfreq("")
	ifr.SetUint16(tapFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %s: %w", node, err)
	}
	if err := setVnetHdr(fd); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", node, err)
	}
	return fd, nil
}

// macvtapDevNum reads the character device number of name's tapN from sysfs, after checking
// that this sysfs shows the same interface (same ifindex), i.e. the same network namespace.
func macvtapDevNum(sysDir, name string, ifindex int) (uint64, error) {
	base := filepath.Join(sysDir, "class/net", name)
	b, err := os.ReadFile(filepath.Join(base, "ifindex"))
	if err != nil {
		return 0, fmt.Errorf("no /dev node and no sysfs view of %q: %w", name, err)
	}
	if got, _ := strconv.Atoi(strings.TrimSpace(string(b))); got != ifindex {
		return 0, fmt.Errorf("sysfs %s is ifindex %d, not %d (sysfs from another network namespace)", base, got, ifindex)
	}
	tapN := "tap" + strconv.Itoa(ifindex)
	for _, class := range []string{"macvtap", "ipvtap"} {
		b, err = os.ReadFile(filepath.Join(base, class, tapN, "dev"))
		if err == nil {
			var major, minor uint32
			if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
				return 0, fmt.Errorf("parse %s/%s/dev: %w", class, tapN, err)
			}
			return unix.Mkdev(major, minor), nil
		}
	}
	return 0, fmt.Errorf("%q is not a macvtap or ipvtap: %w", name, err)
}

// setVnetHdr sets the 12-byte header and little-endian header fields (VERSION_1) on fd.
func setVnetHdr(fd int) error {
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		return fmt.Errorf("TUNSETVNETHDRSZ %d: %w", VnetHdrLen, err)
	}
	// On a little-endian host the header is little-endian anyway; TUNSETVNETLE makes it
	// so on big-endian hosts too. Kernels without it (before 4.1) only run LE here.
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("TUNSETVNETLE: %w", err)
	}
	return nil
}

func (c Config) queues() (int, error) {
	switch {
	case c.Queues == 0:
		return 1, nil
	case c.Queues < 0 || c.Queues > MaxQueues:
		return 0, fmt.Errorf("tap: %d queues: want 1 to %d", c.Queues, MaxQueues)
	}
	return c.Queues, nil
}

// Name returns the interface name (the kernel's choice when Config.Name was empty).
func (d *Device) Name() string { return d.name }

// Kind returns KindTAP or KindMacvtap.
func (d *Device) Kind() Kind { return d.kind }

// Ifindex returns the interface index, looked up when the device was opened.
func (d *Device) Ifindex() int { return d.ifindex }

// Created reports whether OpenTAP created the TAP (and so removes it on Close unless
// Config.Persist was set).
func (d *Device) Created() bool { return d.created }

// NumQueues returns the number of queues.
func (d *Device) NumQueues() int { return len(d.queues) }

// Queue returns queue i (0 <= i < NumQueues()).
func (d *Device) Queue(i int) *Queue { return d.queues[i] }

// Close closes every queue and the control socket. A TAP we created without Persist goes
// away with its last fd; a TAP that existed before, and any macvtap, stays. Close is
// idempotent. Precondition: no queue I/O is running.
func (d *Device) Close() error { return d.closed.Close(&d.mu, d.close) }

func (d *Device) close() error {
	var first error
	for _, q := range d.queues {
		if err := q.Close(); err != nil && first == nil {
			first = err
		}
	}
	if d.ctl >= 0 {
		unix.Close(d.ctl)
		d.ctl = -1
	}
	if first != nil {
		return fmt.Errorf("tap: close %q: %w", d.name, first)
	}
	return nil
}

// SetOffload sets the receive offloads (TUNSETOFFLOAD) to o.Effective() on every queue: what
// the TAP may hand us for the guest (partial checksums, TSO/USO super-frames). Call it with
// what the guest acked (GUEST_CSUM, GUEST_TSO4, ...). It returns the bits applied: o minus
// the bits Effective drops (segmentation without CSUM, ECN without TSO, one USO without the
// other) and minus USO4|USO6 if the kernel predates them (EINVAL; then the set is retried
// without USO). Transmit offloads need no call: the kernel honours any valid header we write.
func (d *Device) SetOffload(o Offloads) (applied Offloads, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	for i, q := range d.queues {
		set := func(flags uint32) error {
			return unix.IoctlSetInt(q.fd, unix.TUNSETOFFLOAD, int(flags))
		}
		a, err := applyOffload(o, set)
		if err != nil {
			return 0, fmt.Errorf("tap: TUNSETOFFLOAD %q queue %d (%v): %w", d.name, i, o.Effective(), err)
		}
		applied = a // offloads are per device in tun.c and tap.c; setting each queue is harmless
	}
	return applied, nil
}

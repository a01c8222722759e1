package tap

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// controlSocket opens the socket that carries the SIOC*IF* ioctls. It is opened once, at
// OpenTAP/OpenMacvtap, so that the ioctls act in that network namespace even when a later
// caller runs on a thread in another one. Any socket family reaches dev_ioctl; a unix
// socket is the one vhostd's seccomp filter allows after start-up, so that reopening an
// interface that came back (netdev's reattach) stays inside the filter.
func controlSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("control socket: %w", err)
	}
	return fd, nil
}

// ifreqCall runs one SIOC* ioctl with an ifreq for d.name, under d.mu.
func (d *Device) ifreqCall(req uint, set func(*unix.Ifreq)) (*unix.Ifreq, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	return d.ifreqLocked(req, set)
}

func (d *Device) ifreqLocked(req uint, set func(*unix.Ifreq)) (*unix.Ifreq, error) {
	ifr, err := unix.NewIfreq(d.name)
	if err != nil {
		return nil, err
	}
	if set != nil {
		set(ifr)
	}
	if err := unix.IoctlIfreq(d.ctl, req, ifr); err != nil {
		return nil, err
	}
	return ifr, nil
}

// getInt runs a SIOCGIF* ioctl whose answer is one int in the ifreq (ifr_ifindex,
// ifr_mtu), under d.mu.
func (d *Device) getInt(req uint) (int, error) {
	ifr, err := d.ifreqCall(req, nil)
	if err != nil {
		return 0, err
	}
	return int(int32(ifr.Uint32())), nil
}

// setInt runs a SIOCSIF* ioctl that takes one int in the ifreq (ifr_mtu, ifr_qlen),
// under d.mu.
func (d *Device) setInt(req uint, v int) error {
	_, err := d.ifreqCall(req, func(r *unix.Ifreq) { r.SetUint32(uint32(v)) })
	return err
}

// lookupIndex asks the kernel for d.name's ifindex (SIOCGIFINDEX); ENODEV if there is none.
func (d *Device) lookupIndex() (int, error) {
	ifr, err := d.ifreqLocked(unix.SIOCGIFINDEX, nil)
	if err != nil {
		return 0, err
	}
	return int(int32(ifr.Uint32())), nil
}

// LookupIfindex returns the current ifindex of d's interface (SIOCGIFINDEX); ENODEV
// (wrapped) when the interface is gone.
func (d *Device) LookupIfindex() (int, error) {
	return d.getNamed(unix.SIOCGIFINDEX, "ifindex")
}

// getNamed runs getInt and names the setting what and the interface in
// its error.
func (d *Device) getNamed(req uint, what string) (int, error) {
	n, err := d.getInt(req)
	if err != nil {
		return 0, fmt.Errorf("tap: %s of %q: %w", what, d.name, err)
	}
	return n, nil
}

// SetMTU sets the interface MTU (SIOCSIFMTU). The frames this device carries are then up to
// mtu + 14 (+4 with a VLAN tag) bytes after the header, or 64 KiB with GSO offloads.
func (d *Device) SetMTU(mtu int) error {
	return d.setBounded(unix.SIOCSIFMTU, "MTU", mtu, 1, 1<<20)
}

// MTU returns the interface MTU (SIOCGIFMTU).
func (d *Device) MTU() (int, error) {
	return d.getNamed(unix.SIOCGIFMTU, "MTU")
}

// SetTxQueueLen sets the interface's txqueuelen (SIOCSIFTXQLEN). For a TAP this is also the
// length of each queue's ring toward us: frames beyond it are dropped by tun while we do not
// read (counted in the TAP's tx_dropped).
func (d *Device) SetTxQueueLen(n int) error {
	return d.setBounded(unix.SIOCSIFTXQLEN, "txqueuelen", n, 0, 1<<30)
}

// setBounded sets the interface's integer setting what with req, after checking that v lies
// in [lo, hi].
func (d *Device) setBounded(req uint, what string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("tap: set %s of %q to %d: out of range", what, d.name, v)
	}
	if err := d.setInt(req, v); err != nil {
		return fmt.Errorf("tap: set %s of %q to %d: %w", what, d.name, v, err)
	}
	return nil
}

// SetMAC sets the interface's Ethernet address (SIOCSIFHWADDR). That is the host side's
// address, not the guest's. macvtap refuses while up (EBUSY) on some kernels.
func (d *Device) SetMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("tap: set MAC of %q: %v is not a 6-byte Ethernet address", d.name, mac)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if _, err := hwaddrIoctl(d.ctl, unix.SIOCSIFHWADDR, d.name, mac); err != nil {
		return fmt.Errorf("tap: set MAC of %q to %v: %w", d.name, mac, err)
	}
	return nil
}

// MAC returns the interface's Ethernet address (SIOCGIFHWADDR).
func (d *Device) MAC() (net.HardwareAddr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	mac, err := hwaddrIoctl(d.ctl, unix.SIOCGIFHWADDR, d.name, nil)
	if err != nil {
		return nil, fmt.Errorf("tap: MAC of %q: %w", d.name, err)
	}
	return mac, nil
}

// SetUp sets the link administratively up or down (IFF_UP through SIOCGIFFLAGS and
// SIOCSIFFLAGS, read-modify-write under the device lock). While a TAP is down, writes fail
// with EIO (IsDown) and nothing arrives to read.
func (d *Device) SetUp(up bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	ifr, err := d.ifreqLocked(unix.SIOCGIFFLAGS, nil)
	if err == nil {
		flags := ifr.Uint16()
		if up {
			flags |= unix.IFF_UP
		} else {
			flags &^= unix.IFF_UP
		}
		_, err = d.ifreqLocked(unix.SIOCSIFFLAGS, func(r *unix.Ifreq) { r.SetUint16(flags) })
	}
	if err != nil {
		return fmt.Errorf("tap: set %q up=%v: %w", d.name, up, err)
	}
	return nil
}

// IsUp reports whether the link is administratively up (IFF_UP).
func (d *Device) IsUp() (bool, error) {
	ifr, err := d.ifreqCall(unix.SIOCGIFFLAGS, nil)
	if err != nil {
		return false, fmt.Errorf("tap: flags of %q: %w", d.name, err)
	}
	return ifr.Uint16()&unix.IFF_UP != 0, nil
}

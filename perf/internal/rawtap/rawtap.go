// Package rawtap holds the limits and the traffic source the back-ends are
// measured against: a raw loop that writes prebuilt frames into a TAP with
// one write(2) each (the TAP path's limit for guest TX), a raw loop that
// reads frames out of a TAP with one read(2) each (its limit for guest
// RX), and an injector that sends frames out through the TAP (AF_PACKET,
// qdisc bypassed) so that its reader receives them: the guest-RX source.
package rawtap

import (
	"fmt"
	"net"
	"sync/atomic"

	"github.com/vhostd/vhostd/internal/rawio"
	"golang.org/x/sys/unix"
)

// Open creates (or attaches to) TAP name with IFF_VNET_HDR and a 12-byte
// header, non-blocking (tun's fast path, see DESIGN.md). tso sets the
// offloads that let the TAP hand 64 KiB frames to its reader.
func Open(name string, tso bool) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, 12); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETVNETHDRSZ: %w", err)
	}
	off := 0
	if tso {
		off = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | tunFUSO4 | tunFUSO6
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, off); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	return fd, nil
}

// TUN_F_USO4 and TUN_F_USO6 (include/uapi/linux/if_tun.h); the kernel
// takes them only together.
const (
	tunFUSO4 = 0x20
	tunFUSO6 = 0x40
)

// UDPGSOPayload is the payload of one UDP GSO send: 44 segments of 1472
// bytes (an MTU of 1500), a 64810-byte frame before segmentation.
const UDPGSOPayload = 44 * 1472

// NewUDPGSO returns a UDP socket connected to dst:9 that sends
// UDPGSOPayload-byte datagrams with UDP_SEGMENT 1472: the kernel hands the
// TAP one 64 KiB GSO frame (VIRTIO_NET_HDR_GSO_UDP_L4) when its reader
// took USO, or 44 segments when it did not. AF_PACKET cannot do the same
// with TSO frames: a GSO skb from a packet socket is marked untrusted
// (SKB_GSO_DODGY) and was dropped on its way out through the TAP.
func NewUDPGSO(dst string) (*Injector, error) {
	ip := net.ParseIP(dst).To4()
	if ip == nil {
		return nil, fmt.Errorf("udp gso: bad address %q", dst)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT, 1472); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("UDP_SEGMENT: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	sa := &unix.SockaddrInet4{Port: 9}
	copy(sa.Addr[:], ip)
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %s: %w", dst, err)
	}
	return &Injector{fd: fd}, nil
}

// Counters are what a loop moved.
type Counters struct {
	Frames, Bytes, Errors atomic.Uint64
}

// publish stores a loop's running totals; a loop calls it every few
// hundred rounds, not per frame.
func (n *Counters) publish(frames, bytes, errors uint64) {
	n.Frames.Store(frames)
	n.Bytes.Store(bytes)
	n.Errors.Store(errors)
}

// WriteLoop writes buf (header and frame) into fd, which must be
// non-blocking, until stop is set. Like tap/, it calls write(2) through
// rawio (RawSyscall: the fd is nonblocking, the call never sleeps):
// unix.Write's Syscall tells the Go scheduler about every call, which cost
// this loop about 100 ns a frame, so with it the loop was no limit for
// vhostd.
func WriteLoop(fd int, buf []byte, stop *atomic.Bool, n *Counters) {
	var fr, er uint64
	frame := uint64(len(buf) - 12)
	for k := 0; ; k++ {
		if k&255 == 0 {
			if stop.Load() {
				return
			}
			n.publish(fr, fr*frame, er)
		}
		if _, e := rawio.Write(fd, buf); e != 0 {
			er++
			continue
		}
		fr++
	}
}

// ReadLoop reads frames from fd until stop is set, spinning on EAGAIN
// (a busy-polling reader, like a back-end under load), through rawio as
// WriteLoop does; fd must be non-blocking.
func ReadLoop(fd int, bufSize int, stop *atomic.Bool, n *Counters) {
	buf := make([]byte, bufSize)
	var fr, by uint64
	for k := 0; ; k++ {
		if k&255 == 0 {
			if stop.Load() {
				return
			}
			n.publish(fr, by, 0)
		}
		m, e := rawio.Read(fd, buf)
		if e != 0 || m <= 12 {
			continue
		}
		fr++
		by += uint64(m - 12)
	}
}

// Injector sends frames out through interface ifname: what the
// interface's TAP reader (the back-end) receives as guest RX.
type Injector struct {
	fd int
}

// NewInjector opens an AF_PACKET socket bound to ifname that bypasses the
// qdisc; vnet makes every write start with a virtio-net header (TSO
// frames; the kernel segments them unless the TAP takes TSO).
func NewInjector(ifname string, vnet bool, bypass int) (*Injector, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET: %w", err)
	}
	if vnet {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("PACKET_VNET_HDR: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, bypass); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", ifname, err)
	}
	return &Injector{fd: fd}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Loop sends buf until stop is set; a full TAP queue drops frames in the
// kernel (they never reach the reader), which is the point of a source
// that outruns the reader. The socket blocks, so this is unix.Write (a
// Syscall the scheduler knows about), not rawio.
func (in *Injector) Loop(buf []byte, stop *atomic.Bool, n *Counters) {
	var fr, er uint64
	for k := 0; ; k++ {
		if k&255 == 0 {
			if stop.Load() {
				return
			}
			n.publish(fr, 0, er) // bytes: the reader counts them
		}
		if _, err := unix.Write(in.fd, buf); err != nil {
			er++
			continue
		}
		fr++
	}
}

// Send writes buf n times and returns how many writes succeeded.
func (in *Injector) Send(buf []byte, n int) int {
	ok := 0
	for i := 0; i < n; i++ {
		if _, err := unix.Write(in.fd, buf); err == nil {
			ok++
		}
	}
	return ok
}

// Close closes the socket.
func (in *Injector) Close() error { return unix.Close(in.fd) }

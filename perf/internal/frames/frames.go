// Package frames builds the prebuilt Ethernet frames the perf front-ends,
// raw loops and injectors send: UDP/IPv4 frames of a given size, 64 KiB
// TCP/IPv4 frames with a TSO request in the virtio-net header, and ICMP
// echo requests for the ping-pong.
package frames

import (
	"encoding/binary"
	"net"
)

// VnetHdrLen is the virtio_net_hdr_v1 size (include/uapi/linux/virtio_net.h):
// the header with num_buffers, used with VERSION_1 or MRG_RXBUF.
const VnetHdrLen = 12

// virtio_net_hdr flags and gso types (include/uapi/linux/virtio_net.h).
const (
	HdrFNeedsCsum = 1
	GSOTCPv4      = 1
)

// TSOFrame is the size of the "64 KiB" TSO frame. It stays below the
// kernel's default gso_max_size (65536, checked against the whole skb):
// a larger GSO skb sent out through a TAP is segmented in software, or
// dropped.
const TSOFrame = 65480

// MSS is the gso_size the TSO frames ask for (an MTU of 1500).
const MSS = 1448

// Addresses every frame uses.
var (
	GuestMAC = net.HardwareAddr{0x02, 0x76, 0x68, 0x00, 0x00, 0x01}
	OtherMAC = net.HardwareAddr{0x02, 0x76, 0x68, 0x00, 0x00, 0x02}
)

var be = binary.BigEndian

func csum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(be.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func ipv4(b []byte, proto byte, src, dst net.IP, total int) {
	b[0], b[1] = 0x45, 0
	be.PutUint16(b[2:], uint16(total))
	be.PutUint16(b[4:], 1)
	be.PutUint16(b[6:], 0x4000)
	b[8], b[9] = 64, proto
	copy(b[12:16], src.To4())
	copy(b[16:20], dst.To4())
	be.PutUint16(b[10:], 0)
	be.PutUint16(b[10:], csum(b[:20], 0))
}

func eth(b []byte, dst, src net.HardwareAddr) {
	copy(b[0:6], dst)
	copy(b[6:12], src)
	be.PutUint16(b[12:], 0x0800)
}

// UDP returns a size-byte Ethernet frame (size >= 60) carrying UDP/IPv4
// from src to dst MAC (198.18.0.1 -> 198.18.0.2, a benchmark range).
func UDP(size int, dst, src net.HardwareAddr) []byte {
	if size < 60 {
		size = 60
	}
	b := make([]byte, size)
	eth(b, dst, src)
	ipv4(b[14:], 17, net.IPv4(198, 18, 0, 1), net.IPv4(198, 18, 0, 2), size-14)
	u := b[34:]
	be.PutUint16(u[0:], 9)
	be.PutUint16(u[2:], 9)
	be.PutUint16(u[4:], uint16(size-34))
	return b
}

// TSO returns a TSOFrame-byte TCP/IPv4 frame and the virtio-net header that
// asks for its segmentation into MSS-byte segments (checksum offloaded: the
// TCP checksum field holds the pseudo-header sum, as a guest leaves it).
func TSO(dst, src net.HardwareAddr) (hdr [VnetHdrLen]byte, frame []byte) {
	b := make([]byte, TSOFrame)
	eth(b, dst, src)
	total := TSOFrame - 14
	s, d := net.IPv4(198, 18, 0, 1).To4(), net.IPv4(198, 18, 0, 2).To4()
	ipv4(b[14:], 6, s, d, total)
	t := b[34:]
	be.PutUint16(t[0:], 5001)
	be.PutUint16(t[2:], 5002)
	be.PutUint32(t[4:], 1)
	be.PutUint32(t[8:], 1)
	t[12] = 5 << 4
	t[13] = 0x18 // PSH ACK
	be.PutUint16(t[14:], 65535)
	var ph uint32
	ph += uint32(be.Uint16(s[0:])) + uint32(be.Uint16(s[2:]))
	ph += uint32(be.Uint16(d[0:])) + uint32(be.Uint16(d[2:]))
	ph += 6 + uint32(total-20)
	for ph>>16 != 0 {
		ph = ph&0xffff + ph>>16
	}
	be.PutUint16(t[16:], uint16(ph)) // partial checksum: not inverted
	hdr = VnetHdr(true, 14+20+20, MSS, 34, 16)
	return hdr, b
}

// VnetHdr encodes a little-endian virtio_net_hdr_v1. gso selects
// VIRTIO_NET_HDR_GSO_TCPV4 with NEEDS_CSUM.
func VnetHdr(gso bool, hdrLen, gsoSize, csumStart, csumOff uint16) (h [VnetHdrLen]byte) {
	if !gso {
		return h
	}
	le := binary.LittleEndian
	h[0] = HdrFNeedsCsum
	h[1] = GSOTCPv4
	le.PutUint16(h[2:], hdrLen)
	le.PutUint16(h[4:], gsoSize)
	le.PutUint16(h[6:], csumStart)
	le.PutUint16(h[8:], csumOff)
	return h
}

// ICMPEcho returns a 64-byte ICMP echo request frame from the guest
// (GuestMAC, src) to the host (dst MAC, dst IP) with the given id.
func ICMPEcho(dstMAC net.HardwareAddr, src, dst net.IP, id uint16) []byte {
	const size = 64
	b := make([]byte, size)
	eth(b, dstMAC, GuestMAC)
	ipv4(b[14:], 1, src, dst, size-14)
	SetEchoSeq(b, id, 0)
	return b
}

// SetEchoSeq rewrites the id and sequence number of an ICMPEcho frame and
// its checksum.
func SetEchoSeq(b []byte, id, seq uint16) {
	ic := b[34:]
	ic[0], ic[1] = 8, 0
	be.PutUint16(ic[2:], 0)
	be.PutUint16(ic[4:], id)
	be.PutUint16(ic[6:], seq)
	be.PutUint16(ic[2:], csum(ic, 0))
}

// IsEchoReply reports whether frame b is an ICMP echo reply with id, or
// the echo request itself (reflected back unchanged by an XDP loop), and
// returns its sequence number.
func IsEchoReply(b []byte, id uint16) (uint16, bool) {
	if len(b) < 42 || be.Uint16(b[12:]) != 0x0800 || b[23] != 1 {
		return 0, false
	}
	ihl := int(b[14]&0xf) * 4
	ic := b[14+ihl:]
	if len(ic) < 8 || (ic[0] != 0 && ic[0] != 8) || be.Uint16(ic[4:]) != id {
		return 0, false
	}
	return be.Uint16(ic[6:]), true
}

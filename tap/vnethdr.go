package tap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Virtio-net header constants, from include/uapi/linux/virtio_net.h (virtio 1.x section 5.1.6).
const (
	// VnetHdrLen is sizeof(struct virtio_net_hdr_mrg_rxbuf): the header used with
	// VIRTIO_F_VERSION_1 or VIRTIO_NET_F_MRG_RXBUF, and the size this package sets with
	// TUNSETVNETHDRSZ. 10 bytes of struct virtio_net_hdr plus the 2-byte num_buffers.
	VnetHdrLen = 12

	VirtioNetHdrFNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: csum_start/csum_offset are valid
	VirtioNetHdrFDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: device->driver only
	VirtioNetHdrFRscInfo   = 4 // VIRTIO_NET_HDR_F_RSC_INFO: device->driver only

	VirtioNetHdrGSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	VirtioNetHdrGSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	VirtioNetHdrGSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO, deprecated but still accepted by tun)
	VirtioNetHdrGSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	VirtioNetHdrGSOUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
	VirtioNetHdrGSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN: flag bit OR-ed into a TCP gso_type
)

// VnetHdr is struct virtio_net_hdr_mrg_rxbuf in host form. With VERSION_1 every field is
// little-endian on the wire; Marshal and Unmarshal convert.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
	NumBuffers uint16
}

// Marshal writes h into b in wire (little-endian) form.
func (h *VnetHdr) Marshal(b *[VnetHdrLen]byte) {
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	binary.LittleEndian.PutUint16(b[10:], h.NumBuffers)
}

// Unmarshal reads h from b. b must be the caller's private copy of the header (copied out
// of guest memory once, BAD-INPUTS 39); Unmarshal and Validate never look at guest memory.
func (h *VnetHdr) Unmarshal(b *[VnetHdrLen]byte) {
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.LittleEndian.Uint16(b[2:])
	h.GSOSize = binary.LittleEndian.Uint16(b[4:])
	h.CsumStart = binary.LittleEndian.Uint16(b[6:])
	h.CsumOffset = binary.LittleEndian.Uint16(b[8:])
	h.NumBuffers = binary.LittleEndian.Uint16(b[10:])
}

// Errors returned by VnetHdr.Validate. All of them mean: drop the frame and count it
// (BAD-INPUTS 38); they are preallocated so the hot path does not allocate.
var (
	ErrHdrFrameLen  = errors.New("vnet hdr: negative frame length")
	ErrHdrFlags     = errors.New("vnet hdr: flags other than NEEDS_CSUM in a driver->device header")
	ErrHdrCsum      = errors.New("vnet hdr: csum_start+csum_offset+2 beyond the frame")
	ErrHdrGSOType   = errors.New("vnet hdr: unknown gso_type")
	ErrHdrGSOECN    = errors.New("vnet hdr: GSO_ECN without a TCP gso_type")
	ErrHdrGSOSize   = errors.New("vnet hdr: gso_size 0 with GSO")
	ErrHdrGSOCsum   = errors.New("vnet hdr: GSO without NEEDS_CSUM")
	ErrHdrHdrLen    = errors.New("vnet hdr: hdr_len beyond the frame")
	ErrHdrGSONoData = errors.New("vnet hdr: GSO frame with no payload after hdr_len")
)

// Validate checks a driver->device (guest TX) header against the frame it describes.
// frameLen is the length of the frame after the 12-byte header (Ethernet header onwards).
// It returns nil when:
//   - flags carry only VIRTIO_NET_HDR_F_NEEDS_CSUM (DATA_VALID and RSC_INFO are for the
//     device->driver direction: virtio 1.x 5.1.6.2.1 "The driver MUST NOT set" them);
//   - with NEEDS_CSUM, csum_start + csum_offset + 2 <= frameLen (the 16-bit checksum field
//     lies inside the frame);
//   - gso_type without the ECN bit is NONE, TCPV4, UDP, TCPV6 or UDP_L4, and ECN only with
//     a TCP type;
//   - with GSO: gso_size > 0, NEEDS_CSUM is set (virtio 1.x 5.1.6.2.1) and
//     hdr_len < frameLen (there is payload to segment);
//   - hdr_len <= frameLen in every case.
//
// Every comparison is done in int on values widened from uint16, so no length derived from
// an accepted header (frameLen-hdr_len, frameLen-csum_start-csum_offset-2) is negative.
// Validate does not allocate. num_buffers is ignored (the device ignores it on TX).
func (h *VnetHdr) Validate(frameLen int) error {
	if frameLen < 0 {
		return ErrHdrFrameLen
	}
	if h.Flags&^VirtioNetHdrFNeedsCsum != 0 {
		return ErrHdrFlags
	}
	if h.Flags&VirtioNetHdrFNeedsCsum != 0 {
		if int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
			return ErrHdrCsum
		}
	}
	if int(h.HdrLen) > frameLen {
		return ErrHdrHdrLen
	}
	gso := h.GSOType &^ VirtioNetHdrGSOECN
	switch gso {
	case VirtioNetHdrGSONone:
		if h.GSOType&VirtioNetHdrGSOECN != 0 {
			return ErrHdrGSOECN
		}
		return nil
	case VirtioNetHdrGSOTCPv4, VirtioNetHdrGSOTCPv6:
	case VirtioNetHdrGSOUDP, VirtioNetHdrGSOUDPL4:
		if h.GSOType&VirtioNetHdrGSOECN != 0 {
			return ErrHdrGSOECN
		}
	default:
		return ErrHdrGSOType
	}
	if h.GSOSize == 0 {
		return ErrHdrGSOSize
	}
	if h.Flags&VirtioNetHdrFNeedsCsum == 0 {
		return ErrHdrGSOCsum
	}
	if int(h.HdrLen) >= frameLen {
		return ErrHdrGSONoData
	}
	return nil
}

// String is for tests and control-plane logs, never the data path.
func (h VnetHdr) String() string {
	return fmt.Sprintf("vnethdr{flags=%#x gso=%#x hdr_len=%d gso_size=%d csum=%d+%d nbuf=%d}",
		h.Flags, h.GSOType, h.HdrLen, h.GSOSize, h.CsumStart, h.CsumOffset, h.NumBuffers)
}

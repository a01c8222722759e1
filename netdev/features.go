package netdev

import (
	"fmt"
	"strings"

	"github.com/vhostd/vhostd/tap"
)

// Virtio-net feature bits (include/uapi/linux/virtio_net.h, virtio 1.x 5.1.3)
// and the ring and transport bits a net device offers
// (include/uapi/linux/virtio_ring.h, virtio_config.h).
const (
	FCsum          = 0
	FGuestCsum     = 1
	FMTU           = 3
	FMAC           = 5
	FGuestTSO4     = 7
	FGuestTSO6     = 8
	FGuestECN      = 9
	FGuestUFO      = 10
	FHostTSO4      = 11
	FHostTSO6      = 12
	FHostECN       = 13
	FHostUFO       = 14
	FMrgRxbuf      = 15
	FStatus        = 16
	FCtrlVQ        = 17
	FGuestAnnounce = 21
	FMQ            = 22
	FGuestUSO4     = 54
	FGuestUSO6     = 55
	FHostUSO       = 56
	FIndirectDesc  = 28
	FEventIdx      = 29
	FVersion1      = 32
	FRingPacked    = 34
	FInOrder       = 35
)

var featureNames = map[uint]string{
	FCsum: "CSUM", FGuestCsum: "GUEST_CSUM", FMTU: "MTU", FMAC: "MAC", FGuestTSO4: "GUEST_TSO4",
	FGuestTSO6: "GUEST_TSO6", FGuestECN: "GUEST_ECN", FGuestUFO: "GUEST_UFO", FHostTSO4: "HOST_TSO4",
	FHostTSO6: "HOST_TSO6", FHostECN: "HOST_ECN", FHostUFO: "HOST_UFO", FMrgRxbuf: "MRG_RXBUF",
	FStatus: "STATUS", FCtrlVQ: "CTRL_VQ", FGuestAnnounce: "GUEST_ANNOUNCE", FMQ: "MQ",
	FGuestUSO4: "GUEST_USO4", FGuestUSO6: "GUEST_USO6", FHostUSO: "HOST_USO",
	FIndirectDesc: "RING_INDIRECT_DESC", FEventIdx: "RING_EVENT_IDX", FVersion1: "VERSION_1",
	FRingPacked: "RING_PACKED", FInOrder: "IN_ORDER",
}

// FeatureString names the bits set in f.
func FeatureString(f uint64) string {
	var s []string
	for b := uint(0); b < 64; b++ {
		if f&(1<<b) == 0 {
			continue
		}
		if n, ok := featureNames[b]; ok {
			s = append(s, n)
		} else {
			s = append(s, fmt.Sprintf("bit%d", b))
		}
	}
	return strings.Join(s, "|")
}

func bit(b uint) uint64 { return 1 << b }

// Offload switches that turn groups of offered features off.
type Offload struct {
	NoCsum bool // no checksum offload either way; implies no TSO, UFO, USO
	NoTSO  bool // no TCP segmentation offload (and no ECN)
	NoUFO  bool // no UDP fragmentation offload
	NoUSO  bool // no UDP segmentation offload
}

// features computes the offered virtio-net features.
func (c *Config) features() uint64 {
	f := bit(FVersion1) | bit(FMrgRxbuf) | bit(FEventIdx) | bit(FIndirectDesc) |
		bit(FStatus) | bit(FGuestAnnounce) | bit(FMTU) | bit(FMAC) | bit(FRingPacked) | bit(FInOrder)
	if c.QueuePairs > 1 {
		f |= bit(FMQ)
	}
	if !c.Offload.NoCsum {
		f |= bit(FCsum) | bit(FGuestCsum)
		if !c.Offload.NoTSO {
			f |= bit(FHostTSO4) | bit(FHostTSO6) | bit(FHostECN) | bit(FGuestTSO4) | bit(FGuestTSO6) | bit(FGuestECN)
		}
		if !c.Offload.NoUFO {
			f |= bit(FHostUFO) | bit(FGuestUFO)
		}
		if !c.Offload.NoUSO {
			f |= bit(FHostUSO) | bit(FGuestUSO4) | bit(FGuestUSO6)
		}
	}
	if c.NoMrgRxbuf {
		f &^= bit(FMrgRxbuf)
	}
	if c.NoEventIdx {
		f &^= bit(FEventIdx)
	}
	if c.NoIndirect {
		f &^= bit(FIndirectDesc)
	}
	return f
}

// guestOffloads pairs each receive offload the guest can ack with the
// TUNSETOFFLOAD bit that lets the TAP hand us such frames.
var guestOffloads = [...]struct {
	feature uint
	tap     tap.Offloads
}{
	{FGuestCsum, tap.OffloadCSUM},
	{FGuestTSO4, tap.OffloadTSO4},
	{FGuestTSO6, tap.OffloadTSO6},
	{FGuestECN, tap.OffloadTSOECN},
	{FGuestUFO, tap.OffloadUFO},
	{FGuestUSO4, tap.OffloadUSO4},
	{FGuestUSO6, tap.OffloadUSO6},
}

// tapOffloads maps the guest's receive offloads to TUNSETOFFLOAD flags: the
// TAP may hand us only what the guest can take.
func tapOffloads(acked uint64) tap.Offloads {
	var o tap.Offloads
	for _, g := range guestOffloads {
		if acked&bit(g.feature) != 0 {
			o |= g.tap
		}
	}
	return o
}

package tap

import (
	"errors"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TUN_F_* offload flags for TUNSETOFFLOAD, from include/uapi/linux/if_tun.h.
const (
	tunFCsum   = 0x01 // TUN_F_CSUM: we accept frames with partial checksums
	tunFTSO4   = 0x02 // TUN_F_TSO4
	tunFTSO6   = 0x04 // TUN_F_TSO6
	tunFTSOECN = 0x08 // TUN_F_TSO_ECN
	tunFUFO    = 0x10 // TUN_F_UFO
	tunFUSO4   = 0x20 // TUN_F_USO4 (Linux 6.2)
	tunFUSO6   = 0x40 // TUN_F_USO6 (Linux 6.2)
)

// Offloads is the set of receive offloads the guest acked (VIRTIO_NET_F_GUEST_CSUM,
// GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO, GUEST_USO4, GUEST_USO6): what the TAP may
// hand us in frames bound for the guest. Bit i is the TUN_F_* flag with the same meaning.
type Offloads uint8

const (
	OffloadCSUM   Offloads = tunFCsum
	OffloadTSO4   Offloads = tunFTSO4
	OffloadTSO6   Offloads = tunFTSO6
	OffloadTSOECN Offloads = tunFTSOECN
	OffloadUFO    Offloads = tunFUFO
	OffloadUSO4   Offloads = tunFUSO4
	OffloadUSO6   Offloads = tunFUSO6

	offloadUSO = OffloadUSO4 | OffloadUSO6
	offloadTSO = OffloadTSO4 | OffloadTSO6
	offloadAll = OffloadCSUM | offloadTSO | OffloadTSOECN | OffloadUFO | offloadUSO
)

// Effective returns o with the bits the kernel would refuse removed, following tun.c
// set_offload():
//   - every segmentation bit (TSO4, TSO6, TSO_ECN, UFO, USO4, USO6) needs CSUM: without
//     CSUM they are dropped (tun answers EINVAL, macvtap ignores them). The virtio spec
//     forbids a driver to ack GUEST_TSO*/UFO/USO without GUEST_CSUM, so a guest that does
//     so simply gets no segmentation offload; correct, only slower.
//   - TSO_ECN needs TSO4 or TSO6;
//   - USO4 and USO6 go together (tun answers EINVAL for one alone, macvtap ignores it);
//   - unknown bits are dropped.
//
// We drop rather than fail so that netdev can always apply something valid; a caller that
// wants to know compares the result of SetOffload with what it asked for.
func (o Offloads) Effective() Offloads {
	o &= offloadAll
	if o&OffloadCSUM == 0 {
		return 0
	}
	if o&offloadTSO == 0 {
		o &^= OffloadTSOECN
	}
	if o&offloadUSO != offloadUSO {
		o &^= offloadUSO
	}
	return o
}

// TunFlags returns the TUNSETOFFLOAD argument for o.Effective().
func (o Offloads) TunFlags() uint32 { return uint32(o.Effective()) }

var offloadNames = [...]string{"CSUM", "TSO4", "TSO6", "TSO_ECN", "UFO", "USO4", "USO6"}

func (o Offloads) String() string {
	if o == 0 {
		return "none"
	}
	var b strings.Builder
	for i, n := range offloadNames {
		if o&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n)
		}
	}
	if rest := o &^ offloadAll; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x" + strconv.FormatUint(uint64(rest), 16))
	}
	return b.String()
}

// applyOffload applies o.Effective() through set (one TUNSETOFFLOAD). A kernel older than
// 6.2 knows no USO and answers EINVAL for TUN_F_USO4/6: then the set is retried without
// USO. It returns the bits the kernel accepted.
func applyOffload(o Offloads, set func(flags uint32) error) (Offloads, error) {
	want := o.Effective()
	err := set(uint32(want))
	if err == nil {
		return want, nil
	}
	if errors.Is(err, unix.EINVAL) && want&offloadUSO != 0 {
		want &^= offloadUSO
		if err2 := set(uint32(want)); err2 == nil {
			return want, nil
		}
	}
	return 0, err
}

// Package pcapng writes vhostd's capture files: pcapng (gopacket's pcapgo
// NgWriter) with one interface per queue pair and direction, and comments
// that decode each frame's virtio-net header and say why a dropped frame
// was dropped. It is a leaf: it knows the header's layout (virtio 1.x
// 5.1.6, struct virtio_net_hdr_v1) by its bytes alone.
package pcapng

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// HdrLen is the length of the virtio-net header vhostd exchanges with the
// guest and the TAP (with num_buffers).
const HdrLen = 12

// Directions of a queue pair's interfaces.
const (
	RX = 0 // host to guest: frames read from the TAP into the guest's RX ring
	TX = 1 // guest to host: frames from the guest's TX ring to the TAP
)

// Writer writes a capture file. Interface 2*pair+dir carries queue pair
// pair's frames in direction dir; one more, XDPIface, carries the frames
// the XDP guard on the TAP dropped (the guard does not know the pair).
type Writer struct {
	bw    *bufio.Writer
	ng    *pcapgo.NgWriter
	pairs int
}

// New starts a capture file on w for pairs queue pairs, each frame cut to
// snaplen bytes; tapName names the host interface in the descriptions.
func New(w io.Writer, pairs int, snaplen int, tapName string) (*Writer, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	first := pcapgo.NgInterface{
		Name:        ifaceName(0, RX),
		Description: ifaceDesc(0, RX, tapName),
		LinkType:    layers.LinkTypeEthernet,
		SnapLength:  uint32(snaplen),
	}
	ng, err := pcapgo.NewNgWriterInterface(bw, first, pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Application: "vhostd", Comment: "guest-side frames of " + tapName},
	})
	if err != nil {
		return nil, err
	}
	add := func(name, desc string) error {
		intf := first
		intf.Name, intf.Description = name, desc
		_, err := ng.AddInterface(intf)
		return err
	}
	for i := 0; i < pairs; i++ {
		for dir := RX; dir <= TX; dir++ {
			if i == 0 && dir == RX {
				continue
			}
			if err := add(ifaceName(i, dir), ifaceDesc(i, dir, tapName)); err != nil {
				return nil, err
			}
		}
	}
	if err := add("xdp-guard", "frames the XDP guard on "+tapName+" dropped (guest to host, any queue pair)"); err != nil {
		return nil, err
	}
	return &Writer{bw: bw, ng: ng, pairs: pairs}, nil
}

func ifaceName(pair, dir int) string {
	return fmt.Sprintf("q%d-%s", pair, [2]string{"rx", "tx"}[dir])
}

func ifaceDesc(pair, dir int, tapName string) string {
	if dir == RX {
		return fmt.Sprintf("queue pair %d, rx: %s to guest", pair, tapName)
	}
	return fmt.Sprintf("queue pair %d, tx: guest to %s", pair, tapName)
}

// XDPIface is the interface index of the XDP guard's drops.
func (w *Writer) XDPIface() int { return 2 * w.pairs }

// Frame is one captured frame.
type Frame struct {
	When  time.Time
	Iface int
	// Data is the captured Ethernet frame, OrigLen its full length.
	Data    []byte
	OrigLen int
	// Comments go in the packet block as they are.
	Comments []string
}

// Write writes one frame.
func (w *Writer) Write(f Frame) error {
	ci := gopacket.CaptureInfo{
		Timestamp: f.When, CaptureLength: len(f.Data), Length: max(f.OrigLen, len(f.Data)),
		InterfaceIndex: f.Iface,
	}
	return w.ng.WritePacketWithOptions(ci, f.Data, pcapgo.NgPacketOptions{Comments: f.Comments})
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	if err := w.ng.Flush(); err != nil {
		return err
	}
	return w.bw.Flush()
}

// Header flags and GSO types (include/uapi/linux/virtio_net.h).
var (
	flagNames = [...]string{"needs_csum", "data_valid", "rsc_info"}
	gsoNames  = map[byte]string{0: "none", 1: "tcpv4", 3: "udp", 4: "tcpv6", 5: "udp_l4"}
)

// DecodeHdr renders a virtio-net header: flags, gso_type, hdr_len,
// gso_size, csum_start/offset and, when withBuffers, num_buffers.
func DecodeHdr(h []byte, withBuffers bool) string {
	if len(h) < HdrLen {
		return fmt.Sprintf("vnet hdr: short (%d bytes)", len(h))
	}
	var flags []string
	for i, n := range flagNames {
		if h[0]&(1<<i) != 0 {
			flags = append(flags, n)
		}
	}
	if rest := h[0] &^ 7; rest != 0 {
		flags = append(flags, fmt.Sprintf("0x%02x", rest))
	}
	if len(flags) == 0 {
		flags = append(flags, "none")
	}
	gso, ok := gsoNames[h[1]&^0x80]
	if !ok {
		gso = fmt.Sprintf("0x%02x", h[1]&^0x80)
	}
	if h[1]&0x80 != 0 {
		gso += "|ecn"
	}
	le := binary.LittleEndian
	s := fmt.Sprintf("vnet hdr: flags=%s gso_type=%s hdr_len=%d gso_size=%d csum_start=%d csum_offset=%d",
		strings.Join(flags, ","), gso, le.Uint16(h[2:]), le.Uint16(h[4:]), le.Uint16(h[6:]), le.Uint16(h[8:]))
	if withBuffers {
		s += fmt.Sprintf(" num_buffers=%d", le.Uint16(h[10:]))
	}
	return s
}

// ReadFile reads a capture file back with pcapgo's NgReader: every frame,
// its interface, full length and comments (for tests and tools).
func ReadFile(path string) ([]Frame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		return nil, fmt.Errorf("pcapng %s: %w", path, err)
	}
	var out []Frame
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, fmt.Errorf("pcapng %s: frame %d: %w", path, len(out), err)
		}
		out = append(out, Frame{When: ci.Timestamp, Iface: ci.InterfaceIndex, Data: data, OrigLen: ci.Length, Comments: opts.Comments})
	}
}

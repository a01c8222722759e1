package xdptap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// GuardSnap is GUARD_SNAP in bpf/xdptap.c: the most bytes of a dropped frame the guard
// reports.
const GuardSnap = 256

// guardDropHdr is the size of struct guard_drop's fields before data.
const guardDropHdr = 16

// GuardDrop is a frame the guard dropped while a capture ran.
type GuardDrop struct {
	// Rule is the check that dropped it: the xdp_guard_drop_<rule> counter's suffix
	// (src_mac, src_ipv4, src_ipv6, arp, nd, acl_ipv4, acl_ipv6, malformed, vlan).
	Rule string
	Len  int    // the frame's length
	Data []byte // its first bytes, at most GuardSnap
}

// GuardCapture reads the guard's reports of the frames it drops. While one is open the
// guard program copies each dropped frame's head into a BPF ring buffer; closed, a drop
// costs the program one array lookup more and a passed frame nothing.
type GuardCapture struct {
	a  *Attachment
	rd *ringbuf.Reader
}

// StartCapture turns the guard's drop reports on. Only one capture may be open at a time.
func (a *Attachment) StartCapture() (*GuardCapture, error) {
	c := &GuardCapture{a: a}
	err := a.withGuard(func(*guardState) error {
		rd, err := ringbuf.NewReader(a.objs.Maps[xdpMapGuardDrops])
		if err != nil {
			return err
		}
		if err := a.objs.Maps[xdpMapGuardCapture].Put(uint32(0), uint32(1)); err != nil {
			rd.Close()
			return err
		}
		c.rd = rd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("xdptap: capture of the guard's drops: %w", err)
	}
	return c, nil
}

// Read waits for the next dropped frame. After Close it returns ringbuf.ErrClosed
// (errors.Is(err, os.ErrClosed)).
func (c *GuardCapture) Read() (GuardDrop, error) {
	rec, err := c.rd.Read()
	if err != nil {
		return GuardDrop{}, err
	}
	return parseGuardDrop(rec.RawSample)
}

// parseGuardDrop decodes a struct guard_drop.
func parseGuardDrop(b []byte) (GuardDrop, error) {
	if len(b) < guardDropHdr {
		return GuardDrop{}, fmt.Errorf("xdptap: guard drop report of %d bytes", len(b))
	}
	le := binary.LittleEndian
	reason, n := le.Uint32(b), int(le.Uint32(b[8:]))
	if n > GuardSnap || guardDropHdr+n > len(b) {
		return GuardDrop{}, fmt.Errorf("xdptap: guard drop report with %d bytes of data in %d", n, len(b))
	}
	d := GuardDrop{Rule: fmt.Sprintf("reason %d", reason), Len: int(le.Uint32(b[4:])), Data: b[guardDropHdr : guardDropHdr+n]}
	if int(reason) < len(guardCounterNames) {
		d.Rule = strings.TrimPrefix(guardCounterNames[reason], "xdp_guard_drop_")
	}
	return d, nil
}

// Close turns the reports off and ends Read. The attachment may be closed already.
func (c *GuardCapture) Close() error {
	err := c.a.withGuard(func(*guardState) error {
		return c.a.objs.Maps[xdpMapGuardCapture].Put(uint32(0), uint32(0))
	})
	if errors.Is(err, ErrClosed) {
		err = nil // the program and its maps are gone: nothing reports any more
	}
	// Give Read the reports already in the ring, for a while: a capture
	// stopped just after a drop still has it.
	for i := 0; i < 50 && c.rd.AvailableBytes() > 0; i++ {
		time.Sleep(2 * time.Millisecond)
	}
	if e := c.rd.Close(); err == nil {
		err = e
	}
	return err
}

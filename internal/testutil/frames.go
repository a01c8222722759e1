package testutil

import (
	"bytes"
	"encoding/binary"
	"net"
)

// TestEtherType is IEEE 802 local experimental EtherType 1: nothing in the
// host stack answers it, so a test's frames are easy to pick out from IPv6
// chatter.
const TestEtherType = 0x88b5

// TaggedFrame is an Ethernet frame from src to dst with TestEtherType whose
// payload is tag, then seq (big-endian), then zeros up to size bytes, and
// never shorter than Ethernet's 60-byte minimum (without the FCS).
func TaggedFrame(dst, src net.HardwareAddr, tag string, seq uint32, size int) []byte {
	f := make([]byte, 0, max(size, 60))
	f = append(append(f, dst...), src...)
	f = binary.BigEndian.AppendUint16(f, TestEtherType)
	f = append(f, tag...)
	f = binary.BigEndian.AppendUint32(f, seq)
	if n := max(size, 60); len(f) < n {
		f = append(f, make([]byte, n-len(f))...)
	}
	return f
}

// ParseTaggedFrame returns the seq of a TaggedFrame with tag, or false for
// any other frame.
func ParseTaggedFrame(f []byte, tag string) (uint32, bool) {
	if len(f) < 14 || binary.BigEndian.Uint16(f[12:]) != TestEtherType {
		return 0, false
	}
	pl := f[14:]
	if !bytes.HasPrefix(pl, []byte(tag)) || len(pl) < len(tag)+4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(pl[len(tag):]), true
}

// PatternFrame is n bytes counting up from seed (wrapping): content that
// shows a cut, a shift or a mix-up of two frames.
func PatternFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seed + byte(i)
	}
	return f
}

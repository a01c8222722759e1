package testutil

import (
	"bytes"
	"net"
	"testing"
)

func TestTaggedFrame(t *testing.T) {
	dst := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	src := net.HardwareAddr{0x02, 0x76, 0x68, 0x64, 0x00, 0x01}
	for _, size := range []int{0, 60, 61, 1514} {
		f := TaggedFrame(dst, src, "tag", 7, size)
		if want := max(size, 60); len(f) != want {
			t.Fatalf("size %d: %d bytes, want %d", size, len(f), want)
		}
		if !bytes.Equal(f[:6], dst) || !bytes.Equal(f[6:12], src) || f[12] != 0x88 || f[13] != 0xb5 {
			t.Fatalf("size %d: header % x", size, f[:14])
		}
		if seq, ok := ParseTaggedFrame(f, "tag"); !ok || seq != 7 {
			t.Fatalf("size %d: ParseTaggedFrame = %d, %v", size, seq, ok)
		}
		if _, ok := ParseTaggedFrame(f, "other"); ok {
			t.Fatalf("size %d: parsed with another tag", size)
		}
	}
	// Longer than the minimum: nothing padded after the seq.
	long := "0123456789012345678901234567890123456789012345678901234567890123"
	if f := TaggedFrame(dst, src, long, 1, 0); len(f) != 14+len(long)+4 {
		t.Fatalf("long tag: %d bytes", len(f))
	}
	if _, ok := ParseTaggedFrame(make([]byte, 10), ""); ok {
		t.Fatal("parsed a 10-byte frame")
	}
}

func TestPatternFrame(t *testing.T) {
	if f := PatternFrame(4, 0xfe); !bytes.Equal(f, []byte{0xfe, 0xff, 0, 1}) {
		t.Fatalf("PatternFrame(4, 0xfe) = % x", f)
	}
}

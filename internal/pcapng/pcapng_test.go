package pcapng

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDecodeHdr(t *testing.T) {
	for _, tc := range []struct {
		hdr  []byte
		rx   bool
		want string
	}{
		{make([]byte, 12), false, "vnet hdr: flags=none gso_type=none hdr_len=0 gso_size=0 csum_start=0 csum_offset=0"},
		{[]byte{1, 4, 66, 0, 0xa8, 5, 54, 0, 16, 0, 1, 0}, true,
			"vnet hdr: flags=needs_csum gso_type=tcpv6 hdr_len=66 gso_size=1448 csum_start=54 csum_offset=16 num_buffers=1"},
		{[]byte{0x2a, 0x81, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0}, true,
			"vnet hdr: flags=data_valid,0x28 gso_type=tcpv4|ecn hdr_len=0 gso_size=0 csum_start=0 csum_offset=0 num_buffers=3"},
		{[]byte{0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, "vnet hdr: flags=none gso_type=0x09"},
		{[]byte{1, 2}, false, "vnet hdr: short (2 bytes)"},
	} {
		if got := DecodeHdr(tc.hdr, tc.rx); !strings.HasPrefix(got, tc.want) {
			t.Errorf("DecodeHdr(%x) = %q, want %q", tc.hdr, got, tc.want)
		}
	}
}

// TestWriteRead: frames written on each interface come back from
// pcapgo's reader with their interface, length and comments; the file
// names every interface.
func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(f, 2, 128, "tap9")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 123456789)
	in := []Frame{
		{When: now, Iface: 0, Data: bytes.Repeat([]byte{1}, 60), OrigLen: 60, Comments: []string{"a"}},
		{When: now, Iface: 3, Data: bytes.Repeat([]byte{2}, 128), OrigLen: 1500, Comments: []string{"b", "dropped: tx_oversize"}},
		{When: now, Iface: w.XDPIface(), Data: []byte{3, 3, 3}, OrigLen: 3, Comments: []string{"dropped: xdp guard vlan"}},
	}
	for _, fr := range in {
		if err := w.Write(fr); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d frames read, want %d", len(out), len(in))
	}
	for i := range in {
		g, w := out[i], in[i]
		if g.Iface != w.Iface || !bytes.Equal(g.Data, w.Data) || g.OrigLen != w.OrigLen || strings.Join(g.Comments, "|") != strings.Join(w.Comments, "|") || !g.When.Equal(w.When) {
			t.Errorf("frame %d: %+v, want %+v", i, g, w)
		}
	}
}

package tap

import (
	"errors"
	"testing"
)

// BAD-INPUTS 38: the header lies; Validate refuses it (the caller drops and counts).
func TestVnetHdrValidate(t *testing.T) {
	const csum = VirtioNetHdrFNeedsCsum
	tcp4 := func(h VnetHdr) VnetHdr { // a sane TSO4 header for a 1514-byte frame
		h.Flags |= csum
		if h.GSOType == 0 {
			h.GSOType = VirtioNetHdrGSOTCPv4
		}
		if h.GSOSize == 0 {
			h.GSOSize = 1448
		}
		if h.HdrLen == 0 {
			h.HdrLen = 66
		}
		if h.CsumStart == 0 {
			h.CsumStart, h.CsumOffset = 34, 16
		}
		return h
	}
	cases := []struct {
		name     string
		hdr      VnetHdr
		frameLen int
		want     error
	}{
		{"plain", VnetHdr{}, 60, nil},
		{"plain_empty_frame", VnetHdr{}, 0, nil},
		{"negative_frame_len", VnetHdr{}, -1, ErrHdrFrameLen},
		{"csum_ok", VnetHdr{Flags: csum, CsumStart: 34, CsumOffset: 16}, 60, nil},
		{"csum_exactly_at_end", VnetHdr{Flags: csum, CsumStart: 40, CsumOffset: 18}, 60, nil},
		{"csum_one_past_end", VnetHdr{Flags: csum, CsumStart: 40, CsumOffset: 19}, 60, ErrHdrCsum},
		{"csum_start_beyond_packet", VnetHdr{Flags: csum, CsumStart: 61}, 60, ErrHdrCsum},
		{"csum_offset_beyond_packet", VnetHdr{Flags: csum, CsumStart: 14, CsumOffset: 0xffff}, 60, ErrHdrCsum},
		{"csum_both_max_no_overflow", VnetHdr{Flags: csum, CsumStart: 0xffff, CsumOffset: 0xffff}, 1 << 17, nil},
		{"csum_fields_ignored_without_flag", VnetHdr{CsumStart: 0xffff, CsumOffset: 0xffff}, 60, nil},
		{"flag_data_valid_from_driver", VnetHdr{Flags: VirtioNetHdrFDataValid}, 60, ErrHdrFlags},
		{"flag_rsc_info_from_driver", VnetHdr{Flags: VirtioNetHdrFRscInfo}, 60, ErrHdrFlags},
		{"flag_unknown", VnetHdr{Flags: 0x80}, 60, ErrHdrFlags},
		{"hdr_len_beyond_packet", VnetHdr{HdrLen: 61}, 60, ErrHdrHdrLen},
		{"hdr_len_equal_packet", VnetHdr{HdrLen: 60}, 60, nil},
		{"tso4_ok", tcp4(VnetHdr{}), 1514, nil},
		{"tso6_ok", tcp4(VnetHdr{GSOType: VirtioNetHdrGSOTCPv6, CsumStart: 54}), 1514, nil},
		{"tso4_ecn_ok", tcp4(VnetHdr{GSOType: VirtioNetHdrGSOTCPv4 | VirtioNetHdrGSOECN}), 1514, nil},
		{"uso_ok", tcp4(VnetHdr{GSOType: VirtioNetHdrGSOUDPL4, CsumOffset: 6}), 1514, nil},
		{"ufo_ok", tcp4(VnetHdr{GSOType: VirtioNetHdrGSOUDP, CsumOffset: 6}), 1514, nil},
		{"gso_type_unknown_2", tcp4(VnetHdr{GSOType: 2}), 1514, ErrHdrGSOType},
		{"gso_type_unknown_6", tcp4(VnetHdr{GSOType: 6}), 1514, ErrHdrGSOType},
		{"gso_type_unknown_0x7f", tcp4(VnetHdr{GSOType: 0x7f}), 1514, ErrHdrGSOType},
		{"gso_ecn_alone", VnetHdr{GSOType: VirtioNetHdrGSOECN}, 60, ErrHdrGSOECN},
		{"gso_ecn_with_udp", tcp4(VnetHdr{GSOType: VirtioNetHdrGSOUDPL4 | VirtioNetHdrGSOECN}), 1514, ErrHdrGSOECN},
		{"gso_size_zero", VnetHdr{Flags: csum, GSOType: VirtioNetHdrGSOTCPv4, HdrLen: 66, CsumStart: 34, CsumOffset: 16}, 1514, ErrHdrGSOSize},
		{"gso_without_needs_csum", VnetHdr{GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1448, HdrLen: 66}, 1514, ErrHdrGSOCsum},
		{"gso_hdr_len_beyond_packet", tcp4(VnetHdr{HdrLen: 1515}), 1514, ErrHdrHdrLen},
		{"gso_hdr_len_no_payload", tcp4(VnetHdr{HdrLen: 1514}), 1514, ErrHdrGSONoData},
		{"gso_csum_beyond_packet", tcp4(VnetHdr{CsumStart: 1500, CsumOffset: 16}), 1514, ErrHdrCsum},
		{"num_buffers_ignored", VnetHdr{NumBuffers: 0xffff}, 60, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.hdr.Validate(c.frameLen); !errors.Is(got, c.want) {
				t.Fatalf("%v.Validate(%d) = %v, want %v", c.hdr, c.frameLen, got, c.want)
			}
		})
	}
}

func TestVnetHdrMarshalLittleEndian(t *testing.T) {
	h := VnetHdr{Flags: 1, GSOType: 4, HdrLen: 0x0102, GSOSize: 0x0304, CsumStart: 0x0506, CsumOffset: 0x0708, NumBuffers: 0x090a}
	var b [VnetHdrLen]byte
	h.Marshal(&b)
	want := [VnetHdrLen]byte{1, 4, 2, 1, 4, 3, 6, 5, 8, 7, 0xa, 9}
	if b != want {
		t.Fatalf("Marshal = % x, want % x", b, want)
	}
	var g VnetHdr
	g.Unmarshal(&b)
	if g != h {
		t.Fatalf("Unmarshal = %v, want %v", g, h)
	}
}

func TestVnetHdrValidateNoAllocs(t *testing.T) {
	h := VnetHdr{Flags: 1, CsumStart: 0xffff}
	if a := testing.AllocsPerRun(100, func() { _ = h.Validate(60) }); a != 0 {
		t.Fatalf("Validate allocates %v per call", a)
	}
}

// FuzzVnetHdr asserts invariants rather than golden answers: every accepted header
// describes ranges inside the frame, so no length derived from it is negative.
func FuzzVnetHdr(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 60)
	f.Add([]byte{1, 1, 66, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0}, 1514)    // TSO4
	f.Add([]byte{1, 0x84, 86, 0, 0x94, 5, 54, 0, 16, 0, 0, 0}, 1514) // TSO6|ECN
	f.Add([]byte{1, 5, 42, 0, 0xa8, 5, 34, 0, 6, 0, 0, 0}, 9000)     // USO
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, 60)
	f.Add([]byte{0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 60)
	f.Add([]byte{1, 1, 0xff, 0xff, 0, 0, 34, 0, 16, 0, 0, 0}, 60)
	f.Fuzz(func(t *testing.T, raw []byte, frameLen int) {
		var b [VnetHdrLen]byte
		copy(b[:], raw)
		var h VnetHdr
		h.Unmarshal(&b)
		var back [VnetHdrLen]byte
		h.Marshal(&back)
		if back != b {
			t.Fatalf("round trip: % x -> %v -> % x", b, h, back)
		}
		if h.Validate(frameLen) != nil {
			return
		}
		if frameLen < 0 {
			t.Fatalf("accepted negative frame length %d", frameLen)
		}
		if rest := frameLen - int(h.HdrLen); rest < 0 {
			t.Fatalf("accepted %v: payload after hdr_len is %d", h, rest)
		}
		if h.Flags&^VirtioNetHdrFNeedsCsum != 0 {
			t.Fatalf("accepted flags %#x", h.Flags)
		}
		if h.Flags&VirtioNetHdrFNeedsCsum != 0 {
			end := int(h.CsumStart) + int(h.CsumOffset) + 2
			if end > frameLen || end < 2 {
				t.Fatalf("accepted %v: checksum field ends at %d of %d", h, end, frameLen)
			}
		}
		switch h.GSOType &^ VirtioNetHdrGSOECN {
		case VirtioNetHdrGSONone:
			if h.GSOType != VirtioNetHdrGSONone {
				t.Fatalf("accepted ECN without GSO: %v", h)
			}
		case VirtioNetHdrGSOTCPv4, VirtioNetHdrGSOTCPv6, VirtioNetHdrGSOUDP, VirtioNetHdrGSOUDPL4:
			if h.GSOSize == 0 || h.Flags&VirtioNetHdrFNeedsCsum == 0 || int(h.HdrLen) >= frameLen {
				t.Fatalf("accepted bad GSO header %v for %d bytes", h, frameLen)
			}
		default:
			t.Fatalf("accepted unknown gso_type %v", h)
		}
	})
}

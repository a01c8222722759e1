package tap

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestOffloadsEffective(t *testing.T) {
	cases := []struct {
		name   string
		in     Offloads
		want   Offloads
		tunArg uint32
	}{
		{"none", 0, 0, 0},
		{"csum", OffloadCSUM, OffloadCSUM, 0x01},
		{"csum_tso", OffloadCSUM | OffloadTSO4 | OffloadTSO6, OffloadCSUM | OffloadTSO4 | OffloadTSO6, 0x07},
		{"tso_without_csum_dropped", OffloadTSO4 | OffloadTSO6 | OffloadTSOECN, 0, 0},
		{"uso_without_csum_dropped", OffloadUSO4 | OffloadUSO6, 0, 0},
		{"ufo_without_csum_dropped", OffloadUFO, 0, 0},
		{"ecn_without_tso_dropped", OffloadCSUM | OffloadTSOECN, OffloadCSUM, 0x01},
		{"ecn_with_tso6", OffloadCSUM | OffloadTSO6 | OffloadTSOECN, OffloadCSUM | OffloadTSO6 | OffloadTSOECN, 0x0d},
		{"uso4_alone_dropped", OffloadCSUM | OffloadUSO4, OffloadCSUM, 0x01},
		{"uso6_alone_dropped", OffloadCSUM | OffloadUSO6, OffloadCSUM, 0x01},
		{"all", 0x7f, 0x7f, 0x7f},
		{"unknown_bit_dropped", 0x80 | OffloadCSUM, OffloadCSUM, 0x01},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.in.Effective(); got != c.want {
				t.Errorf("(%v).Effective() = %v, want %v", c.in, got, c.want)
			}
			if got := c.in.TunFlags(); got != c.tunArg {
				t.Errorf("(%v).TunFlags() = %#x, want %#x", c.in, got, c.tunArg)
			}
		})
	}
}

func TestOffloadsString(t *testing.T) {
	if s := (OffloadCSUM | OffloadTSO4 | OffloadUSO6 | 0x80).String(); s != "CSUM|TSO4|USO6|0x80" {
		t.Fatalf("String = %q", s)
	}
	if s := Offloads(0).String(); s != "none" {
		t.Fatalf("String = %q", s)
	}
}

// A kernel before 6.2 answers EINVAL for TUN_F_USO4/6: applyOffload retries without them
// and reports what stuck.
func TestOffloadFallbackWithoutUSO(t *testing.T) {
	var calls []uint32
	oldKernel := func(flags uint32) error {
		calls = append(calls, flags)
		if flags&(tunFUSO4|tunFUSO6) != 0 {
			return unix.EINVAL
		}
		return nil
	}
	got, err := applyOffload(0x7f, oldKernel)
	if err != nil {
		t.Fatal(err)
	}
	if want := Offloads(0x1f); got != want {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if len(calls) != 2 || calls[0] != 0x7f || calls[1] != 0x1f {
		t.Fatalf("calls %#x", calls)
	}

	// Other failures are returned, not papered over.
	calls = nil
	_, err = applyOffload(OffloadCSUM, func(uint32) error { return unix.EPERM })
	if err != unix.EPERM {
		t.Fatalf("err = %v, want EPERM", err)
	}
}

package netdev

import (
	"testing"

	"github.com/vhostd/vhostd/tap"
)

func TestTapOffloads(t *testing.T) {
	for _, tc := range []struct {
		acked uint64
		want  tap.Offloads
	}{
		{0, 0},
		{bit(FGuestCsum), tap.OffloadCSUM},
		{bit(FGuestCsum) | bit(FGuestTSO4) | bit(FGuestTSO6) | bit(FGuestECN), tap.OffloadCSUM | tap.OffloadTSO4 | tap.OffloadTSO6 | tap.OffloadTSOECN},
		{bit(FGuestUFO) | bit(FGuestUSO4) | bit(FGuestUSO6), tap.OffloadUFO | tap.OffloadUSO4 | tap.OffloadUSO6},
		// Host-side (guest TX) offloads say nothing about what the TAP may send us.
		{bit(FHostTSO4) | bit(FCsum) | bit(FHostUSO), 0},
	} {
		if got := tapOffloads(tc.acked); got != tc.want {
			t.Errorf("tapOffloads(%#x) = %v, want %v", tc.acked, got, tc.want)
		}
	}
}

package main

import (
	"testing"
	"time"
)

func TestFrameCheck(t *testing.T) {
	b := make([]byte, 2048)
	for _, seq := range []uint64{1, 2, 37, 1000, 1 << 40} {
		l := buildFrame(b, typeG2H, seq, guestMAC, bcast)
		if l < minLen || l > 1500 {
			t.Fatalf("seq %d: length %d", seq, l)
		}
		if got, v := checkFrame(b[:l], typeG2H); v != frameOK || got != seq {
			t.Fatalf("seq %d: checkFrame = %d, %v", seq, got, v)
		}
		if _, v := checkFrame(b[:l], typeH2G); v != frameOther {
			t.Fatalf("seq %d: the other direction's type: %v, want frameOther", seq, v)
		}
		if _, v := checkFrame(b[:l-1], typeG2H); v != frameBad {
			t.Fatalf("seq %d: one byte short: %v, want frameBad", seq, v)
		}
		b[l-1]++
		if _, v := checkFrame(b[:l], typeG2H); v != frameBad {
			t.Fatalf("seq %d: last byte changed: %v, want frameBad", seq, v)
		}
	}
}

func TestRSSDrift(t *testing.T) {
	t0 := time.Now()
	series := func(f func(i int) int) []sample {
		var ss []sample
		for i := range 90 {
			ss = append(ss, sample{t: t0.Add(time.Duration(i) * 20 * time.Second), rssKiB: f(i)})
		}
		return ss
	}
	// Flat with noise: no drift.
	if d, _ := rssDrift(series(func(i int) int { return 20<<10 + (i%3)*512 })); d != 0 {
		t.Errorf("flat series: drift %.2f MiB", d)
	}
	// 64 KiB every 20 s for 30 min: ~3.8 MiB between the thirds' medians,
	// 11.25 MiB/h.
	d, slope := rssDrift(series(func(i int) int { return 20<<10 + i*64 }))
	if d < 3.5 || d > 4 || slope < 11 || slope > 11.5 {
		t.Errorf("linear growth: drift %.2f MiB, slope %.2f MiB/h", d, slope)
	}
}

package harness

import (
	"math"
	"testing"
)

const (
	goalTX64Limit   = "Guest TX 64 B: vhostd >= 0.9x the best raw TAP write limit (write(2) or io_uring fixed file, best per round)"
	goalTX64Testpmd = "Guest TX 64 B: vhostd >= 1.3x testpmd"
	goalCtl         = "Control socket polled every 100 ms, capture off (issue 16): vhostd-ctl >= 0.97x vhostd"
	goalP50         = "Latency p50 (ping-go): vhostd <= 0.5x testpmd"
	goalP99         = "Latency p99 (ping-go): vhostd <= testpmd"
	goalPacked      = "Packed / split rings, vhostd (tx-64-go, issue 18)"
	goal1518Fair    = "Guest TX 1518 B: vhostd >= 0.85x the fair limit (every frame written by the other CPU just before, for both)"
)

// goalRuns is a fabricated run set over three rounds: tx-64-go, ping-go
// and tx-1518-go, each subject's figure per round given in order.
func goalRuns() *Results {
	tx := Group{Name: "tx-64-go", Dir: "tx", FE: "go", Size: 64, Subjects: []Subject{sBP, sDPDK, sRawTx, sRawTxUringFixed, sCtl, sPacked}}
	tx1518 := Group{Name: "tx-1518-go", Dir: "tx", FE: "go", Size: 1518, Subjects: []Subject{sBP, sRawTx, sRawTxCold, sCold}}
	ping := Group{Name: "ping-go", Dir: "ping", FE: "go", Size: 64, Subjects: []Subject{sBP, sDPDK}}
	res := &Results{Options: Options{Rounds: 3}, Groups: []Group{tx, tx1518, ping}}
	add := func(g Group, s Subject, vals ...float64) {
		for i, v := range vals {
			r := Run{Group: g.Name, Subject: s.Name, Round: i + 1, Mpps: v}
			if g.Dir == "ping" {
				r = Run{Group: g.Name, Subject: s.Name, Round: i + 1, RTTP50us: v, RTTP99us: 10 * v}
				if s.Name == sDPDK.Name {
					r.RTTP99us = 3 * v // vhostd's p99 is worse than testpmd's
				}
			}
			res.Runs = append(res.Runs, r)
		}
	}
	// The best write limit is write(2) in rounds 1 and 3, io_uring in round 2:
	// vhostd / best = 0.95, 0.8, 0.95 (median 0.95: met); against write(2)
	// alone round 2 would be 4/4.2 = 0.952.
	add(tx, sBP, 4.75, 4, 4.75)
	add(tx, sRawTx, 5, 4.2, 5)
	add(tx, sRawTxUringFixed, 4.9, 5, 4.8)
	add(tx, sDPDK, 4, 4, 3) // 1.19, 1, 1.58: median 1.19, missed
	add(tx, sCtl, 4.7, 3.8, 4.7)
	add(tx, sPacked, 5, 5, 5)
	add(tx1518, sBP, 3.5, 3.5, 3.5)
	add(tx1518, sCold, 3, 3, 3)
	add(tx1518, sRawTx, 4, 4, 4)           // 0.75
	add(tx1518, sRawTxCold, 3.4, 3.5, 3.6) // 0.88, 0.857, 0.833: median 0.857, met
	res.Runs = append(res.Runs, Run{Group: "rx-64-go", Subject: sPacked.Name, Round: 1, Unavailable: "no bit 34"})
	add(ping, sBP, 2, 2, 2)
	add(ping, sDPDK, 5, 4, 5) // p50 0.4, 0.5, 0.4: met; p99 20 vs 15: missed
	return res
}

func TestGoals(t *testing.T) {
	res := goalRuns()
	res.analyse()
	got := map[string]Target{}
	for _, tg := range res.Targets {
		got[tg.Name] = tg
	}
	for _, c := range []struct {
		name      string
		value     float64
		met       bool
		available bool
	}{
		{goalTX64Limit, 0.95, true, true},
		{goalTX64Testpmd, 4.75 / 4, false, true},
		{goalCtl, 4.7 / 4.75, true, true}, // 0.989, 0.95, 0.989
		{goalP50, 0.4, true, true},
		{goalP99, 20.0 / 15, false, true},
		{goalPacked, 5 / 4.75, false, true},
		{goal1518Fair, 3 / 3.5, true, true},
		{"Guest TX 1518 B: vhostd (frames written once) against the plain raw write loop (cache-hot frame)", 3.5 / 4, true, true},
		{"Guest RX 64 B: vhostd >= 0.9x the raw read loop", 0, false, false},
	} {
		tg, ok := got[c.name]
		if !ok {
			t.Errorf("no goal row %q", c.name)
			continue
		}
		if tg.Available != c.available || tg.Met != c.met || math.Abs(tg.Value-c.value) > 1e-9 {
			t.Errorf("%s: available %v met %v value %v, want %v %v %v (%+v)", c.name, tg.Available, tg.Met, tg.Value, c.available, c.met, c.value, tg)
		}
	}
	if p := got[goalPacked]; !p.Report || p.Want != "report" {
		t.Errorf("packed/split is a reported figure, not a goal: %+v", p)
	}
	if p := got["Packed / split rings, vhostd (rx-64-go, issue 18)"]; p.Available || p.Figures != "vhostd-packed unavailable: no bit 34" {
		t.Errorf("packed rx row with vhostd-packed unavailable: %+v", p)
	}
	if l := got[goalTX64Limit]; l.Ratio != "tx-64-go: vhostd-bp50 / max(raw-write, raw-write-uring-fixed) (mpps)" {
		t.Errorf("best-limit ratio named %q", l.Ratio)
	}
}

// TestBestPerRound: the best limit is taken round by round, not as the
// better of the two medians.
func TestBestPerRound(t *testing.T) {
	res := goalRuns()
	res.analyse()
	r := res.ratioOfBest("tx-64-go", sBP.Name, []string{sRawTx.Name, sRawTxUringFixed.Name}, "mpps")
	want := []float64{0.95, 0.8, 4.75 / 5}
	if len(r.PerRound) != 3 {
		t.Fatalf("per round %v", r.PerRound)
	}
	for i := range want {
		if math.Abs(r.PerRound[i]-want[i]) > 1e-9 {
			t.Fatalf("per round %v, want %v", r.PerRound, want)
		}
	}
}

package harness

import (
	"fmt"
	"slices"
	"strings"
)

// goal is one row of the goals table: a/b (b may be the per-round best
// of several subjects) on figure m in group g, wanted >= want (<= when
// atMost); report rows have no threshold.
type goal struct {
	name   string
	g, a   string
	b      []string
	m      string
	want   float64
	atMost bool
	report bool
}

// noReflectEcho says why testpmd has no ping-reflect figure: tun hands a
// frame that XDP sent back (XDP_TX) to its reader without the 4-byte
// packet-information header, which DPDK's net_tap reads in front of every
// frame (its TAP has IFF_NO_PI off). net_tap takes the frame's first 4
// bytes for that header and the echo never arrives whole (checked on Linux
// 6.18: a 64-byte write with the header, a 60-byte read without it).
const noReflectEcho = " (testpmd: not measurable, its net_tap expects a packet-information header that tun leaves off XDP-reflected frames; FINDINGS.md)"

// Goal rows, in the order of issue 17 (and the figures issues 16 and 18
// ask of the harness).
func goals() []goal {
	bestWrite := []string{sRawTx.Name, sRawTxUringFixed.Name}
	one := func(s Subject) []string { return []string{s.Name} }
	gs := []goal{
		{name: "Guest TX 64 B: vhostd >= 0.9x the best raw TAP write limit (write(2) or io_uring fixed file, best per round)", g: "tx-64-go", a: sBP.Name, b: bestWrite, m: "mpps", want: 0.9},
		{name: "Guest TX 64 B, fair: vhostd whose guest rewrites every frame against the io_uring loop whose frames the other CPU rewrites", g: "tx-64-go", a: sCold.Name, b: one(sRawTxUringCold), m: "mpps", report: true},
		{name: "Guest TX 64 B: vhostd >= 1.3x testpmd", g: "tx-64-go", a: sBP.Name, b: one(sDPDK), m: "mpps", want: 1.3},
		{name: "Guest TX 1518 B: vhostd >= 0.85x the fair limit (every frame written by the other CPU just before, for both)", g: "tx-1518-go", a: sCold.Name, b: one(sRawTxCold), m: "mpps", want: 0.85},
		{name: "Guest TX 1518 B: vhostd (frames written once) against the plain raw write loop (cache-hot frame)", g: "tx-1518-go", a: sBP.Name, b: one(sRawTx), m: "mpps", want: 0.85},
		{name: "Guest TX 64 KiB TSO: vhostd >= 0.8x the fair limit (every frame written by the other CPU just before, for both)", g: "tx-64k-tso-go", a: sCold.Name, b: one(sRawTxCold), m: "gbps", want: 0.8},
		{name: "Guest TX 64 KiB TSO: vhostd (frames written once) against the plain raw write loop", g: "tx-64k-tso-go", a: sBP.Name, b: one(sRawTx), m: "gbps", report: true},
		{name: "Guest RX 64 KiB: vhostd >= 0.8x the raw read loop", g: "rx-64k-tso-go", a: sBP.Name, b: one(sRawRx), m: "gbps", want: 0.8},
		{name: "Guest RX 64 KiB: vhostd against the raw read loop whose frames the other CPU reads", g: "rx-64k-tso-go", a: sBP.Name, b: one(sRawRxCold), m: "gbps", report: true},
		{name: "Guest RX 64 B: vhostd >= 0.9x the raw read loop", g: "rx-64-go", a: sBP.Name, b: one(sRawRx), m: "mpps", want: 0.9},
		{name: "Guest RX 64 B, testpmd's front-end, paced source: vhostd against the raw read loop (same source; 1 = keeps up with it)", g: "rx-64-dpdk", a: sBP.Name, b: one(sRawRx), m: "mpps", report: true},
		{name: "Guest RX 64 B, testpmd's front-end, paced source: vhostd against testpmd", g: "rx-64-dpdk", a: sBP.Name, b: one(sDPDK), m: "mpps", report: true},
	}
	for _, g := range []string{"ping-go", "ping-reflect-go"} {
		why := ""
		if g == "ping-reflect-go" {
			why = noReflectEcho
		}
		gs = append(gs,
			goal{name: "Latency p50 (" + g + "): vhostd <= 0.5x testpmd" + why, g: g, a: sBP.Name, b: one(sDPDK), m: "rtt_p50_us", want: 0.5, atMost: true},
			goal{name: "Latency p99 (" + g + "): vhostd <= testpmd" + why, g: g, a: sBP.Name, b: one(sDPDK), m: "rtt_p99_us", want: 1, atMost: true})
	}
	for _, g := range []string{"tx-64-go", "rx-64-go", "tx-64-dpdk"} {
		gs = append(gs,
			goal{name: "Packed / split rings, vhostd (" + g + ", issue 18)", g: g, a: sPacked.Name, b: one(sBP), m: "mpps", report: true},
			goal{name: "Packed / split rings, testpmd (" + g + ", issue 18)", g: g, a: sDPDKPacked.Name, b: one(sDPDK), m: "mpps", report: true})
	}
	gs = append(gs, goal{name: "Control socket polled every 100 ms, capture off (issue 16): vhostd-ctl >= 0.97x vhostd", g: "tx-64-go", a: sCtl.Name, b: one(sBP), m: "mpps", want: 0.97})
	for _, g := range []string{"tx-64-go", "tx-1518-go"} {
		gs = append(gs,
			goal{name: "TAP write strategy (" + g + "): --tap-write uring / default", g: g, a: sUring.Name, b: one(sBP), m: "mpps", report: true},
			goal{name: "TAP write strategy (" + g + "): --tap-write write / default", g: g, a: sWrite.Name, b: one(sBP), m: "mpps", report: true})
	}
	return gs
}

// beforeAfter are the report rows of a run with vhostd-before: vhostd-bp50
// over the older vhostd on each group's primary figure (p50 and p99 for
// ping: lower is better there).
func beforeAfter(groups []Group) []goal {
	var gs []goal
	for _, g := range groups {
		if !slices.ContainsFunc(g.Subjects, func(s Subject) bool { return s.Before }) {
			continue
		}
		ms := []string{g.Primary()}
		if g.Dir == "ping" {
			ms = append(ms, "rtt_p99_us")
		}
		for _, m := range ms {
			gs = append(gs, goal{name: "After / before (" + g.Name + ", " + m + ")", g: g.Name, a: sBP.Name, b: []string{sBefore.Name}, m: m, report: true})
		}
	}
	return gs
}

// targets fills res.Targets: the goal rows, then the idle check, then the
// before/after rows of a run with vhostd-before.
func (res *Results) targets() {
	for _, gl := range goals() {
		res.Targets = append(res.Targets, res.goalRow(gl))
	}
	// Idle is absolute, not a ratio.
	t := Target{Name: "Idle: < 1% of a core per idle queue pair (vhostd default)", Ratio: "idle-go: vhostd-bp50 backend cores (1 queue pair)", Want: "< 0.01"}
	if sm := res.summary("idle-go", sBP.Name); sm.Runs > 0 {
		t.Available, t.Value = true, sm.Median["backend_cores"]
		t.Met = t.Value < 0.01
		t.Figures = fmt.Sprintf("vhostd-bp50 %.4f, vhostd-event %.4f, testpmd %.4f cores", t.Value,
			res.summary("idle-go", sEvent.Name).Median["backend_cores"], res.summary("idle-go", sDPDK.Name).Median["backend_cores"])
	}
	res.Targets = append(res.Targets, t)
	for _, gl := range beforeAfter(res.Groups) {
		res.Targets = append(res.Targets, res.goalRow(gl))
	}
}

// goalRow computes one goal from the runs, round by round.
func (res *Results) goalRow(gl goal) Target {
	r := res.ratioOfBest(gl.g, gl.a, gl.b, gl.m)
	t := Target{Name: gl.name, Ratio: fmt.Sprintf("%s: %s (%s)", gl.g, r.Pair, gl.m), Report: gl.report}
	switch {
	case gl.report:
		t.Want = "report"
	case gl.atMost:
		t.Want = fmt.Sprintf("<= %.2g", gl.want)
	default:
		t.Want = fmt.Sprintf(">= %.2g", gl.want)
	}
	if len(r.PerRound) == 0 {
		for _, x := range res.Runs {
			if x.Group == gl.g && x.Unavailable != "" && (x.Subject == gl.a || slices.Contains(gl.b, x.Subject)) {
				t.Figures = x.Subject + " unavailable: " + x.Unavailable
			}
		}
		return t
	}
	meets := func(v float64) bool {
		return !gl.report && ((gl.atMost && v <= gl.want) || (!gl.atMost && v >= gl.want))
	}
	t.Available, t.Value, t.Met = true, r.Median, meets(r.Median)
	figs := []string{fmt.Sprintf("%s %.4g", gl.a, res.summary(gl.g, gl.a).Median[gl.m])}
	for _, b := range gl.b {
		figs = append(figs, fmt.Sprintf("%s %.4g", b, res.summary(gl.g, b).Median[gl.m]))
	}
	t.Figures = strings.Join(figs, " vs ") + " (medians)"
	t.Quiet, t.QuietRounds = r.Quiet, r.QuietRounds
	t.QuietMet = r.QuietRounds > 0 && meets(r.Quiet)
	return t
}

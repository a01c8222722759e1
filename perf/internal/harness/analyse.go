package harness

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Summary is the medians of one subject in one group.
type Summary struct {
	Group   string             `json:"group"`
	Subject string             `json:"subject"`
	Runs    int                `json:"runs"`
	Median  map[string]float64 `json:"median"`
	Min     map[string]float64 `json:"min"`
	Max     map[string]float64 `json:"max"`
	// QuietMedian is the median over the runs with at most quietForeign
	// cores of other load in their window (absent when there were none).
	QuietMedian map[string]float64 `json:"quiet_median,omitempty"`
	QuietRuns   int                `json:"quiet_runs"`
	Noisy       int                `json:"noisy_runs"`
	Errors      int                `json:"failed_runs"`
	Notes       []string           `json:"notes,omitempty"`
}

// Ratio is A/B of one figure, computed round by round and then the median.
type Ratio struct {
	Group    string    `json:"group"`
	A, B     string    `json:"-"`
	Pair     string    `json:"pair"`
	Metric   string    `json:"metric"`
	Median   float64   `json:"median"`
	PerRound []float64 `json:"per_round"`
	// Quiet is the median over the rounds where both runs were quiet
	// (QuietRounds of them).
	Quiet       float64 `json:"quiet_median"`
	QuietRounds int     `json:"quiet_rounds"`
}

// quietForeign is the most CPU (cores) other processes may use during a
// run's window for the run to count as quiet.
const quietForeign = 0.3

// Target is one goal (issue 17, with issue 16's and 18's figures): a
// ratio and what it should be, or (Report) a ratio reported without one.
type Target struct {
	Name      string  `json:"name"`
	Ratio     string  `json:"ratio"`
	Value     float64 `json:"value"`
	Want      string  `json:"want"`
	Met       bool    `json:"met"`
	Available bool    `json:"available"`
	Figures   string  `json:"figures"`
	// Quiet is the same ratio over quiet rounds only.
	Quiet       float64 `json:"quiet_value"`
	QuietRounds int     `json:"quiet_rounds"`
	QuietMet    bool    `json:"quiet_met"`
	// Report: no threshold, the figure is reported (Met stays false).
	Report bool `json:"report,omitempty"`
}

var metrics = []string{"mpps", "gbps", "capacity_mpps", "backend_ns", "fe_ns", "inject_ns", "backend_cores", "fe_cores", "rtt_p50_us", "rtt_p99_us"}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (res *Results) runsOf(g, s string) []*Run {
	var rs []*Run
	for i := range res.Runs {
		r := &res.Runs[i]
		if r.Group == g && r.Subject == s && r.measured() {
			rs = append(rs, r)
		}
	}
	return rs
}

// analyse fills Summary, Ratios and Targets from Runs, and flags the noisy
// runs.
func (res *Results) analyse() {
	for _, g := range res.Groups {
		prim := g.Primary()
		for _, s := range g.Subjects {
			res.Summary = append(res.Summary, res.summarise(g, s, prim))
		}
		res.ratios(g, prim)
	}
	res.targets()
}

// summarise is the summary of subject s in group g (prim: the group's
// primary figure); it flags s's noisy runs.
func (res *Results) summarise(g Group, s Subject, prim string) Summary {
	sm := Summary{Group: g.Name, Subject: s.Name, Median: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{}}
	rs := res.runsOf(g.Name, s.Name)
	for _, r := range res.Runs {
		if r.Group == g.Name && r.Subject == s.Name && r.Error != "" {
			sm.Errors++
			sm.Notes = append(sm.Notes, fmt.Sprintf("round %d failed: %s", r.Round, r.Error))
		}
		if r.Group == g.Name && r.Subject == s.Name && r.Unavailable != "" {
			sm.Notes = append(sm.Notes, fmt.Sprintf("round %d: unavailable: %s", r.Round, r.Unavailable))
		}
	}
	sm.Runs = len(rs)
	for _, m := range metrics {
		sm.add(m, rs)
	}
	for _, r := range rs {
		if r.Foreign <= quietForeign {
			sm.QuietRuns++
		}
	}
	// Noisy runs: other processes took CPU during the window, or
	// the figure is far from the subject's median.
	med := sm.Median[prim]
	for _, r := range rs {
		if r.Foreign > quietForeign {
			r.Noisy = append(r.Noisy, fmt.Sprintf("foreign CPU %.2f cores", r.Foreign))
		}
		if v := r.value(prim); med > 0 && math.Abs(v-med)/med > 0.25 {
			r.Noisy = append(r.Noisy, fmt.Sprintf("%s %.3g is %.0f%% off the median", prim, v, 100*(v-med)/med))
		}
		if len(r.Noisy) > 0 {
			sm.Noisy++
		}
		if r.Note != "" {
			sm.Notes = append(sm.Notes, fmt.Sprintf("round %d: %s", r.Round, r.Note))
		}
	}
	return sm
}

// unmeasured reports whether x, figure m of one run, is a zero that means
// the run's kind does not measure m (CPU per frame, round trips).
func unmeasured(m string, x float64) bool {
	return x == 0 && (strings.HasSuffix(m, "_ns") || strings.HasPrefix(m, "rtt"))
}

// add records figure m of runs rs: median, min, max and the median of the
// quiet runs.
func (sm *Summary) add(m string, rs []*Run) {
	var v []float64
	for _, r := range rs {
		x := r.value(m)
		if unmeasured(m, x) {
			continue // not measured in this kind of run
		}
		v = append(v, x)
	}
	if len(v) == 0 {
		return
	}
	sm.Median[m] = median(v)
	sort.Float64s(v)
	sm.Min[m], sm.Max[m] = v[0], v[len(v)-1]
	var q []float64
	for _, r := range rs {
		x := r.value(m)
		if r.Foreign <= quietForeign && !unmeasured(m, x) {
			q = append(q, x)
		}
	}
	if len(q) > 0 {
		if sm.QuietMedian == nil {
			sm.QuietMedian = map[string]float64{}
		}
		sm.QuietMedian[m] = median(q)
	}
}

// ratios adds group g's ratios, round by round: every vhostd subject
// against every other subject of the group (vhostd subjects only against
// vhostd-bp50), on the primary figure prim and the one that goes with it.
func (res *Results) ratios(g Group, prim string) {
	ms := []string{prim}
	switch g.Dir {
	case "ping":
		ms = append(ms, "rtt_p99_us")
	case "tx", "rx":
		ms = append(ms, "capacity_mpps")
	}
	for _, a := range g.Subjects {
		if a.Kind != kVhostd {
			continue
		}
		for _, b := range g.Subjects {
			if a.Name == b.Name || (b.Kind == kVhostd && a.Name != sBP.Name) {
				continue
			}
			for _, m := range ms {
				res.Ratios = append(res.Ratios, res.ratioOf(g.Name, a.Name, b.Name, m))
			}
		}
	}
}

// ratioOf is a/b on figure m in group g, round by round.
func (res *Results) ratioOf(g, a, b, m string) Ratio { return res.ratioOfBest(g, a, []string{b}, m) }

// ratioOfBest is a over the best (largest) of subjects bs on figure m in
// group g, the best taken round by round among those measured that round.
func (res *Results) ratioOfBest(g, a string, bs []string, m string) Ratio {
	b := strings.Join(bs, "|")
	if len(bs) > 1 {
		b = "max(" + strings.Join(bs, ", ") + ")"
	}
	rt := Ratio{Group: g, A: a, B: b, Pair: a + " / " + b, Metric: m}
	var q []float64
	for round := 1; round <= res.Options.Rounds; round++ {
		ra, rb := res.find(g, a, round), res.best(g, bs, m, round)
		if ra == nil || rb == nil || rb.value(m) == 0 {
			continue
		}
		rt.PerRound = append(rt.PerRound, ra.value(m)/rb.value(m))
		if ra.Foreign <= quietForeign && rb.Foreign <= quietForeign {
			q = append(q, ra.value(m)/rb.value(m))
		}
	}
	rt.Median = median(rt.PerRound)
	rt.Quiet, rt.QuietRounds = median(q), len(q)
	return rt
}

// best is the run of round among subjects bs with the largest figure m.
func (res *Results) best(g string, bs []string, m string, round int) *Run {
	var r *Run
	for _, b := range bs {
		if x := res.find(g, b, round); x != nil && (r == nil || x.value(m) > r.value(m)) {
			r = x
		}
	}
	return r
}

// measured reports whether r measured its subject: it neither failed nor
// found the subject unavailable.
func (r *Run) measured() bool { return r.Error == "" && r.Unavailable == "" }

func (res *Results) find(g, s string, round int) *Run {
	for i := range res.Runs {
		r := &res.Runs[i]
		if r.Group == g && r.Subject == s && r.Round == round && r.measured() {
			return r
		}
	}
	return nil
}

func (res *Results) ratio(g, a, b, m string) (Ratio, bool) {
	for _, r := range res.Ratios {
		if r.Group == g && r.A == a && r.B == b && r.Metric == m && len(r.PerRound) > 0 {
			return r, true
		}
	}
	return Ratio{}, false
}

func (res *Results) summary(g, s string) Summary {
	for _, sm := range res.Summary {
		if sm.Group == g && sm.Subject == s {
			return sm
		}
	}
	return Summary{}
}

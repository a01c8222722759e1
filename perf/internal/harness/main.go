// Package harness runs the scenario matrix and writes the results:
// results.json (every run), RESULTS.md (tables, ratios, targets) and PNG
// plots. See perf/README.md.
package harness

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Machine is what the harness records about the machine before it starts.
type Machine struct {
	CPUs          int     `json:"cpus"`
	CPUModel      string  `json:"cpu_model"`
	Kernel        string  `json:"kernel"`
	LoadBefore    string  `json:"loadavg_before"`
	ForeignBefore float64 `json:"foreign_cores_before"`
	Vhostd        string  `json:"vhostd_commit"`
	DPDK          string  `json:"dpdk"`
	Go            string  `json:"go"`
}

// Results is results.json.
type Results struct {
	Command  string    `json:"command"`
	Started  string    `json:"started"`
	Seconds  float64   `json:"seconds"`
	Options  Options   `json:"options"`
	Machine  Machine   `json:"machine"`
	Groups   []Group   `json:"groups"`
	Runs     []Run     `json:"runs"`
	Summary  []Summary `json:"summary"`
	Ratios   []Ratio   `json:"ratios"`
	Targets  []Target  `json:"targets"`
	Warnings []string  `json:"warnings,omitempty"`
}

// Main is `vperf run`.
func Main(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	smoke := fs.Bool("smoke", false, "one short run of each scenario (CI)")
	out := fs.String("out", "", "output directory (default: perf/ for a full run, a temporary directory for --smoke)")
	o := Options{}
	fs.IntVar(&o.Rounds, "rounds", 5, "interleaved rounds (A B C A B C ...)")
	fs.DurationVar(&o.Window, "window", 600*time.Millisecond, "throughput measurement window")
	fs.DurationVar(&o.Warmup, "warmup", 150*time.Millisecond, "time after traffic starts before the window")
	fs.DurationVar(&o.Ping, "ping", time.Second, "ping-pong duration")
	fs.DurationVar(&o.Idle, "idle", 1200*time.Millisecond, "idle measurement window")
	fs.StringVar(&o.Vhostd, "vhostd", "", "vhostd binary")
	fs.StringVar(&o.Testpmd, "testpmd", "dpdk-testpmd", "testpmd binary")
	fs.StringVar(&o.Only, "only", "", "run only the groups whose name contains this")
	split := fs.String("vhostd-split", DefaultSplit, "vhostd flags of the vhostd-split subject in the 64-byte groups (empty: no such subject)")
	fs.StringVar(&o.Sink, "sink", "xdp", "guest-TX sink: xdp (xdptap count-and-drop) or stack (host stack drops)")
	from := fs.String("from", "", "re-render RESULTS.md and plots from this results.json without measuring")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from != "" {
		return rerender(*from, *out)
	}
	o.Smoke = *smoke
	if o.Smoke {
		o.Rounds, o.Window, o.Warmup, o.Ping, o.Idle = 1, 300*time.Millisecond, 100*time.Millisecond, 300*time.Millisecond, 500*time.Millisecond
	}
	if o.Vhostd == "" {
		return fmt.Errorf("--vhostd is required")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.Self = self
	if *out == "" {
		if o.Smoke {
			if *out, err = os.MkdirTemp("", "vperf-smoke-"); err != nil {
				return err
			}
		} else {
			*out = "."
		}
	}
	if o.Dir, err = os.MkdirTemp("", "vperf-sock-"); err != nil {
		return err
	}
	defer os.RemoveAll(o.Dir)
	if runtime.NumCPU() < 2 {
		return fmt.Errorf("need 2 CPUs (back-end on CPU 1, front-end on CPU 0)")
	}

	cmd := os.Getenv("VPERF_COMMAND") // set by perf/run.sh: what the user typed
	if cmd == "" {
		cmd = "vperf run " + strings.Join(args, " ")
	}
	res := &Results{Command: cmd, Started: time.Now().UTC().Format(time.RFC3339), Options: o}
	res.Machine = machine(o)
	fmt.Fprintf(os.Stderr, "vperf: load before start: %s, foreign CPU %.2f cores\n", res.Machine.LoadBefore, res.Machine.ForeignBefore)
	for _, g := range matrix(strings.Fields(*split)) {
		if o.Only == "" || strings.Contains(g.Name, o.Only) {
			res.Groups = append(res.Groups, g)
		}
	}
	h := newHarness(o)
	t0 := time.Now()
	// SIGINT/SIGTERM: finish the current run (its clean-up removes what it
	// made), then write what was measured.
	var interrupted atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sigs; interrupted.Store(true) }()
	defer signal.Stop(sigs)
	for _, g := range res.Groups {
		for round := 1; round <= o.Rounds; round++ {
			for _, s := range g.Subjects {
				if interrupted.Load() {
					res.Warnings = append(res.Warnings, "interrupted: the matrix is incomplete")
					goto done
				}
				r := h.runOne(g, s, round)
				res.Runs = append(res.Runs, r)
				fmt.Fprintf(os.Stderr, "%-18s %-13s r%d  %7.3f Mpps %7.3f Gbit/s  p50 %6.1f us  be %.2f cores  foreign %.2f  setup %.1f s wall %.1f s %s%s\n",
					g.Name, s.Name, round, r.Mpps, r.Gbps, r.RTTP50us, r.Cores["backend"], r.Foreign, r.SetupSeconds, r.WallSeconds, r.Note, r.Error)
			}
		}
	}
done:
	res.Seconds = time.Since(t0).Seconds()
	res.analyse()
	if err := res.write(*out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "vperf: %d runs in %.0f s; wrote %s/RESULTS.md, results.json, plots/\n", len(res.Runs), res.Seconds, *out)
	var errs int
	for _, r := range res.Runs {
		if r.Error != "" {
			errs++
		}
	}
	if errs > 0 {
		return fmt.Errorf("%d of %d runs failed (see results.json)", errs, len(res.Runs))
	}
	return nil
}

// rerender re-analyses a results.json and rewrites it with RESULTS.md and
// the plots next to it (or in out).
func rerender(from, out string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	res := &Results{}
	if err := json.Unmarshal(b, res); err != nil {
		return err
	}
	if out == "" {
		out = filepath.Dir(from)
	}
	for i := range res.Runs {
		res.Runs[i].Noisy = nil
	}
	res.Summary, res.Ratios, res.Targets = nil, nil, nil
	res.analyse()
	return res.write(out)
}

func (res *Results) write(out string) error {
	if err := os.MkdirAll(filepath.Join(out, "plots"), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	plots, err := res.plot(filepath.Join(out, "plots"))
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	return os.WriteFile(filepath.Join(out, "RESULTS.md"), []byte(res.markdown(plots)), 0o644)
}

func machine(o Options) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, m.CPUModel, _ = strings.Cut(l, ": ")
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	_, m.LoadBefore = loadavg()
	b0, t0 := busyNs(), time.Now()
	time.Sleep(2 * time.Second)
	m.ForeignBefore = float64(busyNs()-b0) / float64(time.Since(t0).Nanoseconds())
	if b, err := exec.Command("git", "-C", filepath.Dir(o.Self), "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Vhostd = strings.TrimSpace(string(b))
	}
	if b, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Vhostd = strings.TrimSpace(string(b))
	}
	if b, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "dpdk-dev").Output(); err == nil {
		m.DPDK = strings.TrimSpace(string(b))
	}
	return m
}

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

// Target is one of issue 7's targets.
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
		if r.Group == g && r.Subject == s && r.Error == "" {
			rs = append(rs, r)
		}
	}
	return rs
}

func (res *Results) analyse() {
	for _, g := range res.Groups {
		prim := g.Primary()
		for _, s := range g.Subjects {
			sm := Summary{Group: g.Name, Subject: s.Name, Median: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{}}
			rs := res.runsOf(g.Name, s.Name)
			for _, r := range res.Runs {
				if r.Group == g.Name && r.Subject == s.Name && r.Error != "" {
					sm.Errors++
					sm.Notes = append(sm.Notes, fmt.Sprintf("round %d failed: %s", r.Round, r.Error))
				}
			}
			sm.Runs = len(rs)
			for _, m := range metrics {
				var v []float64
				for _, r := range rs {
					x := r.value(m)
					if x == 0 && (strings.HasSuffix(m, "_ns") || strings.HasPrefix(m, "rtt")) {
						continue // not measured in this kind of run
					}
					v = append(v, x)
				}
				if len(v) == 0 {
					continue
				}
				sm.Median[m] = median(v)
				sort.Float64s(v)
				sm.Min[m], sm.Max[m] = v[0], v[len(v)-1]
				var q []float64
				for _, r := range rs {
					x := r.value(m)
					if r.Foreign <= quietForeign && !(x == 0 && (strings.HasSuffix(m, "_ns") || strings.HasPrefix(m, "rtt"))) {
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
			res.Summary = append(res.Summary, sm)
		}
		// Ratios, round by round: every vhostd subject against every other
		// subject of the group.
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
					rt := Ratio{Group: g.Name, A: a.Name, B: b.Name, Pair: a.Name + " / " + b.Name, Metric: m}
					var q []float64
					for round := 1; round <= res.Options.Rounds; round++ {
						ra, rb := res.find(g.Name, a.Name, round), res.find(g.Name, b.Name, round)
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
					res.Ratios = append(res.Ratios, rt)
				}
			}
		}
	}
	res.targets()
}

func (res *Results) find(g, s string, round int) *Run {
	for i := range res.Runs {
		r := &res.Runs[i]
		if r.Group == g && r.Subject == s && r.Round == round && r.Error == "" {
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

func (res *Results) targets() {
	add := func(name, g, a, b, m string, want float64, atMost bool) {
		t := Target{Name: name, Ratio: fmt.Sprintf("%s: %s / %s (%s)", g, a, b, m)}
		if atMost {
			t.Want = fmt.Sprintf("<= %.2g", want)
		} else {
			t.Want = fmt.Sprintf(">= %.2g", want)
		}
		if r, ok := res.ratio(g, a, b, m); ok {
			t.Available, t.Value = true, r.Median
			t.Met = (atMost && r.Median <= want) || (!atMost && r.Median >= want)
			t.Figures = fmt.Sprintf("%s %.4g vs %s %.4g (medians)", a, res.summary(g, a).Median[m], b, res.summary(g, b).Median[m])
			t.Quiet, t.QuietRounds = r.Quiet, r.QuietRounds
			t.QuietMet = r.QuietRounds > 0 && ((atMost && r.Quiet <= want) || (!atMost && r.Quiet >= want))
		}
		res.Targets = append(res.Targets, t)
	}
	for _, fe := range []string{"go", "dpdk"} {
		add("Guest TX 64 B: vhostd >= 1.2x testpmd ("+fe+" front-end)", "tx-64-"+fe, sBP.Name, sDPDK.Name, "mpps", 1.2, false)
		add("Guest TX 64 B: vhostd >= 0.8x raw TAP write loop ("+fe+" front-end)", "tx-64-"+fe, sBP.Name, sRawTx.Name, "mpps", 0.8, false)
	}
	// The same two targets per unit of back-end CPU: frames one busy core
	// moves at each back-end's measured cost (not starved by the load of
	// other processes on the front-end's CPU).
	for _, fe := range []string{"go", "dpdk"} {
		add("Guest TX 64 B, per back-end CPU: vhostd >= 1.2x testpmd ("+fe+" front-end)", "tx-64-"+fe, sBP.Name, sDPDK.Name, "capacity_mpps", 1.2, false)
		add("Guest TX 64 B, per back-end CPU: vhostd >= 0.8x raw TAP write loop ("+fe+" front-end)", "tx-64-"+fe, sBP.Name, sRawTx.Name, "capacity_mpps", 0.8, false)
	}
	add("Guest TX 64 KiB TSO: vhostd >= 5x testpmd Gbit/s", "tx-64k-tso-go", sBP.Name, sDPDK.Name, "gbps", 5, false)
	add("Guest RX 64 KiB TSO: vhostd >= 5x testpmd Gbit/s", "rx-64k-tso-go", sBP.Name, sDPDK.Name, "gbps", 5, false)
	add("Latency p50: adaptive busy-poll <= 0.5x event mode (host stack answers)", "ping-go", sBP.Name, sEvent.Name, "rtt_p50_us", 0.5, true)
	add("Latency p50: adaptive busy-poll <= 0.5x event mode (XDP reflect loop)", "ping-reflect-go", sBP.Name, sEvent.Name, "rtt_p50_us", 0.5, true)
	// Idle is absolute, not a ratio.
	t := Target{Name: "Idle: < 1% of a core per idle queue pair (vhostd default)", Ratio: "idle-go: vhostd-bp50 backend cores (1 queue pair)", Want: "< 0.01"}
	if sm := res.summary("idle-go", sBP.Name); sm.Runs > 0 {
		t.Available, t.Value = true, sm.Median["backend_cores"]
		t.Met = t.Value < 0.01
		t.Figures = fmt.Sprintf("vhostd-bp50 %.4f, vhostd-event %.4f, testpmd %.4f cores", t.Value,
			res.summary("idle-go", sEvent.Name).Median["backend_cores"], res.summary("idle-go", sDPDK.Name).Median["backend_cores"])
	}
	res.Targets = append(res.Targets, t)
}

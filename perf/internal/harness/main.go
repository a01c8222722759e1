// Package harness runs the scenario matrix and writes the results:
// results.json (every run), RESULTS.md (tables, ratios, targets) and PNG
// plots. See perf/README.md.
package harness

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
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
	// others: the other machine types' latest full runs (machines.go).
	others []Other
	// Notes say which subjects were left out and why.
	Notes []string `json:"notes,omitempty"`
}

// abilities asks the vhostd binary what it can do (its --help).
func abilities(vhostd string) Abilities {
	out, _ := exec.Command(vhostd, "--help").CombinedOutput()
	return Abilities{TapWrite: strings.Contains(string(out), "--tap-write")}
}

// Main is `vperf run`.
func Main(args []string) error {
	o, f, err := parseFlags(args)
	if err != nil {
		return err
	}
	if f.from != "" {
		return rerender(f.from, f.out)
	}
	o.Smoke = f.smoke
	if o.Smoke {
		o.Rounds, o.Window, o.Warmup, o.Ping, o.Idle = 1, 300*time.Millisecond, 100*time.Millisecond, 300*time.Millisecond, 500*time.Millisecond
	}
	if o.Vhostd == "" {
		return fmt.Errorf("--vhostd is required")
	}
	if o.Self, err = os.Executable(); err != nil {
		return err
	}
	out := f.out
	if out == "" {
		if o.Smoke {
			if out, err = os.MkdirTemp("", "vperf-smoke-"); err != nil {
				return err
			}
		} else {
			out = "."
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
	ab := abilities(o.Vhostd)
	ab.Before = o.Before != ""
	if !ab.TapWrite {
		res.Notes = append(res.Notes, "vhostd-uring and vhostd-write not measured: this vhostd has no --tap-write (not in `vhostd --help`).")
	}
	for _, g := range matrix(ab) {
		if o.Only == "" || strings.Contains(g.Name, o.Only) {
			res.Groups = append(res.Groups, g)
		}
	}
	// SIGINT/SIGTERM: finish the current run (its clean-up removes what it
	// made), then write what was measured.
	var interrupted atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sigs; interrupted.Store(true) }()
	defer signal.Stop(sigs)
	res.runMatrix(newHarness(o), &interrupted)
	res.analyse()
	if err := res.write(out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "vperf: %d runs in %.0f s; wrote %s/RESULTS.md, results.json, plots/\n", len(res.Runs), res.Seconds, out)
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

// runFlags are the flags of `vperf run` that are not Options.
type runFlags struct {
	smoke bool
	out   string
	from  string // a results.json to re-render instead of measuring
}

func parseFlags(args []string) (Options, runFlags, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var f runFlags
	fs.BoolVar(&f.smoke, "smoke", false, "one short run of each scenario (CI)")
	fs.StringVar(&f.out, "out", "", "output directory (default: perf/ for a full run, a temporary directory for --smoke)")
	o := Options{}
	fs.IntVar(&o.Rounds, "rounds", 5, "interleaved rounds (A B C A B C ...)")
	fs.DurationVar(&o.Window, "window", 600*time.Millisecond, "throughput measurement window")
	fs.DurationVar(&o.Warmup, "warmup", 150*time.Millisecond, "time after traffic starts before the window")
	fs.DurationVar(&o.Ping, "ping", time.Second, "ping-pong duration")
	fs.DurationVar(&o.Idle, "idle", 1200*time.Millisecond, "idle measurement window")
	fs.StringVar(&o.Vhostd, "vhostd", "", "vhostd binary")
	fs.StringVar(&o.Before, "vhostd-before", "", "an older vhostd binary: the vhostd-before subject (vhostd-bp50's flags) joins every group but idle, interleaved with the rest")
	fs.StringVar(&o.BeforeAt, "vhostd-before-at", "", "what --vhostd-before was built from (a commit), for the record")
	fs.StringVar(&o.Testpmd, "testpmd", "dpdk-testpmd", "testpmd binary")
	fs.StringVar(&o.Only, "only", "", "run only the groups whose name contains this")
	fs.Float64Var(&o.Duty, "dpdk-rx-duty", 0.5, "guest RX with testpmd's front-end: the share of CPU 0 the paced source takes (0: unpaced, starved by the spinning front-end)")
	fs.StringVar(&o.Sink, "sink", "xdp", "guest-TX sink: xdp (xdptap count-and-drop) or stack (host stack drops)")
	fs.StringVar(&f.from, "from", "", "re-render RESULTS.md and plots from this results.json without measuring")
	err := fs.Parse(args)
	return o, f, err
}

// runMatrix measures every subject of every group, round by round
// (A B C A B C ...), into res.Runs, and stops before the next run once
// interrupted is set.
func (res *Results) runMatrix(h *harness, interrupted *atomic.Bool) {
	t0 := time.Now()
	defer func() { res.Seconds = time.Since(t0).Seconds() }()
	for _, g := range res.Groups {
		for round := 1; round <= h.o.Rounds; round++ {
			for _, s := range g.Subjects {
				if interrupted.Load() {
					res.Warnings = append(res.Warnings, "interrupted: the matrix is incomplete")
					return
				}
				r := h.runOne(g, s, round)
				res.Runs = append(res.Runs, r)
				fmt.Fprintf(os.Stderr, "%-18s %-13s r%d  %7.3f Mpps %7.3f Gbit/s  p50 %6.1f us  be %.2f cores  foreign %.2f  setup %.1f s wall %.1f s %s%s%s\n",
					g.Name, s.Name, round, r.Mpps, r.Gbps, r.RTTP50us, r.Cores["backend"], r.Foreign, r.SetupSeconds, r.WallSeconds, r.Note, r.Error, r.Unavailable)
			}
		}
	}
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
	if err := res.keep(out, append(b, '\n')); err != nil {
		return err
	}
	if err := res.loadOthers(out); err != nil {
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

// Command soak drives real vhostd processes for a given time with
// traffic both ways while it cycles, in a random order, through
// reconnects, stop/cont, memory-table changes, dirty logging on/off and
// bursts of malformed messages, and fails if vhostd's fds, mappings,
// threads or RSS grow. scripts/soak.sh builds and runs it (as root, in a
// network namespace of its own); it is not imported by anything.
//
// Each instance is one vhostd (--busy-poll 0) on its own TAP; the guest is
// a vhosttest front-end whose rings this program works directly in guest
// memory, the host side two AF_PACKET sockets on the TAP. Frames carry a
// sequence number and a pattern: every one must arrive intact and in
// order, and after every step frames must flow both ways again.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

type config struct {
	minutes                float64
	vhostd, modes, dir     string
	rate                   int
	tick, pause, stall     time.Duration
	warmup, sampleEvery    time.Duration
	batch                  int
	seed                   uint64
	rssDriftMiB            float64
	mapsSlack, threadSlack int
}

func parse() *config {
	c := &config{}
	flag.Float64Var(&c.minutes, "minutes", 1, "how long to run")
	flag.StringVar(&c.vhostd, "vhostd", "vhostd", "the vhostd binary")
	flag.StringVar(&c.modes, "modes", "server,client", "vhostd instances to run: server (vhostd listens) and/or client (vhostd --client)")
	flag.StringVar(&c.dir, "dir", "", "directory for sockets and vhostd logs (default: a fresh temporary one)")
	flag.IntVar(&c.rate, "rate", 1000, "frames per second each way, per instance")
	flag.DurationVar(&c.tick, "tick", 10*time.Millisecond, "the guest and host traffic period")
	flag.DurationVar(&c.pause, "pause", 600*time.Millisecond, "longest pause of plain traffic between two steps")
	flag.DurationVar(&c.stall, "stall", 10*time.Second, "longest wait for frames to flow again after a step")
	flag.DurationVar(&c.warmup, "warmup", 0, "warm-up before the baseline (default: a tenth of the run, 15 s to 2 min)")
	flag.DurationVar(&c.sampleEvery, "sample", 2*time.Second, "period of the /proc samples")
	flag.Uint64Var(&c.seed, "seed", 0, "random seed (0: from the clock)")
	flag.Float64Var(&c.rssDriftMiB, "rss-drift", 4, "largest RSS growth allowed, MiB (last-third median minus first-third median)")
	flag.IntVar(&c.mapsSlack, "maps-slack", 8, "extra /proc/PID/maps lines allowed over the baseline (Go heap growth); memfd mappings get none")
	flag.IntVar(&c.threadSlack, "thread-slack", 4, "extra threads allowed over the warm-up's maximum")
	flag.Parse()
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	if c.warmup == 0 {
		c.warmup = min(max(time.Duration(c.minutes*float64(time.Minute))/10, 15*time.Second), 2*time.Minute)
	}
	c.batch = max(1, c.rate*int(c.tick/time.Millisecond)/1000)
	return c
}

func main() {
	cfg := parse()
	if cfg.dir == "" {
		d, err := os.MkdirTemp("", "vhostd-soak-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			os.Exit(2)
		}
		defer os.RemoveAll(d)
		cfg.dir = d
	}
	os.Exit(run(cfg))
}

func run(cfg *config) int {
	suffix := testutil.Suffix(6)
	var insts []*inst
	for i, m := range strings.Split(cfg.modes, ",") {
		if m != "server" && m != "client" {
			fmt.Fprintf(os.Stderr, "soak: -modes: %q is neither server nor client\n", m)
			return 2
		}
		in := newInst(cfg, m, i, cfg.dir, suffix)
		if err := in.probes(); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
		insts = append(insts, in)
	}
	start := time.Now()
	warmEnd := start.Add(cfg.warmup)
	end := start.Add(time.Duration(cfg.minutes * float64(time.Minute)))
	fmt.Printf("soak: %.1f min, modes %s, %d frames/s each way per instance, warm-up %v, seed %d\n",
		cfg.minutes, cfg.modes, cfg.rate, cfg.warmup, cfg.seed)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for i, in := range insts {
		if err := in.startVhostd(); err != nil {
			errs[i] = err
			continue
		}
		wg.Add(2)
		go func() { defer wg.Done(); errs[i] = in.run(warmEnd, end) }()
		go func() { defer wg.Done(); in.sampler(warmEnd, end) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	report(insts, start, done, sigs)
	ok := true
	for i, in := range insts {
		if err := in.stopAll(); err != nil && errs[i] == nil {
			errs[i] = err
		}
		if !in.verdict(errs[i]) {
			ok = false
		}
	}
	if !ok {
		fmt.Println("VERDICT: FAIL")
		return 1
	}
	fmt.Println("VERDICT: PASS")
	return 0
}

// probes are the fds the malformed messages carry: an eventfd and a memfd.
func (in *inst) probes() error {
	var err error
	if in.probeEvent, err = vhosttest.NewEventfd(); err != nil {
		return err
	}
	in.probeMemfd, err = vhosttest.NewMemfd(in.memName+"-probe", 1<<20)
	return err
}

// report prints the table every minute until done (or a signal, which
// ends every instance's run early).
func report(insts []*inst, start time.Time, done <-chan struct{}, sigs <-chan os.Signal) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	header()
	last := start
	for {
		select {
		case <-done:
			if time.Since(last) > 5*time.Second {
				row(insts, start)
			}
			return
		case <-t.C:
			row(insts, start)
			last = time.Now()
		case s := <-sigs:
			fmt.Println("soak:", s, "- stopping early")
			for _, in := range insts {
				in.setFail(fmt.Errorf("stopped by %v", s))
			}
		}
	}
}

func header() {
	fmt.Printf("%5s %-6s %6s %9s %9s %9s %9s %4s %5s %5s %4s %7s\n",
		"min", "mode", "cycles", "g2h sent", "g2h recv", "h2g sent", "h2g recv", "fds", "maps", "memfd", "thr", "RSS MiB")
}

func row(insts []*inst, start time.Time) {
	for _, in := range insts {
		in.fmu.Lock()
		var last sample
		if n := len(in.st.series); n > 0 {
			last = in.st.series[n-1]
		} else if in.st.last.fds > 0 {
			last = in.st.last
		}
		cycles := in.st.cycles
		in.fmu.Unlock()
		c := &in.c
		fmt.Printf("%5.1f %-6s %6d %9d %9d %9d %9d %4d %5d %5d %4d %7.1f\n",
			time.Since(start).Minutes(), in.mode, cycles, c.g2hSent.Load(), c.g2hRecv.Load(), c.h2gSent.Load(), c.h2gRecv.Load(),
			last.fds, last.maps, last.memfdMaps, last.threads, float64(last.rssKiB)/1024)
	}
}

// logTail returns the last n lines of vhostd's log.
func (in *inst) logTail(n int) string {
	b, err := os.ReadFile(in.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

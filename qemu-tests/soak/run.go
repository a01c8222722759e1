package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

func (in *inst) count(name string) {
	in.fmu.Lock()
	in.st.add(name)
	in.fmu.Unlock()
}

// run cycles until end: every action once in a random order, each
// followed by a check that frames flow both ways and a pause of plain
// traffic, then a quiescent point (a fresh session) where fds and
// mappings are compared with the baseline.
func (in *inst) run(warmEnd, end time.Time) error {
	if err := in.connect(); err != nil {
		return fmt.Errorf("first session: %w", err)
	}
	if err := in.waitFlow("the first session", 32); err != nil {
		return err
	}
	for cycle := 1; time.Now().Before(end); cycle++ {
		order := append([]action(nil), actions...)
		in.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var names []string
		for _, a := range order {
			names = append(names, a.name)
		}
		where := fmt.Sprintf("cycle %d [%s]", cycle, strings.Join(names, " "))
		for _, a := range order {
			if err := a.do(in); err != nil {
				return fmt.Errorf("%s, %s: %w", where, a.name, err)
			}
			in.count(a.name)
			if err := in.waitFlow(a.name, 32); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			time.Sleep(time.Duration(in.rng.Int64N(int64(in.cfg.pause) + 1)))
		}
		if err := in.reconnect(); err != nil {
			return fmt.Errorf("%s, quiescent reconnect: %w", where, err)
		}
		if err := in.waitFlow("the quiescent reconnect", 32); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := in.quiesce(where, warmEnd); err != nil {
			return err
		}
		in.fmu.Lock()
		in.st.cycles = cycle
		in.fmu.Unlock()
	}
	return nil
}

// quiesce samples vhostd at a quiescent point: the first one after the
// warm-up is the baseline; later ones must come back to it (fds and
// memfd mappings exactly, maps lines within the slack) within 3 s.
func (in *inst) quiesce(where string, warmEnd time.Time) error {
	if time.Now().Before(warmEnd) {
		return nil
	}
	in.fmu.Lock()
	base := in.st.base
	in.fmu.Unlock()
	good := func(s sample) bool {
		return s.fds == base.fds && s.memfdMaps == base.memfdMaps && s.maps <= base.maps+in.cfg.mapsSlack
	}
	var s sample
	var err error
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if s, err = readSample(in.pid()); err != nil {
			return fmt.Errorf("%s: sampling vhostd: %w", where, err)
		}
		if base == nil || good(s) || time.Now().After(deadline) {
			break
		}
	}
	in.fmu.Lock()
	defer in.fmu.Unlock()
	if base == nil {
		in.st.base = &s
		return nil
	}
	in.st.quiescent = append(in.st.quiescent, s)
	if !good(s) {
		in.st.violations = append(in.st.violations, fmt.Sprintf("%s: %v; baseline %v; fds by kind: %s", where, s, *base, fdDiff(s, *base)))
	}
	return nil
}

// sampler reads /proc/PID every few seconds: the warm-up's most threads,
// then the series RSS and threads are judged on.
func (in *inst) sampler(warmEnd, end time.Time) {
	in.every(in.cfg.sampleEvery, func() bool {
		if time.Now().After(end) {
			return false
		}
		s, err := readSample(in.pid())
		if err != nil {
			in.setFail(fmt.Errorf("vhostd (pid %d) gone: %w", in.pid(), err))
			return false
		}
		in.fmu.Lock()
		defer in.fmu.Unlock()
		s.fdKinds = nil // only the quiescent samples keep them
		in.st.last = s
		if s.t.Before(warmEnd) {
			in.st.warmThr = max(in.st.warmThr, s.threads)
		} else {
			in.st.series = append(in.st.series, s)
		}
		return true
	})
}

// verdict prints the instance's summary and reports whether it passed.
func (in *inst) verdict(runErr error) bool {
	in.fmu.Lock()
	defer in.fmu.Unlock()
	st := &in.st
	ok := true
	fail := func(format string, a ...any) {
		ok = false
		fmt.Printf("  FAIL "+format+"\n", a...)
	}
	args := "not started"
	if in.cmd != nil {
		args = strings.Join(in.cmd.Args[1:], " ")
	}
	fmt.Printf("== %s (vhostd %s, TAP %s) ==\n", in.mode, args, in.tap)
	var acts []string
	for k, v := range st.actions {
		acts = append(acts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(acts)
	fmt.Printf("  cycles %d; steps %s\n", st.cycles, strings.Join(acts, " "))
	c := &in.c
	fmt.Printf("  guest->host: %d sent, %d received intact; host->guest: %d sent (%d send errors), %d received intact; %d corrupt, %d out of order\n",
		c.g2hSent.Load(), c.g2hRecv.Load(), c.h2gSent.Load(), c.h2gSendErr.Load(), c.h2gRecv.Load(), c.bad.Load(), c.reorder.Load())
	if runErr == nil {
		runErr = in.failure
	}
	if runErr != nil {
		fail("%v", runErr)
	}
	if st.cycles == 0 {
		fail("no cycle completed")
	}
	in.judgeQuiescent(fail)
	in.judgeSeries(fail)
	if !ok {
		fmt.Printf("  vhostd log (%s), last lines:\n%s\n", in.logPath, indent(in.logTail(15)))
	}
	return ok
}

func (in *inst) judgeQuiescent(fail func(string, ...any)) {
	st := &in.st
	if st.base == nil {
		fail("no quiescent point after the warm-up: no baseline")
		return
	}
	lo, hi := *st.base, *st.base
	for _, s := range st.quiescent {
		lo.fds, hi.fds = min(lo.fds, s.fds), max(hi.fds, s.fds)
		lo.maps, hi.maps = min(lo.maps, s.maps), max(hi.maps, s.maps)
		lo.memfdMaps, hi.memfdMaps = min(lo.memfdMaps, s.memfdMaps), max(hi.memfdMaps, s.memfdMaps)
	}
	fmt.Printf("  quiescent points: %d after the baseline (%v)\n", len(st.quiescent), *st.base)
	fmt.Printf("    fds %d..%d, maps %d..%d, memfd maps %d..%d\n", lo.fds, hi.fds, lo.maps, hi.maps, lo.memfdMaps, hi.memfdMaps)
	for i, v := range st.violations {
		if i == 5 {
			fmt.Printf("  ... %d more\n", len(st.violations)-5)
			break
		}
		fail("not back to the baseline at %s", v)
	}
}

func (in *inst) judgeSeries(fail func(string, ...any)) {
	st := &in.st
	if len(st.series) < 6 {
		fail("only %d samples after the warm-up", len(st.series))
		return
	}
	thr := 0
	for _, s := range st.series {
		thr = max(thr, s.threads)
	}
	drift, slope := rssDrift(st.series)
	first, last := st.series[0], st.series[len(st.series)-1]
	fmt.Printf("  threads: warm-up max %d, after it max %d (goroutines: vhostd exposes no count yet)\n", st.warmThr, thr)
	fmt.Printf("  RSS: %.1f -> %.1f MiB over %d samples; last-third minus first-third median %+.2f MiB; fit %+.2f MiB/h\n",
		float64(first.rssKiB)/1024, float64(last.rssKiB)/1024, len(st.series), drift, slope)
	if thr > st.warmThr+in.cfg.threadSlack {
		fail("threads grew from %d to %d (slack %d)", st.warmThr, thr, in.cfg.threadSlack)
	}
	if drift > in.cfg.rssDriftMiB {
		fail("RSS grew %.2f MiB (bound %.1f)", drift, in.cfg.rssDriftMiB)
	}
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

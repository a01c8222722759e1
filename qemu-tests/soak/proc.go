package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sample is what /proc/PID says about vhostd at one moment.
type sample struct {
	t                    time.Time
	fds, maps, memfdMaps int
	threads              int
	rssKiB               int
	fdKinds              map[string]int // what the fds are, by their /proc/PID/fd link
}

func readSample(pid int) (sample, error) {
	s := sample{t: time.Now()}
	dir := "/proc/" + strconv.Itoa(pid)
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return s, err
	}
	s.fds = len(ents)
	s.fdKinds = map[string]int{}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/fd/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if i := strings.Index(l, ":["); i > 0 { // socket:[N], pipe:[N]
			l = l[:i]
		}
		s.fdKinds[l]++
	}
	maps, err := os.ReadFile(dir + "/maps")
	if err != nil {
		return s, err
	}
	s.maps = bytes.Count(maps, []byte("\n"))
	s.memfdMaps = bytes.Count(maps, []byte("/memfd:"))
	st, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(st))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Threads":
			s.threads, _ = strconv.Atoi(f[0])
		case "VmRSS":
			s.rssKiB, _ = strconv.Atoi(f[0])
		}
	}
	return s, nil
}

// stats is one instance's record, owned by its control goroutine except
// where the sampler and the reporter read it under inst.fmu.
type stats struct {
	cycles     int
	actions    map[string]int
	last       sample   // the latest sample
	series     []sample // every few seconds, after the warm-up
	warmThr    int      // the most threads seen during the warm-up
	base       *sample  // the first quiescent sample after the warm-up
	quiescent  []sample // quiescent samples after the baseline
	violations []string
}

func (s *stats) add(name string) {
	if s.actions == nil {
		s.actions = map[string]int{}
	}
	s.actions[name]++
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	c := append([]float64(nil), xs...)
	sort.Float64s(c)
	return c[len(c)/2]
}

// rssDrift returns the median RSS of the last third minus that of the
// first third, and the least-squares slope, both in MiB (per hour for the
// slope).
func rssDrift(ss []sample) (drift, slopePerHour float64) {
	if len(ss) < 6 {
		return 0, 0
	}
	n := len(ss)
	mib := func(s sample) float64 { return float64(s.rssKiB) / 1024 }
	var first, last []float64
	for i, s := range ss {
		if i < n/3 {
			first = append(first, mib(s))
		} else if i >= n-n/3 {
			last = append(last, mib(s))
		}
	}
	drift = median(last) - median(first)
	var sx, sy, sxx, sxy float64
	t0 := ss[0].t
	for _, s := range ss {
		x, y := s.t.Sub(t0).Hours(), mib(s)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	fn := float64(n)
	if d := fn*sxx - sx*sx; d != 0 {
		slopePerHour = (fn*sxy - sx*sy) / d
	}
	return drift, slopePerHour
}

func (s sample) String() string {
	return fmt.Sprintf("fds %d, maps %d (memfd %d), threads %d, RSS %.1f MiB", s.fds, s.maps, s.memfdMaps, s.threads, float64(s.rssKiB)/1024)
}

// fdDiff says which kinds of fds s has more or fewer of than base.
func fdDiff(s, base sample) string {
	var d []string
	for k, n := range s.fdKinds {
		if n != base.fdKinds[k] {
			d = append(d, fmt.Sprintf("%s %+d", k, n-base.fdKinds[k]))
		}
	}
	for k, n := range base.fdKinds {
		if _, ok := s.fdKinds[k]; !ok {
			d = append(d, fmt.Sprintf("%s %+d", k, -n))
		}
	}
	sort.Strings(d)
	return strings.Join(d, ", ")
}

package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vhostd/vhostd/perf/internal/rawtap"
)

// proc is one process the harness started, pinned with taskset.
type proc struct {
	role   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr tailBuffer
	done   chan struct{}
	err    error
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8192 {
		t.b = append([]byte(nil), t.b[len(t.b)-8192:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// start runs argv pinned to the CPU list cpus (all its threads: taskset
// before exec).
func start(role string, cpus string, argv ...string) (*proc, error) {
	args := append([]string{"-c", cpus}, argv...)
	p := &proc{role: role, cmd: exec.Command("taskset", args...), done: make(chan struct{})}
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig (SIGTERM, or SIGINT for testpmd) and waits, killing the
// process (by its PID) after 8 s.
func (p *proc) stop(sig syscall.Signal) {
	if p == nil || p.exited() {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(8 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// cpuNs is the CPU time of every thread of pid so far
// (/proc/PID/task/*/schedstat, first field, in ns), plus that of the
// threads that already exited (utime+stime of the process in ticks is
// coarser, so only the live threads' ns figure is used; threads of the
// processes measured here live for the whole run). The partner thread of
// a cold raw loop (rawtap.PartnerName) plays the guest: partnerNs counts
// it, cpuNs does not.
func cpuNs(pid int) uint64 { return threadsNs(pid, false) }

// partnerNs is the CPU time of pid's partner threads so far.
func partnerNs(pid int) uint64 { return threadsNs(pid, true) }

func threadsNs(pid int, partner bool) uint64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	var sum uint64
	for _, t := range tasks {
		comm, _ := os.ReadFile(t + "/comm")
		if (strings.TrimSpace(string(comm)) == rawtap.PartnerName) != partner {
			continue
		}
		b, err := os.ReadFile(t + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			v, _ := strconv.ParseUint(f[0], 10, 64)
			sum += v
		}
	}
	return sum
}

// busyNs is the machine's total busy CPU time from /proc/stat, in ns.
func busyNs() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy uint64
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest, guest_nice are inside user already
			break
		}
		busy += v
	}
	return busy * 1e7 // USER_HZ = 100
}

func loadavg() (float64, string) {
	b, _ := os.ReadFile("/proc/loadavg")
	s := strings.TrimSpace(string(b))
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, s
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v, s
}

func tapStat(tap, name string) (uint64, error) {
	b, err := os.ReadFile("/sys/class/net/" + tap + "/statistics/" + name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// waitFor polls cond every 20 ms until it holds, the deadline passes or
// one of procs exits.
func waitFor(what string, d time.Duration, cond func() bool, procs ...*proc) error {
	end := time.Now().Add(d)
	for !cond() {
		for _, p := range procs {
			if p != nil && p.exited() {
				return fmt.Errorf("waiting for %s: %s exited (%v): %s", what, p.role, p.err, lastLines(p.stderr.String(), 6))
			}
		}
		if time.Now().After(end) {
			return errors.New("timed out waiting for " + what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

func sh(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

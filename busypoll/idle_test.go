package busypoll

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time the thread tid of this process has used, read from the
// thread's CPU-time clock (the clockid that pthread_getcpuclockid computes:
// include/linux/posix-timers.h, MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)).
func threadCPU(t *testing.T, tid int) time.Duration {
	t.Helper()
	const cpuclockPerthread, cpuclockSched = 4, 2
	clk := int32(^tid)<<3 | cpuclockPerthread | cpuclockSched
	var ts unix.Timespec
	if err := unix.ClockGettime(clk, &ts); err != nil {
		t.Fatalf("clock_gettime(thread %d): %v", tid, err)
	}
	return time.Duration(ts.Nano())
}

// TestIdleCostsNoCPU measures the CPU time an idle worker's thread uses over 2 s after its
// spin budget: the goal is under 1% of a core; the bound here is 5% to tolerate a noisy
// shared machine. It also checks that the worker did spin during the budget.
func TestIdleCostsNoCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 2 s")
	}
	const spin = 200 * time.Millisecond
	w := start(t, Config{SpinBudget: spin}, newFake(t), newFake(t))
	during0 := threadCPU(t, w.tid)
	waitFor(t, "sleep", func() bool { return w.Stats().Sleeps > 0 })
	spent := threadCPU(t, w.tid) - during0
	time.Sleep(10 * time.Millisecond)

	const window = 2 * time.Second
	s0 := w.Stats()
	c0 := threadCPU(t, w.tid)
	t0 := time.Now()
	time.Sleep(window)
	used := threadCPU(t, w.tid) - c0
	el := time.Since(t0)
	s1 := w.Stats()
	frac := float64(used) / float64(el)
	t.Logf("spin budget %v: %v CPU while spinning; then idle %v: %v CPU (%.4f%% of a core), %d more sleeps, %d more idle rounds",
		spin, spent, el.Round(time.Millisecond), used, 100*frac, s1.Sleeps-s0.Sleeps, s1.IdleRounds-s0.IdleRounds)
	if s0.IdleRounds < 100 || spent == 0 {
		t.Errorf("%d idle rounds and %v CPU during a %v spin budget: the worker did not spin",
			s0.IdleRounds, spent, spin)
	}
	if frac > 0.05 {
		t.Errorf("idle worker used %.2f%% of a core, want < 5%% (goal < 1%%)", 100*frac)
	}
}

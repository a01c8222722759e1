package busypoll

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/internal/testutil"
)

// fakePoller is a queue over an atomic counter: produce adds items, Poll takes them. Its
// wake-up source is an eventfd that the producer writes only while the poller is armed,
// the way a virtqueue's driver kicks only when notifications are enabled. With noFd it
// has no fd, and the producer calls Worker.Wake instead, the way a ring fed by another
// thread would.
type fakePoller struct {
	efd      int
	noFd     bool
	flood    int // if > 0, every Poll also reports this much work of its own
	produced atomic.Uint64
	consumed atomic.Uint64 // written by the worker only
	armed    atomic.Bool
	inPoll   atomic.Bool
	polls    atomic.Int64
	drained  atomic.Int64
	w        *Worker // for Wake, with noFd
}

func newFake(t testing.TB) *fakePoller {
	t.Helper()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatalf("eventfd: %v", err)
	}
	t.Cleanup(func() { unix.Close(efd) })
	return &fakePoller{efd: efd}
}

func (f *fakePoller) Poll(budget int) int {
	f.inPoll.Store(true)
	f.polls.Add(1)
	p, c := f.produced.Load(), f.consumed.Load()
	n := min(p-c, uint64(budget))
	f.consumed.Store(c + n)
	f.inPoll.Store(false)
	return int(n) + f.flood
}

func (f *fakePoller) Arm() bool {
	f.armed.Store(true)
	return f.produced.Load() != f.consumed.Load()
}

func (f *fakePoller) Disarm() {
	f.armed.Store(false)
	var b [8]byte
	if n, _ := unix.Read(f.efd, b[:]); n == 8 {
		f.drained.Add(1)
	}
}

func (f *fakePoller) Fds() []int {
	if f.noFd {
		return nil
	}
	return []int{f.efd}
}

// produce adds n items and wakes the worker if it may be asleep.
func (f *fakePoller) produce(n uint64) {
	f.produced.Add(n)
	if f.noFd {
		f.w.Wake()
		return
	}
	if f.armed.Load() {
		one := [8]byte{1}
		unix.Write(f.efd, one[:])
	}
}

// waitConsumed waits until the poller has consumed at least n items, and fails the test
// if that takes longer than d: a lost wake-up shows up as a timeout, not a hang.
func (f *fakePoller) waitConsumed(t *testing.T, n uint64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for i := 0; f.consumed.Load() < n; i++ {
		if i%64 == 63 {
			if time.Now().After(deadline) {
				var st string
				if f.w != nil {
					st = fmt.Sprintf("; worker sleeping %v, stats %+v", f.w.sleeping.Load(), f.w.Stats())
				}
				var b [8]byte
				cnt, _ := unix.Read(f.efd, b[:])
				t.Fatalf("item %d not consumed after %v (produced %d, consumed %d, armed %v, eventfd had %d bytes %v%s): lost wake-up",
					n, d, f.produced.Load(), f.consumed.Load(), f.armed.Load(), cnt, b, st)
			}
			runtime.Gosched()
		}
	}
}

func start(t *testing.T, cfg Config, ps ...Poller) *Worker {
	t.Helper()
	w, err := Start(cfg, ps...)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(w.Stop)
	return w
}

// waitFor polls cond every 100 µs for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testutil.WaitFor(5*time.Second, 100*time.Microsecond, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func itemsForRace(full int) int {
	if testing.Short() || testutil.Race {
		return full / 10
	}
	return full
}

// TestLostWakeup races a producer against the worker's arm-and-sleep transition: each
// item is produced after a varying delay from the previous one's consumption, so it
// lands before, during or after the worker arms. Every item must be consumed within one
// wake-up; a lost wake-up leaves the worker asleep with pending work and times out.
func TestLostWakeup(t *testing.T) {
	for _, tc := range []struct {
		name string
		spin time.Duration
		noFd bool
	}{
		{"event/eventfd", 0, false},
		{"event/wake", 0, true},
		{"adaptive5us/eventfd", 5 * time.Microsecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.noFd = tc.noFd
			w := start(t, Config{SpinBudget: tc.spin}, f)
			f.w = w
			n := itemsForRace(20000)
			for i := 1; i <= n; i++ {
				// Delays from 0 to ~20 us, so production hits every point of the
				// worker's transition from polling to sleeping.
				for d := 0; d < (i*7919)%4000; d++ {
					runtime.KeepAlive(d)
				}
				f.produce(1)
				f.waitConsumed(t, uint64(i), 2*time.Second)
			}
			s := w.Stats()
			t.Logf("%d items: %+v", n, s)
			if s.Sleeps == 0 {
				t.Fatal("the worker never slept: the race was not exercised")
			}
		})
	}
}

func TestSpinForeverNeverSleeps(t *testing.T) {
	f := newFake(t)
	w := start(t, Config{SpinBudget: SpinForever}, f)
	waitFor(t, "idle rounds", func() bool { return w.Stats().IdleRounds > 1000 })
	f.produce(5)
	f.waitConsumed(t, 5, 2*time.Second)
	if s := w.Stats(); s.Sleeps != 0 || s.ArmPending != 0 {
		t.Fatalf("SpinForever worker armed or slept: %+v", s)
	}
}

func TestAdaptiveSpinsThenSleeps(t *testing.T) {
	f := newFake(t)
	const budget = 20 * time.Millisecond
	t0 := time.Now()
	w := start(t, Config{SpinBudget: budget}, f)
	waitFor(t, "first sleep", func() bool { return w.Stats().Sleeps > 0 })
	if el := time.Since(t0); el < budget {
		t.Fatalf("slept after %v, before the spin budget of %v", el, budget)
	}
	if w.Stats().IdleRounds < 10 {
		t.Fatalf("did not spin before sleeping: %+v", w.Stats())
	}
	f.produce(3)
	f.waitConsumed(t, 3, 2*time.Second)
	if s := w.Stats(); s.Wakeups == 0 {
		t.Fatalf("consumed without a wake-up: %+v", s)
	}
}

// TestFlooderDoesNotStarve runs a poller that always has work next to a normal one:
// the normal one's items must still be consumed promptly.
func TestFlooderDoesNotStarve(t *testing.T) {
	flood := newFake(t)
	flood.flood = 64
	f := newFake(t)
	w := start(t, Config{SpinBudget: 0, Budget: 8}, flood, f)
	for i := 1; i <= 100; i++ {
		f.produce(1)
		f.waitConsumed(t, uint64(i), 2*time.Second)
	}
	if w.Stats().Sleeps != 0 {
		t.Fatal("worker slept with a flooding poller")
	}
}

func TestPauseResume(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spin  time.Duration
		flood int
	}{
		{"sleeping", 0, 0},
		{"spinning", SpinForever, 0},
		{"flooded", 0, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.flood = tc.flood
			w := start(t, Config{SpinBudget: tc.spin}, f)
			if tc.spin == 0 && tc.flood == 0 {
				waitFor(t, "sleep", func() bool { return w.sleeping.Load() })
			}
			t0 := time.Now()
			w.Pause()
			if el := time.Since(t0); el > time.Second {
				t.Fatalf("Pause took %v", el)
			}
			w.Pause() // nested
			if f.inPoll.Load() || f.armed.Load() {
				t.Fatalf("paused inside Poll (%v) or armed (%v)", f.inPoll.Load(), f.armed.Load())
			}
			polls := f.polls.Load()
			f.produce(10)
			time.Sleep(20 * time.Millisecond)
			if f.polls.Load() != polls || f.consumed.Load() != 0 {
				t.Fatal("worker polled while paused")
			}
			w.Resume()
			time.Sleep(5 * time.Millisecond)
			if f.polls.Load() != polls {
				t.Fatal("worker polled after one of two Resumes")
			}
			w.Resume()
			f.waitConsumed(t, 10, 2*time.Second)
			mustPanic(t, func() { w.Resume() })
		})
	}
}

func mustPanic(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	f()
}

// TestPauseStorm pauses and resumes a worker many times while a producer keeps it
// moving between polling and sleeping; every Pause must find it outside Poll.
func TestPauseStorm(t *testing.T) {
	f := newFake(t)
	w := start(t, Config{SpinBudget: 2 * time.Microsecond}, f)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			f.produce(1)
			time.Sleep(10 * time.Microsecond)
		}
	}()
	for i := 0; i < itemsForRace(2000); i++ {
		w.Pause()
		if f.inPoll.Load() {
			t.Fatal("Pause returned while the worker was inside Poll")
		}
		w.Resume()
	}
	close(stop)
	wg.Wait()
	f.waitConsumed(t, f.produced.Load(), 2*time.Second)
}

func TestAddRemove(t *testing.T) {
	a, b := newFake(t), newFake(t)
	w := start(t, Config{}, a)
	waitFor(t, "sleep", func() bool { return w.sleeping.Load() })
	if err := w.Add(b); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if err := w.Add(b); err == nil {
		t.Fatal("adding a poller twice succeeded")
	}
	b.produce(4)
	b.waitConsumed(t, 4, 2*time.Second)
	if err := w.Remove(a); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := w.Remove(a); err == nil {
		t.Fatal("removing a poller twice succeeded")
	}
	polls := a.polls.Load()
	a.produce(1)
	b.produce(1)
	b.waitConsumed(t, 5, 2*time.Second)
	time.Sleep(10 * time.Millisecond)
	if a.polls.Load() != polls || a.consumed.Load() != 0 {
		t.Fatal("removed poller still polled")
	}
	// Its fd is out of the epoll set: adding it again must work.
	if err := w.Add(a); err != nil {
		t.Fatalf("re-Add: %v", err)
	}
	a.produce(1)
	a.waitConsumed(t, 2, 2*time.Second)
	// Changes while paused take effect at Resume.
	w.Pause()
	if err := w.Remove(b); err != nil {
		t.Fatalf("Remove while paused: %v", err)
	}
	w.Resume()
}

func TestStop(t *testing.T) {
	f := newFake(t)
	w, err := Start(Config{}, f)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "sleep", func() bool { return w.sleeping.Load() })
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); w.Stop() }()
	}
	wg.Wait()
	w.Stop()
	if err := w.Add(newFake(t)); !errors.Is(err, ErrStopped) {
		t.Fatalf("Add after Stop: %v", err)
	}
	if err := w.Remove(f); !errors.Is(err, ErrStopped) {
		t.Fatalf("Remove after Stop: %v", err)
	}
	w.Pause() // returns at once
	w.Resume()
	w.Wake()
	_ = w.Stats()

	// Stopping a paused worker.
	w2, err := Start(Config{}, newFake(t))
	if err != nil {
		t.Fatal(err)
	}
	w2.Pause()
	w2.Stop()
}

func TestPinning(t *testing.T) {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatalf("sched_getaffinity: %v", err)
	}
	cpu := -1
	for c := 0; c < 1024 && cpu < 0; c++ {
		if allowed.IsSet(c) {
			cpu = c
		}
	}
	w := start(t, Config{CPUs: []int{cpu}}, newFake(t))
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(w.tid, &set); err != nil {
		t.Fatalf("sched_getaffinity: %v", err)
	}
	if set.Count() != 1 || !set.IsSet(cpu) {
		t.Fatalf("worker thread affinity has %d CPUs, CPU%d %v", set.Count(), cpu, set.IsSet(cpu))
	}
	if _, err := Start(Config{CPUs: []int{1000}}); err == nil {
		t.Fatal("pinning to CPU 1000 succeeded")
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := Start(Config{Budget: -1}); err == nil {
		t.Fatal("negative budget accepted")
	}
	if _, err := Start(Config{SpinBudget: -2}); err == nil {
		t.Fatal("negative spin budget accepted")
	}
	if _, err := Start(Config{}, &badFds{}); err == nil {
		t.Fatal("poller with a bad fd accepted")
	}
}

type badFds struct{ fakePoller }

func (*badFds) Fds() []int { return []int{-1} }

// TestLoopDoesNotAllocate runs the polling round and the arm/epoll/disarm path directly
// under testing.AllocsPerRun.
func TestLoopDoesNotAllocate(t *testing.T) {
	if testutil.Race {
		t.Skip("under the race detector a read(2) returning EAGAIN allocates")
	}
	a, b := newFake(t), newFake(t)
	w := &Worker{budget: DefaultBudget, epfd: -1, efd: -1}
	if err := w.open(); err != nil {
		t.Fatal(err)
	}
	defer w.close()
	for _, p := range []*fakePoller{a, b} {
		if err := w.register(p); err != nil {
			t.Fatal(err)
		}
		w.pollers = append(w.pollers, p)
	}
	if n := testing.AllocsPerRun(1000, func() {
		a.produce(3)
		w.round()
		w.round()
		w.sleep(0)
		w.Wake()
		_ = w.Stats()
	}); n != 0 {
		t.Fatalf("%v allocations per polling round", n)
	}
}

// TestRunningWorkerDoesNotAllocate counts heap allocations across many rounds of a
// running worker, busy and sleeping.
func TestRunningWorkerDoesNotAllocate(t *testing.T) {
	if testutil.Race {
		t.Skip("the race detector's runtime allocates around syscalls and sleeps")
	}
	busy := newFake(t)
	busy.flood = 1
	w := start(t, Config{SpinBudget: SpinForever}, busy)
	f := newFake(t)
	w2 := start(t, Config{}, f)
	waitFor(t, "rounds", func() bool { return w.Stats().Polls > 1000 })
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	p0 := w.Stats().Polls
	s0 := w2.Stats().Sleeps
	for i := 0; i < 200; i++ {
		f.produce(1)
		time.Sleep(time.Millisecond)
	}
	runtime.ReadMemStats(&m1)
	polls := w.Stats().Polls - p0
	sleeps := w2.Stats().Sleeps - s0
	allocs := m1.Mallocs - m0.Mallocs
	t.Logf("%d allocations in the process over %d busy polls and %d sleeps", allocs, polls, sleeps)
	// The test goroutine's own time.Sleep and the runtime account for a few; a polling
	// loop that allocated would show one per round.
	if allocs > 100 || polls < 10000 || sleeps < 50 {
		t.Fatalf("%d allocations over %d polls and %d sleeps", allocs, polls, sleeps)
	}
}

package busypoll

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vhostd/vhostd/internal/rawio"
	"golang.org/x/sys/unix"
)

// Poller is one source of work for a Worker: a virtqueue, a TAP queue, a ring fed by
// another thread. The worker calls its methods only from its own goroutine, never two at
// once, and never between Pause and Resume.
//
// A poller is in one of two states. Polling (the state it is added in): the worker calls
// Poll again and again, and the poller keeps its wake-up source quiet (for a virtqueue,
// VRING_USED_F_NO_NOTIFY or avail_event). Armed: between Arm and Disarm the worker may be
// asleep in epoll, and the poller's wake-up source must make one of its Fds readable when
// work arrives.
type Poller interface {
	// Poll does up to budget units of work (frames, descriptor chains) and returns how
	// many it did. Returning 0 says "idle", which lets the worker start counting idle
	// time. Poll may return more than budget if its unit of work cannot be split, but
	// should not make a habit of it: the budget is what keeps one flooding poller from
	// starving the others.
	Poll(budget int) (work int)

	// Arm enables wake-ups and then checks for work that arrived before they were
	// enabled; it returns true if there is such work, and the worker does not sleep.
	// For a virtqueue: enable notifications, a full fence, re-read the avail index.
	// Arm may be called while other pollers of the worker have already returned true.
	Arm() (pending bool)

	// Disarm returns to polling: suppress notifications again. It is the place to drain
	// the poller's eventfds (read 8 bytes, non-blocking), because the worker never reads
	// a poller's fds: a TAP fd must only be read by its poller's Poll. Disarm follows
	// every Arm, whether or not the worker slept.
	Disarm()

	// Fds returns the fds whose readability means "work for this poller" (kick eventfds,
	// TAP fds). The worker asks once, when the poller is added, and registers them
	// edge-triggered: it wakes when an fd becomes readable, not for as long as it stays
	// readable, so a TAP that holds frames the poller cannot take yet (no guest buffers)
	// does not keep the worker awake. An fd may belong to one poller of a worker only,
	// and must stay open until the poller is removed or the worker stopped.
	Fds() []int
}

// SpinForever as Config.SpinBudget makes a worker that never sleeps: it polls without
// pause, for a core dedicated to one queue pair. It never calls Arm.
const SpinForever time.Duration = -1

// DefaultBudget is the work budget of one Poll call when Config.Budget is 0: 64 frames is
// vhost-net's VHOST_NET_BATCH and enough to amortise a syscall per batch.
const DefaultBudget = 64

// Config is what a worker is started with.
type Config struct {
	// SpinBudget is how long the worker keeps polling after the last round that did
	// work before it arms every poller and sleeps in epoll (vhostd's --busy-poll). 0 is
	// pure event mode: sleep as soon as a round finds nothing. SpinForever never sleeps.
	SpinBudget time.Duration

	// Budget is the most work units one Poll call may do; 0 means DefaultBudget.
	Budget int

	// CPUs, if not empty, pins the worker's OS thread to these CPUs.
	CPUs []int
}

// Worker runs a set of pollers on one locked OS thread: it polls them in rounds, and when
// it has been idle for the spin budget it arms them and sleeps in epoll until one of
// their fds, or its own eventfd, becomes readable.
//
// Its control methods (Pause, Resume, Add, Remove, Stop) are for the control plane: they
// may block until the worker reaches a safe point, so they must not be called from a
// Poller method, where the worker would wait for itself. Wake and Stats never block.
type Worker struct {
	stats counters // written only by the worker goroutine; on its own cache lines

	// Read-only after Start.
	spin   time.Duration
	budget int
	epfd   int
	efd    int // internal eventfd: control requests and Wake
	done   chan struct{}

	// Owned by the worker goroutine.
	pollers []Poller
	events  [16]unix.EpollEvent
	tid     int

	// sleeping is set by the worker before it arms its pollers and cleared after it
	// disarms them; Wake loads it after publishing work. Both sides use sequentially
	// consistent atomics, so either Wake sees true or the worker's Arm sees the work.
	sleeping atomic.Bool

	// closing and wakers let Wake write the eventfd without racing its close.
	closing atomic.Bool
	wakers  atomic.Int32

	// req counts control messages sent or about to be sent on ctl; the worker loads it
	// once per round and takes messages while it is non-zero.
	req atomic.Int32
	ctl chan ctlMsg

	// mu serialises the control methods; it guards the fields below.
	mu      sync.Mutex
	paused  int // Pause depth
	stopped bool
}

// Start opens the worker's epoll instance and eventfd, registers the pollers' fds and
// starts the worker goroutine, which locks itself to an OS thread (pinned to cfg.CPUs if
// set). It returns once the goroutine is running, or an error if any of that failed.
func Start(cfg Config, pollers ...Poller) (*Worker, error) {
	if cfg.Budget < 0 || cfg.SpinBudget < SpinForever {
		return nil, errors.New("busypoll: negative budget")
	}
	w := &Worker{
		spin:   cfg.SpinBudget,
		budget: cfg.Budget,
		epfd:   -1,
		efd:    -1,
		done:   make(chan struct{}),
		ctl:    make(chan ctlMsg),
	}
	if w.budget == 0 {
		w.budget = DefaultBudget
	}
	if err := w.open(); err != nil {
		w.close()
		return nil, err
	}
	for _, p := range pollers {
		if err := w.register(p); err != nil {
			w.close()
			return nil, err
		}
		w.pollers = append(w.pollers, p)
	}
	started := make(chan error, 1)
	go w.run(cfg.CPUs, started)
	if err := <-started; err != nil {
		<-w.done
		return nil, err
	}
	return w, nil
}

func (w *Worker) open() error {
	var err error
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("busypoll: epoll_create1: %w", err)
	}
	if w.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("busypoll: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(w.efd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.efd, &ev); err != nil {
		return fmt.Errorf("busypoll: epoll_ctl add eventfd: %w", err)
	}
	return nil
}

// close releases the worker's fds; the pollers' fds are theirs.
func (w *Worker) close() {
	if w.epfd >= 0 {
		unix.Close(w.epfd)
		w.epfd = -1
	}
	if w.efd >= 0 {
		unix.Close(w.efd)
		w.efd = -1
	}
}

// register adds p's fds to the epoll set, edge-triggered. On error none of them stay.
func (w *Worker) register(p Poller) error {
	fds := p.Fds()
	for i, fd := range fds {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(fd)}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			for _, fd := range fds[:i] {
				unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			}
			return fmt.Errorf("busypoll: register fd %d: %w", fd, err)
		}
	}
	return nil
}

func (w *Worker) unregister(p Poller) {
	for _, fd := range p.Fds() {
		unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
}

// Wake makes a sleeping worker run at least one more polling round. It is for work that
// arrives without an fd, such as a ring filled by another thread: publish the work, then
// call Wake. It costs one atomic load when the worker is not asleep, and never blocks.
// Safe from any goroutine. Pollers whose work arrives on their fds need not call it.
func (w *Worker) Wake() {
	if w.sleeping.Load() {
		// wakers keeps the eventfd open while we write it: the worker sets closing
		// and then waits for wakers to drop to zero before closing it.
		w.wakers.Add(1)
		if !w.closing.Load() {
			w.kick()
		}
		w.wakers.Add(-1)
	}
}

// kick signals the internal eventfd (EFD_NONBLOCK, as rawio.Signal needs). An error can
// only mean the counter is saturated, which already wakes the worker, or that the worker
// has stopped.
func (w *Worker) kick() {
	rawio.Signal(w.efd)
}

func (w *Worker) run(cpus []int, started chan<- error) {
	defer close(w.done)
	defer func() {
		w.closing.Store(true)
		for w.wakers.Load() != 0 {
			runtime.Gosched()
		}
		w.close()
	}()
	// Never unlocked: when the goroutine exits its thread goes with it, affinity and all.
	runtime.LockOSThread()
	w.tid = unix.Gettid()
	if len(cpus) > 0 {
		var set unix.CPUSet
		for _, c := range cpus {
			set.Set(c)
		}
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			started <- fmt.Errorf("busypoll: pin to CPUs %v: %w", cpus, err)
			return
		}
	}
	started <- nil
	w.loop()
}

// clockEvery is how many idle rounds pass between two reads of the clock while an
// adaptive worker spins (a power of two). The clock read was most of an idle round:
// BenchmarkSpinLevers idle rounds 88 ns reading it every round, 21 ns every 8th (loaded
// AMD EPYC, 6 interleaved runs, p=0.002; perf/FINDINGS.md suggestion 3). The spin budget
// then starts up to 7 rounds late: nanoseconds against microseconds. A variable so that
// the benchmark can compare settings in one binary; read when a worker starts.
var clockEvery = 8

// loop is the worker's life after start-up: rounds, and sleeps once idle for the spin
// budget, until a control request stops it.
func (w *Worker) loop() {
	var idleSince time.Time // zero while the last round did work
	clockMask := uint(clockEvery - 1)
	var idle uint // idle rounds in a row
	for {
		if w.req.Load() != 0 && w.control() {
			return
		}
		if w.round() > 0 {
			idleSince, idle = time.Time{}, 0
			continue
		}
		switch {
		case w.spin < 0: // SpinForever
			continue
		case w.spin > 0:
			if idle++; idle&clockMask != 0 {
				continue
			}
			now := time.Now()
			if idleSince.IsZero() {
				idleSince = now
				continue
			}
			if now.Sub(idleSince) < w.spin {
				continue
			}
		}
		w.sleep(-1)
		idleSince, idle = time.Time{}, 0
	}
}

// round polls every poller once and returns the work done.
func (w *Worker) round() int {
	work := 0
	for _, p := range w.pollers {
		work += p.Poll(w.budget)
	}
	s := &w.stats
	s.polls.Store(s.polls.Load() + uint64(len(w.pollers)))
	if work > 0 {
		s.work.Store(s.work.Load() + uint64(work))
	} else {
		s.idle.Store(s.idle.Load() + 1)
	}
	return work
}

// sleep arms every poller and, unless one has work pending or a control request is
// waiting, waits in epoll for up to msec milliseconds (-1: until woken). Then it disarms
// them all, whatever happened.
func (w *Worker) sleep(msec int) {
	s := &w.stats
	w.sleeping.Store(true)
	pending := false
	for _, p := range w.pollers {
		if p.Arm() {
			pending = true
		}
	}
	// The request counter is checked after sleeping is set: a control method that
	// incremented it before then is seen here; one that increments it later also
	// writes the eventfd, which epoll_wait then returns for.
	if pending || w.req.Load() != 0 {
		s.armPending.Store(s.armPending.Load() + 1)
	} else {
		s.sleeps.Store(s.sleeps.Load() + 1)
		n, err := unix.EpollWait(w.epfd, w.events[:], msec)
		if err != nil {
			n = 0 // EINTR: poll again; anything else would repeat, and polling is safe
		}
		woke, ctl := false, false
		for _, ev := range w.events[:n] {
			if int(ev.Fd) == w.efd {
				ctl = true
			} else {
				woke = true
			}
		}
		if ctl {
			rawio.Drain(w.efd) // EAGAIN if a racing read got it
			s.ctlWakes.Store(s.ctlWakes.Load() + 1)
		}
		if woke {
			s.wakeups.Store(s.wakeups.Load() + 1)
		}
	}
	w.sleeping.Store(false)
	for _, p := range w.pollers {
		p.Disarm()
	}
}

package netdev

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// runner is what a pair needs from its worker.
type runner interface {
	Pause()  // returns once the worker is at a safe point, outside Poll
	Resume() // lets it run again, re-reading the pair's fds
	Wake()   // makes a sleeping worker poll at once
	Stop()   // ends it; idempotent
}

// epollRunner is a minimal worker: poll while there is work, spin for the
// busy-poll budget, then arm and sleep in epoll.
type epollRunner struct {
	p        *pair
	spin     time.Duration
	cpu      int
	ep       int
	wake     int // eventfd: Pause, Wake and Stop interrupt epoll_wait with it
	mu       sync.Mutex
	cond     *sync.Cond
	pauseRq  atomic.Int32 // pending Pause calls; read without the lock on every loop
	paused   bool
	stopped  bool
	stopping atomic.Bool
	done     chan struct{}
	fds      []int
}

func newRunner(p *pair) (runner, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, err
	}
	cpu := -1
	if cpus := p.dev.cfg.CPUs; len(cpus) > 0 {
		cpu = cpus[p.index%len(cpus)]
	}
	r := &epollRunner{p: p, spin: p.dev.cfg.BusyPoll, cpu: cpu, ep: ep, wake: wake, done: make(chan struct{})}
	r.cond = sync.NewCond(&r.mu)
	r.register()
	go r.run()
	return r, nil
}

// register syncs the epoll set with the pair's fds. Called at safe points.
func (r *epollRunner) register() {
	for _, fd := range r.fds {
		unix.EpollCtl(r.ep, unix.EPOLL_CTL_DEL, fd, nil)
	}
	r.fds = r.fds[:0]
	level, edge := r.p.Fds()
	for _, fd := range level {
		if unix.EpollCtl(r.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}) == nil {
			r.fds = append(r.fds, fd)
		}
	}
	for _, fd := range edge {
		if unix.EpollCtl(r.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(fd)}) == nil {
			r.fds = append(r.fds, fd)
		}
	}
}

func (r *epollRunner) Pause() {
	r.mu.Lock()
	r.pauseRq.Add(1)
	signal(r.wake)
	for !r.paused && !r.stopped {
		r.cond.Wait()
	}
	r.mu.Unlock()
}

func (r *epollRunner) Resume() {
	r.mu.Lock()
	if r.pauseRq.Add(-1) == 0 {
		r.register()
	}
	r.cond.Broadcast()
	r.mu.Unlock()
}

func (r *epollRunner) Wake() { signal(r.wake) }

func (r *epollRunner) Stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		<-r.done
		return
	}
	r.stopped = true
	r.stopping.Store(true)
	r.cond.Broadcast()
	signal(r.wake)
	r.mu.Unlock()
	<-r.done
	unix.Close(r.ep)
	unix.Close(r.wake)
}

// safePoint parks the worker while the control plane holds it; it reports
// whether the worker must end.
func (r *epollRunner) safePoint() (stop bool) {
	if r.pauseRq.Load() == 0 && !r.stopping.Load() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.pauseRq.Load() > 0 && !r.stopped {
		r.paused = true
		r.cond.Broadcast()
		r.cond.Wait()
	}
	r.paused = false
	return r.stopped
}

func (r *epollRunner) run() {
	defer close(r.done)
	runtime.LockOSThread()
	if r.cpu >= 0 {
		var set unix.CPUSet
		set.Set(r.cpu)
		unix.SchedSetaffinity(0, &set)
	}
	events := make([]unix.EpollEvent, 16)
	idleSince := time.Now()
	for {
		if r.safePoint() {
			return
		}
		if r.p.Poll(budget) > 0 {
			idleSince = time.Time{}
			continue
		}
		if r.spin < 0 {
			continue
		}
		if r.spin > 0 {
			if idleSince.IsZero() {
				idleSince = time.Now()
			}
			if time.Since(idleSince) < r.spin {
				continue
			}
		}
		if r.p.Arm() {
			r.p.Disarm()
			continue
		}
		unix.EpollWait(r.ep, events, -1)
		drain(r.wake)
		r.p.Disarm()
		idleSince = time.Time{}
	}
}

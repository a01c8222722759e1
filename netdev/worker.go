package netdev

import (
	"fmt"
	"time"

	"github.com/vhostd/vhostd/busypoll"
)

// runner is what a pair needs from its worker(s).
type runner interface {
	Pause()  // returns once the workers are at a safe point, outside every poller call
	Resume() // lets them run again; the pair's fds are registered anew
	Wake()   // makes sleeping workers poll at once
	Stop()   // ends them; idempotent
}

// Threads says how a queue pair's work is spread over OS threads.
type Threads uint8

const (
	// Inline runs the ring side and the TAP side of a pair on one worker
	// thread, one after the other in each poll.
	Inline Threads = iota
	// Split runs the ring side (virtqueues) and the TAP side (syscalls) on
	// two workers, handing frames over through the pair's ptrrings.
	Split
)

func (t Threads) String() string {
	if t == Split {
		return "split"
	}
	return "inline"
}

// workerConfig is the busypoll configuration of a pair's worker number n
// (0, or 0 and 1 when split), pinned to the n-th CPU of its share.
func workerConfig(p *pair, n int) busypoll.Config {
	cfg := busypoll.Config{SpinBudget: p.dev.cfg.BusyPoll, Budget: budget}
	if cfg.SpinBudget < 0 {
		cfg.SpinBudget = busypoll.SpinForever
	}
	if cpus := p.dev.cfg.CPUs; len(cpus) > 0 {
		per := 1
		if p.dev.cfg.Threads == Split {
			per = 2
		}
		cfg.CPUs = []int{cpus[(p.index*per+n)%len(cpus)]}
	}
	return cfg
}

// pairWorkers runs a pair on one busypoll worker (the pair is the poller)
// or two (a ringPoller and a tapPoller). The pair's fds change when rings
// start and stop, and busypoll reads a poller's fds when it is added, so
// every paused section takes the pollers out and puts them back.
type pairWorkers struct {
	p       *pair
	ws      []*busypoll.Worker
	pollers []busypoll.Poller
}

func newRunner(p *pair) (runner, error) {
	r := &pairWorkers{p: p}
	if p.dev.cfg.Threads == Split {
		r.pollers = []busypoll.Poller{&ringPoller{p: p, peer: r}, &tapPoller{p: p, peer: r}}
	} else {
		r.pollers = []busypoll.Poller{p}
	}
	for i, pl := range r.pollers {
		w, err := busypoll.Start(workerConfig(p, i), pl)
		if err != nil {
			r.Stop()
			return nil, fmt.Errorf("queue pair %d worker: %w", p.index, err)
		}
		r.ws = append(r.ws, w)
	}
	return r, nil
}

func (r *pairWorkers) Pause() {
	for i, w := range r.ws {
		r.unstuck(w.Pause)
		w.Remove(r.pollers[i])
	}
}

func (r *pairWorkers) Resume() {
	for i, w := range r.ws {
		// pair.start checked that epoll takes every fd it adds
		// (checkPollable): this fails only if the kernel runs short.
		if err := w.Add(r.pollers[i]); err != nil {
			r.p.dev.log.Error("queue pair worker lost its poller", "pair", r.p.index, "error", err)
		}
		w.Resume()
	}
}

func (r *pairWorkers) Wake() {
	for _, w := range r.ws {
		w.Wake()
	}
}

func (r *pairWorkers) Stop() {
	for _, w := range r.ws {
		r.unstuck(w.Stop)
	}
}

// unstickEvery is how often unstuck frees a worker held by a front-end.
const unstickEvery = 50 * time.Millisecond

// unstuck runs wait, a worker control call that returns once the worker
// reached a safe point. A worker blocked in a call signal never gets there
// by itself: rawio.SignalShared writes only when poll(2) said it could,
// but a front-end that saturates its counter (and clears O_NONBLOCK) in
// between holds the write until it reads (BAD-INPUTS 62). While wait
// waits, the pair's saturated call and error eventfds are drained every
// unstickEvery, which lets such a write through.
func (r *pairWorkers) unstuck(wait func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tickUntil(unstickEvery, stop, r.p.unblockSignals)
	}()
	wait()
	close(stop)
	<-done // the control plane changes the specs next
}

// ringPoller is the ring side of a split pair: it pops chains and returns
// finished ones, and wakes the TAP side when it handed it work.
type ringPoller struct {
	p    *pair
	peer *pairWorkers
}

func (r *ringPoller) Poll(max int) (n int) {
	armFaults()
	defer r.p.catchFault()
	if r.p.faulted.Load() {
		r.p.breakFaulted()
		return 0
	}
	n = r.p.ringPop(max)
	if n > 0 || r.p.rx.broken.Load() {
		r.peer.ws[1].Wake() // chains to fill, or a broken ring's to hand back
	}
	return n + r.p.ringComplete()
}

func (r *ringPoller) Arm() bool  { return r.p.ringArm() }
func (r *ringPoller) Disarm()    { r.p.Disarm() }
func (r *ringPoller) Fds() []int { return r.p.kickFds() }

// tapPoller is the TAP side of a split pair: the syscalls. It wakes the
// ring side when frames are done.
type tapPoller struct {
	p    *pair
	peer *pairWorkers
}

func (t *tapPoller) Poll(max int) (n int) {
	armFaults()
	defer t.catchFault()
	if t.p.faulted.Load() {
		return 0
	}
	if max > budget {
		max = budget
	}
	n = t.p.tapStep(max)
	t.p.ct.publish()
	if n > 0 || t.p.faulted.Load() {
		t.peer.ws[0].Wake()
	}
	return n
}

// catchFault is the pair's, and wakes the ring side, which breaks the
// rings of a faulted pair.
func (t *tapPoller) catchFault() {
	if v := recover(); v != nil {
		t.p.guestFault(v)
		t.peer.ws[0].Wake()
	}
}

func (t *tapPoller) Arm() bool  { return t.p.tapArm() }
func (t *tapPoller) Disarm()    {}
func (t *tapPoller) Fds() []int { return t.p.tapFds() }

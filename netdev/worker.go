package netdev

import (
	"fmt"
	"time"

	"github.com/vhostd/vhostd/busypoll"
)

// runner is what a pair needs from its worker.
type runner interface {
	Pause()  // returns once the worker is at a safe point, outside every poller call
	Resume() // lets it run again; the pair's fds are registered anew
	Wake()   // makes a sleeping worker poll at once
	Stop()   // ends it; idempotent
}

// workerConfig is the busypoll configuration of a pair's worker, pinned to
// the pair's CPU of its share.
func workerConfig(p *pair) busypoll.Config {
	cfg := busypoll.Config{SpinBudget: p.dev.cfg.BusyPoll, Budget: budget}
	if cfg.SpinBudget < 0 {
		cfg.SpinBudget = busypoll.SpinForever
	}
	if cpus := p.dev.cfg.CPUs; len(cpus) > 0 {
		cfg.CPUs = []int{cpus[p.index%len(cpus)]}
	}
	return cfg
}

// pairWorker runs a pair on one busypoll worker; the pair is the poller.
// The pair's fds change when rings start and stop, and busypoll reads a
// poller's fds when it is added, so every paused section takes the pair
// out and puts it back.
type pairWorker struct {
	p *pair
	w *busypoll.Worker
}

func newRunner(p *pair) (runner, error) {
	w, err := busypoll.Start(workerConfig(p), p)
	if err != nil {
		return nil, fmt.Errorf("queue pair %d worker: %w", p.index, err)
	}
	return &pairWorker{p: p, w: w}, nil
}

func (r *pairWorker) Pause() {
	r.unstuck(r.w.Pause)
	r.w.Remove(r.p)
}

func (r *pairWorker) Resume() {
	// pair.start checked that epoll takes every fd it adds
	// (checkPollable): this fails only if the kernel runs short.
	if err := r.w.Add(r.p); err != nil {
		r.p.dev.log.Error("queue pair worker lost its poller", "pair", r.p.index, "error", err)
	}
	r.w.Resume()
}

func (r *pairWorker) Wake() { r.w.Wake() }

func (r *pairWorker) Stop() { r.unstuck(r.w.Stop) }

// unstickEvery is how often unstuck frees a worker held by a front-end.
const unstickEvery = 50 * time.Millisecond

// unstuck runs wait, a worker control call that returns once the worker
// reached a safe point. A worker blocked in a call signal never gets there
// by itself: rawio.SignalShared writes only when poll(2) said it could,
// but a front-end that saturates its counter (and clears O_NONBLOCK) in
// between holds the write until it reads (BAD-INPUTS 62). While wait
// waits, the pair's saturated call and error eventfds are drained every
// unstickEvery, which lets such a write through.
func (r *pairWorker) unstuck(wait func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tickUntil(unstickEvery, stop, r.p.unblockSignals)
	}()
	wait()
	close(stop)
	<-done // the control plane changes the specs next
}

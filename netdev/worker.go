package netdev

import (
	"fmt"

	"github.com/vhostd/vhostd/busypoll"
)

// runner is what a pair needs from its worker: a busypoll.Worker running
// the pair as its one poller.
type runner interface {
	Pause()  // returns once the worker is at a safe point, outside every poller call
	Resume() // lets it run again; the pair's fds are registered anew
	Wake()   // makes a sleeping worker poll at once
	Stop()   // ends it; idempotent
}

// pairWorker runs one pair on a busypoll.Worker. The pair's fds change when
// rings start and stop, and busypoll reads a poller's fds when it is added,
// so every paused section takes the pair out and puts it back.
type pairWorker struct {
	w *busypoll.Worker
	p *pair
}

func newRunner(p *pair) (runner, error) {
	cfg := busypoll.Config{SpinBudget: p.dev.cfg.BusyPoll, Budget: budget}
	if cfg.SpinBudget < 0 {
		cfg.SpinBudget = busypoll.SpinForever
	}
	if cpus := p.dev.cfg.CPUs; len(cpus) > 0 {
		cfg.CPUs = []int{cpus[p.index%len(cpus)]}
	}
	w, err := busypoll.Start(cfg, p)
	if err != nil {
		return nil, fmt.Errorf("queue pair %d worker: %w", p.index, err)
	}
	return &pairWorker{w: w, p: p}, nil
}

func (r *pairWorker) Pause() {
	r.w.Pause()
	r.w.Remove(r.p)
}

func (r *pairWorker) Resume() {
	if err := r.w.Add(r.p); err != nil {
		r.p.dev.log.Error("queue pair worker lost its poller", "pair", r.p.index, "error", err)
	}
	r.w.Resume()
}

func (r *pairWorker) Wake() { r.w.Wake() }
func (r *pairWorker) Stop() { r.w.Stop() }

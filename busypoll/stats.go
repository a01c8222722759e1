package busypoll

import "sync/atomic"

// Stats is a snapshot of a worker's counters, all counting from Start.
type Stats struct {
	Polls      uint64 // Poll calls
	Work       uint64 // work units the Poll calls reported, summed
	IdleRounds uint64 // rounds in which no poller did any work (idle spins)
	Sleeps     uint64 // times the worker blocked in epoll_wait
	ArmPending uint64 // times Arm found work (or a control request waited) and it did not sleep
	Wakeups    uint64 // epoll_wait returns with a poller fd readable
	CtlWakes   uint64 // epoll_wait returns for the worker's own eventfd (Wake, control)
}

// counters are the worker's statistics. Only the worker goroutine writes them (a load and
// a store, no read-modify-write instruction); Stats reads them from any goroutine. They sit
// between pads so that writing them never shares a cache line with the control fields that
// other goroutines touch.
type counters struct {
	_          [128]byte
	polls      atomic.Uint64
	work       atomic.Uint64
	idle       atomic.Uint64
	sleeps     atomic.Uint64
	armPending atomic.Uint64
	wakeups    atomic.Uint64
	ctlWakes   atomic.Uint64
	_          [128 - 7*8]byte
	_          [128]byte
}

// Stats returns the worker's counters. Safe from any goroutine, also while the worker runs
// and after Stop; the counters are read one by one, so they need not agree with each other
// to the last unit.
func (w *Worker) Stats() Stats {
	s := &w.stats
	return Stats{
		Polls:      s.polls.Load(),
		Work:       s.work.Load(),
		IdleRounds: s.idle.Load(),
		Sleeps:     s.sleeps.Load(),
		ArmPending: s.armPending.Load(),
		Wakeups:    s.wakeups.Load(),
		CtlWakes:   s.ctlWakes.Load(),
	}
}

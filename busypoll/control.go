package busypoll

import (
	"errors"
	"fmt"
)

// ErrStopped is returned by Add and Remove after Stop: the worker has released its epoll
// instance, so the caller should start a new worker.
var ErrStopped = errors.New("busypoll: worker stopped")

type ctlOp int

const (
	opPause ctlOp = iota
	opResume
	opAdd
	opRemove
	opStop
)

// ctlMsg is one control request; the worker answers on reply once it has acted on it.
type ctlMsg struct {
	op    ctlOp
	p     Poller
	reply chan error
}

// Pause returns once the worker is at a safe point: inside no Poll, Arm or Disarm call,
// and calling none until the matching Resume. A sleeping worker is woken for it. Pauses
// nest: the worker runs again after as many Resume calls as there were Pause calls. While
// paused the pollers are in the polling state (their wake-ups suppressed). Pause on a
// stopped worker returns at once. It must not be called from a Poller method: the
// worker would wait for itself.
func (w *Worker) Pause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paused++
	if w.paused == 1 && !w.stopped {
		w.send(opPause, nil)
	}
}

// Resume undoes one Pause. It panics if the worker is not paused.
func (w *Worker) Resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.paused == 0 {
		panic("busypoll: Resume without Pause")
	}
	w.paused--
	if w.paused == 0 && !w.stopped {
		w.send(opResume, nil)
	}
}

// Add registers p's fds and adds it to the pollers, at a safe point; p starts in the
// polling state and is polled from the next round. It returns once that is done.
func (w *Worker) Add(p Poller) error {
	return w.request(opAdd, p)
}

// Remove takes p out of the pollers and its fds out of the epoll set, at a safe point,
// and returns once the worker will call none of p's methods again. p is left in the
// polling state. Pollers are compared with ==.
func (w *Worker) Remove(p Poller) error {
	return w.request(opRemove, p)
}

// request sends op for p unless the worker has stopped (ErrStopped).
func (w *Worker) request(op ctlOp, p Poller) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return ErrStopped
	}
	return w.send(op, p)
}

// Stop ends the worker at a safe point and waits for its goroutine to exit, which closes
// the worker's own fds (not the pollers'). Calling it again, or from several goroutines,
// is safe and returns after the worker has exited. A paused worker can be stopped.
func (w *Worker) Stop() {
	w.mu.Lock()
	if !w.stopped {
		w.stopped = true
		w.send(opStop, nil)
	}
	w.mu.Unlock()
	<-w.done
}

// send hands one request to the worker and waits for its answer.
// Preconditions: w.mu is held and the worker has not stopped.
func (w *Worker) send(op ctlOp, p Poller) error {
	w.req.Add(1)
	// Pairs with the worker's store of sleeping and its load of req in sleep: either the
	// worker sees req before it waits, or this sees it asleep and wakes it.
	if w.sleeping.Load() {
		w.kick()
	}
	m := ctlMsg{op: op, p: p, reply: make(chan error, 1)}
	w.ctl <- m
	return <-m.reply
}

// control takes control requests until none is left and the worker is not paused. It
// reports whether the worker must exit. Worker goroutine only; pollers are disarmed.
func (w *Worker) control() (stop bool) {
	paused := false
	for paused || w.req.Load() != 0 {
		m := <-w.ctl
		w.req.Add(-1)
		var err error
		switch m.op {
		case opPause:
			paused = true
		case opResume:
			paused = false
		case opAdd:
			err = w.add(m.p)
		case opRemove:
			err = w.remove(m.p)
		case opStop:
			m.reply <- nil
			return true
		}
		m.reply <- err
	}
	return false
}

func (w *Worker) add(p Poller) error {
	if p == nil {
		return errors.New("busypoll: add nil poller")
	}
	for _, q := range w.pollers {
		if q == p {
			return errors.New("busypoll: poller added twice")
		}
	}
	if err := w.register(p); err != nil {
		return err
	}
	w.pollers = append(w.pollers, p)
	return nil
}

func (w *Worker) remove(p Poller) error {
	for i, q := range w.pollers {
		if q == p {
			w.unregister(p)
			w.pollers = append(w.pollers[:i], w.pollers[i+1:]...)
			w.pollers[len(w.pollers):cap(w.pollers)][0] = nil // drop the stale reference
			return nil
		}
	}
	return fmt.Errorf("busypoll: remove: poller %v not found", p)
}

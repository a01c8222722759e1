package netdev

import (
	"errors"
	"fmt"
	"time"

	"github.com/vhostd/vhostd/tap"
	"golang.org/x/sys/unix"
)

// Reattaching the host interface (BAD-INPUTS 51). Once every queue of the
// TAP or macvtap is retired, the interface is gone. The host watch then
// tries, at its probes, to open an interface of the same name (attach
// only: vhostd never recreates a TAP someone deleted), backing off from one
// probe interval to maxReattachBackoff between failures. An interface that
// opens is configured as the first one was (MTU, up, the guest's offloads),
// the reattach hook runs (cmd: XDP on the new ifindex), and only then do
// the pairs take its queues: no frame moves before the hook has run. A hook
// that fails leaves the new interface closed and the next attempt to the
// backoff.

// maxReattachBackoff is the longest wait between two attempts.
const maxReattachBackoff = 30 * time.Second

// reattachState is the Device's part in reattaching; d.mu guards it.
type reattachState struct {
	// reopen opens the interface again, attaching only; nil: never reattach.
	reopen func() (hostIf, error)
	// hook runs on the new interface before any queue takes traffic.
	hook    func(ifindex int) error
	next    time.Time     // no attempt before this
	backoff time.Duration // the last wait; doubled after each failure
	failed  string        // the last failure logged, to log each kind once
}

// reopener returns the reopen function for cfg's interface.
func reopener(cfg Config) func() (hostIf, error) {
	tc := tap.Config{Name: cfg.TAP, Queues: cfg.QueuePairs, MustExist: true}
	if cfg.TAP != "" {
		return func() (hostIf, error) { return tap.OpenTAP(tc) }
	}
	tc.Name = cfg.Macvtap
	return func() (hostIf, error) { return tap.OpenMacvtap(tc) }
}

// OnReattach sets the function that runs when the host interface came back
// and was reopened, with its (new) ifindex, before any frame moves through
// it; an error leaves the interface unused and is retried later.
func (d *Device) OnReattach(hook func(ifindex int) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.re.hook = hook
}

// hostGone reports whether every queue is retired. d.mu held.
func (d *Device) hostGone() bool {
	for _, p := range d.pairs {
		if !p.tapRetired {
			return false
		}
	}
	return len(d.pairs) > 0
}

// tryReattach makes one attempt if the interface is gone and the backoff
// allows. d.mu held (the host watch).
func (d *Device) tryReattach(now time.Time) {
	if d.re.reopen == nil || !d.hostGone() || now.Before(d.re.next) {
		return
	}
	nt, err := d.re.reopen()
	if err == nil {
		if err = d.adopt(nt); err != nil {
			nt.Close()
		}
	}
	if err != nil {
		d.re.backoff = min(max(2*d.re.backoff, d.probeEvery), maxReattachBackoff)
		d.re.next = now.Add(d.re.backoff)
		// Absence is the expected state until an operator brings the
		// interface back; anything else (it exists but will not open or
		// configure) is worth a warning, once per distinct error.
		if errors.Is(err, tap.ErrNoInterface) || errors.Is(err, unix.ENODEV) {
			d.log.Debug("host interface still absent", "interface", d.tap.Name(), "retry_in", d.re.backoff)
		} else if msg := err.Error(); msg != d.re.failed {
			d.re.failed = msg
			d.log.Warn("host interface back but not usable yet", "interface", d.tap.Name(), "error", err, "retry_in", d.re.backoff)
		}
		return
	}
	old := d.tap
	d.tap = nt
	for i, p := range d.pairs {
		p.reviveTAP(nt.Queue(i))
	}
	old.Close()
	d.re.backoff, d.re.next, d.re.failed = 0, time.Time{}, ""
	d.log.Info("host interface back: queues reattached", "interface", nt.Name(), "ifindex", nt.Ifindex(), "queues", len(d.pairs))
}

// adopt configures a reopened interface as the first one was and runs the
// hook. d.mu held.
func (d *Device) adopt(nt hostIf) error {
	if nt.NumQueues() < len(d.pairs) {
		return fmt.Errorf("%s has %d queues, %d queue pairs in use", nt.Name(), nt.NumQueues(), len(d.pairs))
	}
	if m, err := nt.MTU(); d.mtu != 0 && (err != nil || m != int(d.mtu)) {
		if err := nt.SetMTU(int(d.mtu)); err != nil {
			return fmt.Errorf("set mtu %d: %w", d.mtu, err)
		}
	}
	if err := nt.SetUp(true); err != nil {
		return fmt.Errorf("bring up: %w", err)
	}
	if err := useTAPWrite(nt, len(d.pairs), d.cfg.TAPWrite); err != nil {
		return err
	}
	if d.offload != 0 {
		if _, err := nt.SetOffload(d.offload); err != nil {
			return fmt.Errorf("offloads %v: %w", d.offload, err)
		}
	}
	if d.re.hook != nil {
		if err := d.re.hook(nt.Ifindex()); err != nil {
			return fmt.Errorf("reattach hook: %w", err)
		}
	}
	return nil
}

// reviveTAP undoes retireTAP with the reopened interface's queue q: the
// workers, paused, take q and put its fd back in their epoll sets.
// Control plane, d.mu held.
func (p *pair) reviveTAP(q *tap.Queue) {
	p.paused(func() {
		p.tq = q
		p.tapRetired = false
		p.tapGone.Store(false)
	})
}

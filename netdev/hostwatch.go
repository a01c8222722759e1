package netdev

import (
	"time"

	"github.com/vhostd/vhostd/tap"
	"golang.org/x/sys/unix"
)

// probeInterval is how often the device asks each TAP queue whether it is
// still attached to its interface (BAD-INPUTS 51). A deleted macvtap
// swallows writes and never turns readable, so nothing on the data path
// notices; until the next probe its TX frames are counted tx_packets
// although they go nowhere. One ioctl per queue per second costs nothing
// measurable and keeps the delay short enough for an operator.
const probeInterval = time.Second

// The host watch is one goroutine per Device, on the control side: it
// wakes every probeInterval, takes the device lock like any control call,
// and probes every queue not yet known to be gone. The workers never
// probe: the data path gains no syscall, lock or timer check, and the
// watch works the same whether they sleep in epoll or busy-poll. It
// starts with the first ring and ends with Close.
//
// Every queue is probed, TAP and macvtap alike. tun already fails reads
// and writes on a deleted TAP (EBADFD), but only once traffic flows; the
// probe also finds an idle one, and one code path for both kinds is
// simpler than a kind switch. A queue that stopped carrying traffic, as
// seen by the probe or by the worker's I/O (tapStep sets tapGone), is
// retired by the watch in both cases: see pair.retireTAP.

// startWatch starts the host watch if it is not running. d.mu held.
func (d *Device) startWatch() {
	if d.watchStop != nil || d.closed {
		return
	}
	d.watchStop = make(chan struct{})
	d.watchDone = make(chan struct{})
	go d.watch(d.probeEvery, d.watchStop, d.watchDone)
}

// watch is the host watch's goroutine.
func (d *Device) watch(every time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tickUntil(every, stop, d.checkHost)
}

// tickUntil calls f every d until stop is closed (control side only).
func tickUntil(d time.Duration, stop <-chan struct{}, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		f()
	}
}

// checkHost retires every queue that is gone: one the worker found gone
// through its I/O, or one the probe reports gone.
func (d *Device) checkHost() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for _, p := range d.pairs {
		if p.tapRetired {
			continue
		}
		how, errno := "io", unix.Errno(0)
		if !p.tapGone.Load() {
			if errno = d.probe(p.tq); !tap.IsGone(errno) {
				continue
			}
			how = "probe"
		}
		args := []any{"interface", d.tap.Name(), "queue", p.index, "detected_by", how}
		if errno != 0 {
			args = append(args, "error", errno.Error())
		}
		d.log.Warn("host interface queue gone: its TX frames are dropped (tx_dropped_tap), it receives nothing until the interface comes back", args...)
		p.retireTAP()
	}
	d.tryReattach(time.Now())
}

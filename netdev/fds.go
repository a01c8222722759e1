package netdev

import (
	"fmt"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/vhost"
	"golang.org/x/sys/unix"
)

// The fds the data path makes syscalls on, all through internal/rawio:
//   - TAP queue fds: opened O_NONBLOCK by package tap, and ours alone:
//     rawio's RawSyscall calls.
//   - kick, call and error eventfds: the front-end's, which shares their
//     open file descriptions and so can clear O_NONBLOCK or saturate a
//     counter at any time (BAD-INPUTS 62). They are read and written only
//     with rawio.DrainShared and rawio.SignalShared, which never block
//     whatever the flags; pair.start still sets the kick fd non-blocking.

// drain reads a kick eventfd's counter, returning it (0 if nothing was
// pending or the read failed), without allocating or blocking.
func drain(fd int) uint64 {
	v, _ := rawio.DrainShared(fd)
	return v
}

// signal adds 1 to a call or error eventfd's counter, without allocating
// or blocking. It reports false when the write would have blocked (the
// counter is saturated, which leaves the fd readable for the front-end
// anyway): the caller counts it and may retry.
func signal(fd int) bool {
	return rawio.SignalShared(fd) == 0
}

// readable reports whether fd has data to read now (poll with a zero
// timeout), without allocating; an error reads as not readable.
func readable(fd int) bool {
	ok, _ := rawio.Readable(fd)
	return ok
}

// checkPollable makes sure epoll takes every fd of a ring about to start
// (BAD-INPUTS 63): the worker sleeps on the kick in an epoll set, and an fd
// that epoll refuses (a regular file, a directory) would leave the pair's
// worker without its poller after the ring had started. The call and
// error fds are checked too: what epoll refuses cannot be an eventfd. The
// fds are added to a throwaway epoll set, before anything changes.
func checkPollable(r vhost.RingSpec) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("vring %d: epoll_create1: %w", r.Index, err)
	}
	defer unix.Close(ep)
	for _, f := range [...]struct {
		name string
		fd   int
	}{{"kick", r.Kick}, {"call", r.Call}, {"err", r.Err}} {
		if f.fd < 0 {
			continue
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(f.fd)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, f.fd, &ev); err != nil {
			return fmt.Errorf("vring %d: %s fd %d cannot be polled (epoll_ctl: %w); want an eventfd", r.Index, f.name, f.fd, err)
		}
	}
	return nil
}

// unblockSignals drains every call and error eventfd of the pair whose
// counter is saturated (not writable), without blocking: a worker held in
// a write to it (unstuck) then completes it, and the front-end still finds
// the fd readable. Any goroutine, while the control plane waits for the
// workers (the ring specs do not change meanwhile).
func (p *pair) unblockSignals() {
	for i := range p.rings {
		for _, fd := range [...]int{p.rings[i].spec.Call, p.rings[i].spec.Err} {
			if fd >= 0 && !rawio.Writable(fd) {
				rawio.DrainShared(fd)
			}
		}
	}
}

package netdev

import "github.com/vhostd/vhostd/internal/rawio"

// The fds the data path makes syscalls on, all through internal/rawio:
//   - TAP queue fds: opened O_NONBLOCK by package tap, and ours alone:
//     rawio's RawSyscall calls.
//   - kick, call and error eventfds: the front-end's, which shares their
//     open file descriptions and so can clear O_NONBLOCK or saturate a
//     counter at any time (BAD-INPUTS 60). They are read and written only
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

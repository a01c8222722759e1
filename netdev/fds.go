package netdev

import "github.com/vhostd/vhostd/internal/rawio"

// The fds the data path makes syscalls on, all through internal/rawio:
//   - TAP queue fds: opened O_NONBLOCK by package tap.
//   - kick eventfds: set non-blocking when the ring starts (pair.start).
//   - call and error eventfds: signalled with rawio.Signal as the front-end
//     handed them over. QEMU creates them EFD_NONBLOCK; a front-end that
//     sent a blocking one would make a signal on a saturated counter sleep
//     in RawSyscall (a known hazard, left for the hardening issue).

// drain reads a non-blocking eventfd's counter, returning it (0 if nothing
// was pending or the read failed), without allocating.
func drain(fd int) uint64 {
	v, _ := rawio.Drain(fd)
	return v
}

// readable reports whether fd has data to read now (poll with a zero
// timeout), without allocating; an error reads as not readable.
func readable(fd int) bool {
	ok, _ := rawio.Readable(fd)
	return ok
}

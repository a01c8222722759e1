// Package rawio is the one home of the system calls vhostd makes per frame
// or per wake-up: building iovecs over guest memory and frame buffers,
// readv/writev on TAP queues, signalling and draining eventfds, and a poll
// that asks whether an fd is readable now.
//
// Every call goes through unix.RawSyscall and returns unix.Errno, so the
// data path never boxes an error, never allocates, and does not tell the Go
// scheduler about the call (perf/FINDINGS.md: a write(2) loop went from 505
// to 429 ns a frame when it stopped doing so).
// RawSyscall is only right on a call that cannot sleep: hence the
// precondition every function here states, the fd must be non-blocking
// (O_NONBLOCK, EFD_NONBLOCK). Given a blocking fd the call would hold its
// OS thread and P until it returned. (gVisor's pkg/rawfile is the model.)
// An fd whose open file description another process shares can be made
// blocking behind vhostd's back: SignalShared and DrainShared (shared.go)
// are for those, and never block whatever the fd's flags.
//
// The iovecs carry raw pointers. The Go garbage collector does not track
// memory that the caller keeps alive by other means (guest memory is
// mmap'd; frame buffers are owned by long-lived structures), so an iovec
// is valid exactly as long as the slice it was built from.
package rawio

package privtest

import (
	"fmt"
	"os"
	"testing"
)

// RunCheckingFds runs a package's tests (call it from TestMain) and fails
// the run if they leave more file descriptors open than they found. what
// names the package in the message.
func RunCheckingFds(m *testing.M, what string) int {
	// The runtime's netpoller (an epoll fd and an eventfd) starts with the
	// first pollable file, such as os/exec's pipes; start it now so that it
	// is not counted as a leak.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	before := OpenFds()
	code := m.Run()
	if after := OpenFds(); code == 0 && after > before {
		fmt.Fprintf(os.Stderr, "%s tests leaked %d file descriptors (%d -> %d)\n", what, after-before, before, after)
		code = 1
	}
	return code
}

// OpenFds is the number of file descriptors the process has open (0 if
// /proc cannot tell).
func OpenFds() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

package xdptap

import (
	"fmt"
	"os"
	"testing"
)

// TestMain fails the run if the tests leak file descriptors (TAP queues, programs, maps,
// links).
func TestMain(m *testing.M) {
	// Start the runtime's netpoller (epoll fd, eventfd) now so that it is not counted.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	before := countFds()
	code := m.Run()
	if after := countFds(); code == 0 && after > before {
		fmt.Fprintf(os.Stderr, "xdptap tests leaked %d file descriptors (%d -> %d)\n", after-before, before, after)
		code = 1
	}
	os.Exit(code)
}

func countFds() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

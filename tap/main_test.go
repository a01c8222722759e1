package tap

import (
	"fmt"
	"os"
	"testing"
)

// TestMain fails the run if the tests leak file descriptors (queues, control sockets,
// packet sockets, temporary device nodes).
func TestMain(m *testing.M) {
	// The runtime's netpoller (an epoll fd and an eventfd) starts with the first pollable
	// file, such as os/exec's pipes; start it now so that it is not counted as a leak.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	before := countFds()
	code := m.Run()
	if after := countFds(); code == 0 && after > before {
		fmt.Fprintf(os.Stderr, "tap tests leaked %d file descriptors (%d -> %d)\n", after-before, before, after)
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

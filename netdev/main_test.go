package netdev

import (
	"os"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
)

// TestMain fails the run if the tests leak file descriptors (the package
// receives front-end fds: eventfds, memfds, logs).
func TestMain(m *testing.M) { os.Exit(privtest.RunCheckingFds(m, "netdev")) }

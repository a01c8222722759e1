package xdptap

import (
	"os"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
)

// TestMain fails the run if the tests leak file descriptors (TAP queues, programs, maps,
// links).
func TestMain(m *testing.M) { os.Exit(privtest.RunCheckingFds(m, "xdptap")) }

package busypoll

import (
	"os"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
)

// TestMain fails the run if the tests leak file descriptors (eventfds, epoll fds).
func TestMain(m *testing.M) { os.Exit(privtest.RunCheckingFds(m, "busypoll")) }

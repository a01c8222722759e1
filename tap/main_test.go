package tap

import (
	"os"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
)

// TestMain fails the run if the tests leak file descriptors (queues, control sockets,
// packet sockets, temporary device nodes).
func TestMain(m *testing.M) { os.Exit(privtest.RunCheckingFds(m, "tap")) }

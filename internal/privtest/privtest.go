// Package privtest gates tests that need privileges (CAP_NET_ADMIN, /dev/net/tun, network
// namespaces, external tools). Without them a test skips with the reason; with
// VHOSTD_TEST_PRIVILEGED=1 in the environment (CI) it fails instead, so a run can never pass
// by skipping.
package privtest

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// EnvVar is the variable that turns a missing privilege into a failure.
const EnvVar = "VHOSTD_TEST_PRIVILEGED"

// Strict reports whether EnvVar=1 is set.
func Strict() bool { return os.Getenv(EnvVar) == "1" }

// Missing ends the test: t.Skipf with the reason, or t.Fatalf when Strict().
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("privileged test cannot run ("+EnvVar+"=1): "+format, args...)
	}
	t.Skipf("skipping privileged test: "+format, args...)
}

// capNetAdmin is CAP_NET_ADMIN's bit (include/uapi/linux/capability.h).
const capNetAdmin = 12

// Require ends the test through Missing unless the process has CAP_NET_ADMIN in its
// effective set and /dev/net/tun exists.
func Require(t testing.TB) {
	t.Helper()
	if !hasCap(capNetAdmin) {
		Missing(t, "no CAP_NET_ADMIN (euid %d)", os.Geteuid())
	}
	RequireFile(t, "/dev/net/tun")
}

// RequireFile ends the test through Missing unless path exists.
func RequireFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, "%v", err)
	}
}

// RequireCommand ends the test through Missing unless name is in $PATH, and returns its path.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%v", err)
	}
	return p
}

func hasCap(bit uint) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return os.Geteuid() == 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<bit) != 0
		}
	}
	return os.Geteuid() == 0
}

// Package qemutests holds vhostd's end-to-end tests: a real Linux guest under QEMU (TCG)
// with a vhost-user virtio-net device served by vhostd. The reusable pieces (boot, initramfs,
// processes, host addresses) are in the guest subpackage; this file adds the testing.TB
// glue: the privilege gate, cleanups, and logs printed when a test fails.
//
// Run qemu-tests/setup.sh once as root, then
//
//	VHOSTD_TEST_PRIVILEGED=1 go test ./qemu-tests/ -v
package qemutests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// Gate checks what a guest test needs: root (CAP_NET_ADMIN, /dev/net/tun), QEMU,
// busybox-static and the cached guest kernel (qemu-tests/setup.sh installs them). When one is
// missing the test skips with the reason, or fails under VHOSTD_TEST_PRIVILEGED=1 (CI), so CI
// can never pass by skipping (internal/privtest).
func Gate(t testing.TB) guest.QEMU {
	t.Helper()
	privtest.Require(t)
	q, err := guest.FindQEMU()
	if err != nil {
		privtest.Missing(t, "%v", err)
	}
	if err := guest.CheckCache(); err != nil {
		privtest.Missing(t, "%v", err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		privtest.Missing(t, "no /bin/busybox (install busybox-static: run qemu-tests/setup.sh)")
	}
	return q
}

// Context returns a context that ends a little before the test's deadline (go test -timeout),
// or after d when that is sooner.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	deadline := time.Now().Add(d)
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if td, ok := tt.Deadline(); ok && td.Add(-5*time.Second).Before(deadline) {
			deadline = td.Add(-5 * time.Second)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// AddLog prints name's text (from log, read at cleanup time) when the test has failed, or
// always under go test -v. Use it for every log a failure could be explained by.
func AddLog(t testing.TB, name string, log func() string) {
	addLog(t, name, log, true)
}

// AddFailureLog is AddLog for long logs: printed only when the test has failed.
func AddFailureLog(t testing.TB, name string, log func() string) {
	addLog(t, name, log, false)
}

func addLog(t testing.TB, name string, log func() string, verbose bool) {
	t.Cleanup(func() {
		if !t.Failed() && !(verbose && testing.Verbose()) {
			return
		}
		s := strings.TrimRight(log(), "\n")
		if s == "" {
			s = "(empty)"
		}
		t.Logf("===== %s =====\n%s\n===== end of %s =====", name, s, name)
	})
}

// StartGuest boots a guest and registers its cleanup (kill QEMU by PID, remove its files) and
// its logs (command line, QEMU's stderr, serial console) for failure output.
func StartGuest(t testing.TB, o guest.Options) *guest.Guest {
	t.Helper()
	if o.QEMU.Path == "" {
		o.QEMU = Gate(t)
	}
	g, err := guest.Boot(context.Background(), o)
	if err != nil {
		t.Fatalf("boot guest: %v", err)
	}
	t.Logf("qemu pid %d: %s (%s)", g.PID(), g.Opts.QEMU.Version, g.Opts.QEMU.Path)
	// Cleanups run last-registered first: kill QEMU before printing the logs.
	AddLog(t, "guest serial console", g.Log)
	AddLog(t, "qemu stderr", g.QEMULog)
	AddLog(t, "qemu command line", g.Command)
	t.Cleanup(g.Close)
	return g
}

var vhostd struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// VhostdBinary builds github.com/vhostd/vhostd/cmd/vhostd once per test binary and returns
// its path. A build failure fails the test. RemoveBuilds deletes it.
func VhostdBinary(t testing.TB) string {
	t.Helper()
	vhostd.once.Do(func() {
		dir, err := os.MkdirTemp("", "vhostd-bin-")
		if err != nil {
			vhostd.err = err
			return
		}
		vhostd.dir = dir
		path := filepath.Join(dir, "vhostd")
		out, err := exec.Command("go", "build", "-o", path, "github.com/vhostd/vhostd/cmd/vhostd").CombinedOutput()
		if err != nil {
			vhostd.err = fmt.Errorf("go build ./cmd/vhostd: %w\n%s", err, out)
			return
		}
		vhostd.path = path
	})
	if vhostd.err != nil {
		t.Fatalf("%v", vhostd.err)
	}
	return vhostd.path
}

// RemoveBuilds deletes what VhostdBinary built; call it from TestMain.
func RemoveBuilds() {
	if vhostd.dir != "" {
		os.RemoveAll(vhostd.dir)
	}
}

// VhostdStopGrace bounds how long vhostd may take to exit on SIGTERM before SIGKILL.
const VhostdStopGrace = 10 * time.Second

// StartVhostd starts the vhostd binary with args. Its log is printed if the test fails; at
// cleanup it gets SIGTERM, then SIGKILL after VhostdStopGrace.
func StartVhostd(t testing.TB, args ...string) *guest.Process {
	t.Helper()
	return startVhostd(t, "vhostd log", args...)
}

// startVhostd is StartVhostd with the name its log is printed under.
func startVhostd(t testing.TB, logName string, args ...string) *guest.Process {
	t.Helper()
	bin := VhostdBinary(t)
	// VHOSTD_TEST_EXTRA_FLAGS: flags added to every vhostd, e.g. "--runas nobody"; a
	// test's own flags come after them and win.
	args = append(strings.Fields(os.Getenv("VHOSTD_TEST_EXTRA_FLAGS")), args...)
	if i := slices.Index(args, "--socket-path"); runAs() && slices.Contains(args, "--client") && i+1 < len(args) {
		os.Chmod(args[i+1], 0o777) // QEMU's socket: vhostd --runas (re)connects as that user
	}
	p, err := guest.StartProcess("vhostd", nil, bin, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("vhostd pid %d: %s %s", p.PID(), bin, strings.Join(args, " "))
	AddLog(t, logName, p.Log)
	t.Cleanup(func() {
		if err := p.Stop(VhostdStopGrace); err != nil {
			t.Logf("vhostd: %v", err)
		}
	})
	return p
}

// runAs reports whether VHOSTD_TEST_EXTRA_FLAGS makes vhostd drop to another
// user (--runas), who must reach the harness's sockets.
func runAs() bool { return strings.Contains(os.Getenv("VHOSTD_TEST_EXTRA_FLAGS"), "--runas") }

// TempDir makes a short-named temporary directory (unix socket paths must stay under 108
// bytes) removed at cleanup.
func TempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vhq-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	if runAs() {
		os.Chmod(d, 0o1777) // like /tmp: vhostd --runas may remove the socket it owns
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TapName returns a unique interface name for a test TAP ("vhq" and 8 hex digits).
func TapName() string { return "vhq" + guest.RandomSuffix(8) }

// HostAddr gives dev the address cidr and sets it up; the address is removed at cleanup.
func HostAddr(t testing.TB, dev, cidr string) {
	t.Helper()
	if err := guest.AddAddr(dev, cidr); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := guest.DelAddr(dev, cidr); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
}

// Subnet picks a random unused 10.x.y.0/24 for the test.
func Subnet(t testing.TB) guest.Subnet {
	t.Helper()
	s, err := guest.RandomSubnet()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return s
}

package privtest

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Suffix returns n random hex characters for unique interface and namespace names.
func Suffix(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// NetNS creates a named network namespace ("ip netns add vhd-XXXXXXXX"), locks the calling
// goroutine to its OS thread and moves that thread into the namespace. Cleanup moves the
// thread back, unlocks it and deletes the namespace. Everything the test does from its own
// goroutine (sockets, TAPs, ioctls) happens in the namespace; use `ip -n NAME` for commands.
// Goroutines the test starts run elsewhere: create fds here and hand them over.
// Calls Require first.
func NetNS(t testing.TB) string {
	t.Helper()
	Require(t)
	ip := RequireCommand(t, "ip")
	name := "vhd-" + Suffix(8)
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		Missing(t, "ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open own netns: %v", err)
	}
	ns, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(orig)
		runtime.UnlockOSThread()
		t.Fatalf("open netns %s: %v", name, err)
	}
	defer unix.Close(ns)
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		unix.Close(orig)
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer unix.Close(orig)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with the goroutine instead of returning to
			// the pool in the wrong namespace.
			t.Errorf("setns back: %v", err)
			return
		}
		runtime.UnlockOSThread()
	})
	return name
}

// IP runs `ip -n ns args...` and fails the test on error.
func IP(t testing.TB, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %v: %v: %s", ns, args, err, out)
	}
}

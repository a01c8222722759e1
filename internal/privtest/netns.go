package privtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/internal/testutil"
)

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
	name := "vhd-" + testutil.Suffix(8)
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
	if out, err := TryIP(ns, args...); err != nil {
		t.Fatalf("ip -n %s %v: %v: %s", ns, args, err, out)
	}
}

// TryIP runs `ip -n ns args...` and returns its output, for a step whose failure the
// caller judges (such as Missing when the kernel lacks a link type).
func TryIP(ns string, args ...string) ([]byte, error) {
	return exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
}

// Macvtap makes, in a fresh network namespace (NetNS: the calling goroutine's thread
// moves into it), a veth pair (lower, peer) and a macvtap in bridge mode on lower, all
// up, and returns the namespace and the macvtap's and peer's names: prefix, then l, p or
// m, then a random suffix. mac, if not nil, is the macvtap's address, set before it goes
// up. The macvtap gets a random high ifindex, so that its /dev/tapN is unlikely to be
// taken by another namespace's macvtap on a shared machine. Ends the test through Missing
// if the kernel cannot make a macvtap.
func Macvtap(t testing.TB, prefix string, mac net.HardwareAddr) (ns, mvt, peer string) {
	t.Helper()
	ns = NetNS(t)
	sfx := testutil.Suffix(6)
	lower := prefix + "l" + sfx
	peer, mvt = prefix+"p"+sfx, prefix+"m"+sfx
	IP(t, ns, "link", "add", lower, "type", "veth", "peer", "name", peer)
	index := fmt.Sprint(100000 + rand.IntN(1<<30))
	if out, err := TryIP(ns, "link", "add", "link", lower, "name", mvt, "index", index, "type", "macvtap", "mode", "bridge"); err != nil {
		Missing(t, "cannot create a macvtap: %v: %s", err, out)
	}
	if mac != nil {
		IP(t, ns, "link", "set", mvt, "address", mac.String())
	}
	for _, l := range []string{lower, peer, mvt} {
		IP(t, ns, "link", "set", l, "up")
	}
	return ns, mvt, peer
}

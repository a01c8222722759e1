package guest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Subnet is a /24 in 10.0.0.0/8 for one test: .1 is the host's end, .2 the guest's.
type Subnet struct{ A, B byte }

// HostIP is 10.A.B.1.
func (s Subnet) HostIP() string { return fmt.Sprintf("10.%d.%d.1", s.A, s.B) }

// GuestIP is 10.A.B.2.
func (s Subnet) GuestIP() string { return fmt.Sprintf("10.%d.%d.2", s.A, s.B) }

// IP returns 10.A.B.n.
func (s Subnet) IP(n int) string { return fmt.Sprintf("10.%d.%d.%d", s.A, s.B, n) }

// HostCIDR is 10.A.B.1/24.
func (s Subnet) HostCIDR() string { return s.HostIP() + "/24" }

// GuestCIDR is 10.A.B.2/24.
func (s Subnet) GuestCIDR() string { return s.GuestIP() + "/24" }

func (s Subnet) String() string { return fmt.Sprintf("10.%d.%d.0/24", s.A, s.B) }

// RandomSubnet picks a random 10.x.y.0/24 (x in 100..227) that no host interface or route
// in this network namespace uses yet, so sessions sharing the machine do not clash.
func RandomSubnet() (Subnet, error) {
	used, err := usedNets()
	if err != nil {
		return Subnet{}, err
	}
	for range 100 {
		var b [2]byte
		rand.Read(b[:])
		s := Subnet{A: 100 + b[0]%128, B: b[1]}
		_, sn, _ := net.ParseCIDR(s.String())
		clash := false
		for _, u := range used {
			if u.Contains(sn.IP) || sn.Contains(u.IP) {
				clash = true
				break
			}
		}
		if !clash {
			return s, nil
		}
	}
	return Subnet{}, fmt.Errorf("no free 10.x.y.0/24 found")
}

func usedNets() ([]*net.IPNet, error) {
	var nets []*net.IPNet
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("interface addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			nets = append(nets, n)
		}
	}
	if out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			d := f[0]
			if d == "local" || d == "broadcast" || d == "unreachable" || d == "blackhole" {
				if len(f) < 2 {
					continue
				}
				d = f[1]
			}
			if d == "default" {
				continue
			}
			if !strings.Contains(d, "/") {
				d += "/32"
			}
			if _, n, err := net.ParseCIDR(d); err == nil {
				nets = append(nets, n)
			}
		}
	}
	return nets, nil
}

// IP runs ip(8) with args and returns an error with its output on failure.
func IP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// AddAddr gives dev the address cidr (ip addr replace) and sets it up.
func AddAddr(dev, cidr string) error {
	if err := IP("addr", "replace", cidr, "dev", dev); err != nil {
		return err
	}
	return IP("link", "set", dev, "up")
}

// DelAddr removes cidr from dev. A device that is already gone is not an error.
func DelAddr(dev, cidr string) error {
	if !LinkExists(dev) {
		return nil
	}
	return IP("addr", "del", cidr, "dev", dev)
}

// LinkExists reports whether the network interface dev exists in this namespace.
func LinkExists(dev string) bool {
	_, err := net.InterfaceByName(dev)
	return err == nil
}

// NewNetns creates the network namespace name (ip netns add) with lo up.
func NewNetns(name string) error {
	if err := IP("netns", "add", name); err != nil {
		return err
	}
	return IP("-n", name, "link", "set", "lo", "up")
}

// DelNetns deletes the network namespace name.
func DelNetns(name string) error { return IP("netns", "del", name) }

// InNetns returns a command that runs argv inside the namespace ns (ip netns exec).
func InNetns(ns string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// RunInNetns runs f on an OS thread moved into the network namespace ns (/run/netns/ns) and
// returns its error. Sockets f creates (net.Listen, net.Dial) belong to ns and can be used from
// any goroutine afterwards. The thread is moved back before it is unlocked. It must not die
// instead: children started with Pdeathsig (QEMU, vhostd: StartProcess) get SIGKILL when the
// thread that forked them exits, and any thread may have forked one.
func RunInNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: %w", ns, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread ends with this goroutine rather than serve others in ns.
			errc <- errors.Join(ferr, fmt.Errorf("setns back from %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

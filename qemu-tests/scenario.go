package qemutests

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// guestLib is /etc/vhq.sh in every scenario guest: pingcheck, waithost, mkdata, send, recv.
//
//go:embed guestlib.sh
var guestLib []byte

// GuestFiles returns files plus what guestlib.sh needs: itself as /etc/vhq.sh, and the
// subnet's host and guest addresses in /etc/hip and /etc/gip.
func GuestFiles(sn guest.Subnet, files map[string][]byte) map[string][]byte {
	f := maps.Clone(files)
	if f == nil {
		f = map[string][]byte{}
	}
	f["etc/vhq.sh"] = guestLib
	f["etc/hip"] = []byte(sn.HostIP() + "\n")
	f["etc/gip"] = []byte(sn.GuestIP() + "\n")
	return f
}

// WithLib makes script source /etc/vhq.sh (GuestFiles) first.
func WithLib(script string) string { return ". /etc/vhq.sh\n" + script }

// Bed is one scenario's set-up: vhostd serving a TAP (or a macvtap) on a random subnet and a
// guest whose eth0 has the subnet's .2, with the host's end at .1.
type Bed struct {
	T      *testing.T
	Ctx    context.Context
	Net    guest.Subnet
	Sock   string
	Tap    string // the host interface vhostd serves: its TAP, or the macvtap
	Netns  string // where the host end lives when it is not this namespace (macvtap)
	Vhostd *guest.Process
	Guest  *guest.Guest
	// QMPPath is QEMU's QMP socket (BedConfig.QMP), "" without; QMP connects to it.
	QMPPath string

	args     []string // vhostd's command line, for Restart
	restarts int
	qmp      *guest.QMP
	klogs    int  // KernelLog dumps so far
	kerrs    int  // kernel error lines already reported by AssertGuestKernelClean
	ctl      bool // the guest runs LoadScript and takes commands (Control)
}

// BedConfig says what differs from the default bed (server-mode vhostd with one queue pair and
// a TAP of its own, the host address on the TAP).
type BedConfig struct {
	// Timeout bounds the whole scenario (default 3 minutes: a slow boot and a stalled
	// transfer both end there, so a failing data path does not hold the package for long).
	Timeout time.Duration
	// VhostdArgs are added to vhostd's command line.
	VhostdArgs []string
	// Client runs vhostd --client against a listening QEMU (server=on,wait=on).
	Client bool
	// Macvtap makes vhostd serve this existing macvtap (--macvtap) whose host end is in the
	// namespace Netns; no address is put on it.
	Macvtap, Netns string
	// NIC is the guest's device; StartBed fills in SocketPath and the server flags.
	NIC guest.NIC
	// Net, when set, is the subnet to use (a test that must know the guest's
	// address before vhostd starts); default a random free one.
	Net *guest.Subnet
	// Guest is the guest; StartBed adds /etc/vhq.sh (sourced before Script), /etc/hip,
	// /etc/gip and the address.
	Guest guest.Options
	// QMP gives QEMU a QMP socket in the bed's temporary directory (Bed.QMP).
	QMP bool
}

// StartBed starts vhostd and the guest as c says, in the order the mode needs, waits for
// vhostd's interface and gives the host its address. Everything is undone at cleanup.
func StartBed(t *testing.T, c BedConfig) *Bed {
	t.Helper()
	q := Gate(t)
	if c.Timeout == 0 {
		c.Timeout = 3 * time.Minute
	}
	dir := TempDir(t)
	b := &Bed{T: t, Ctx: Context(t, c.Timeout), Sock: filepath.Join(dir, "vu.sock"), Netns: c.Netns}
	if c.Net != nil {
		b.Net = *c.Net
	} else {
		b.Net = Subnet(t)
	}
	qp := max(c.NIC.QueuePairs, 1)
	b.args = []string{"--socket-path", b.Sock, "--queues", strconv.Itoa(qp), "--log-level", "debug"}
	if c.Macvtap != "" {
		b.Tap = c.Macvtap
		b.args = append(b.args, "--macvtap", b.Tap)
	} else {
		b.Tap = TapName()
		b.args = append(b.args, "--tap", b.Tap)
	}
	b.args = append(b.args, c.VhostdArgs...)

	o := c.Guest
	o.QEMU = q
	nic := c.NIC
	nic.SocketPath = b.Sock
	o.NIC = &nic
	o.GuestIP = b.Net.GuestCIDR()
	o.Files = GuestFiles(b.Net, o.Files)
	o.Script = WithLib(o.Script)
	if c.QMP {
		b.QMPPath = filepath.Join(dir, "qmp.sock")
		o.QMP = b.QMPPath
	}

	if c.Client {
		nic.Server, nic.ServerWait = true, true
		b.Guest = StartGuest(t, o)
		if err := waitSocket(b.Ctx, b.Guest, b.Sock); err != nil {
			t.Fatalf("qemu socket: %v", err)
		}
		b.Vhostd = b.startVhostd(append([]string{"--client"}, b.args...))
	} else {
		b.Vhostd = b.startVhostd(b.args)
		if err := guest.WaitFile(b.Ctx, b.Sock, b.Vhostd); err != nil {
			t.Fatalf("vhostd socket: %v", err)
		}
		b.Guest = StartGuest(t, o)
	}
	if c.Macvtap == "" {
		b.waitTap()
		HostAddr(t, b.Tap, b.Net.HostCIDR())
	}
	t.Logf("host %s on %s, guest %s", b.Net.HostCIDR(), b.Tap, b.Net.GuestCIDR())
	return b
}

func (b *Bed) startVhostd(args []string) *guest.Process {
	if b.restarts == 0 {
		return StartVhostd(b.T, args...)
	}
	return startVhostd(b.T, fmt.Sprintf("vhostd log (start %d)", b.restarts+1), args...)
}

// waitTap waits for vhostd's TAP: vhostd may create it at start or when QEMU connects.
func (b *Bed) waitTap() {
	b.T.Helper()
	if err := guest.WaitFile(b.Ctx, "/sys/class/net/"+b.Tap, b.Vhostd); err != nil {
		b.T.Fatalf("vhostd's TAP %s: %v", b.Tap, err)
	}
}

// Kill SIGKILLs vhostd and waits for it to die (its TAP goes with it).
func (b *Bed) Kill() {
	b.T.Helper()
	if err := b.Vhostd.Signal(syscall.SIGKILL); err != nil {
		b.T.Fatalf("kill vhostd: %v", err)
	}
	<-b.Vhostd.Done()
	// The TAP goes when its last file does. With --tap-write uring the
	// kernel drops a dead process's io_uring (which holds the TAP's fd as a
	// fixed file) in a worker some 30 ms after the exit: until then the old
	// TAP is still there, and a restart's waitTap would find it, not the
	// new vhostd's.
	tapGone := time.Now()
	for {
		if _, err := os.Stat("/sys/class/net/" + b.Tap); err != nil {
			break
		}
		if time.Since(tapGone) > 5*time.Second {
			b.T.Fatalf("vhostd pid %d killed, but its TAP %s is still there after 5 s", b.Vhostd.PID(), b.Tap)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.T.Logf("vhostd pid %d killed (SIGKILL); its TAP went %.0f ms after", b.Vhostd.PID(), float64(time.Since(tapGone).Microseconds())/1000)
}

// Restart starts vhostd again (after Kill) with the same arguments (same socket path, same
// TAP name), waits for its socket and TAP and puts the host address back on the new TAP. It
// returns when the new vhostd was started.
func (b *Bed) Restart() time.Time {
	b.T.Helper()
	b.restarts++
	start := time.Now()
	b.Vhostd = b.startVhostd(b.args)
	if err := guest.WaitFile(b.Ctx, b.Sock, b.Vhostd); err != nil {
		b.T.Fatalf("restarted vhostd's socket: %v", err)
	}
	b.waitTap()
	if err := guest.AddAddr(b.Tap, b.Net.HostCIDR()); err != nil {
		b.T.Fatalf("%v", err)
	}
	b.T.Logf("restarted vhostd: socket and TAP %s with %s after %.2f s", b.Tap, b.Net.HostCIDR(), time.Since(start).Seconds())
	return start
}

// WaitLine waits for re in the guest's serial log from offset from on, and fails the test if
// it does not come.
func (b *Bed) WaitLine(re string, from int) []string {
	b.T.Helper()
	m, err := b.Guest.WaitForFrom(b.Ctx, regexp.MustCompile(re), from)
	if err != nil {
		b.T.Fatalf("guest: %v", err)
	}
	return m
}

var pingLine = `PING first_ok=(\d) tries=(\d+) rcv=(\d*)\n`

// GuestPinged checks the PING line of the guest's pingcheck printed after offset from.
func (b *Bed) GuestPinged(from int) {
	b.T.Helper()
	m := b.WaitLine(pingLine, from)
	if m[1] != "1" {
		b.T.Fatalf("the guest got no reply from %s in %s tries", b.Net.HostIP(), m[2])
	}
	if m[3] != "3" {
		b.T.Errorf("the guest got %s/3 replies after the first one", m[3])
	}
}

// HostPing pings the guest from the host's end (in Netns when set) 3 times with the extra
// ping options and fails the test unless all 3 replies come.
func (b *Bed) HostPing(opts ...string) {
	b.T.Helper()
	argv := append([]string{"ping", "-c", "3", "-i", "0.3", "-W", "2"}, opts...)
	argv = append(argv, b.Net.GuestIP())
	var cmd *exec.Cmd
	if b.Netns != "" {
		cmd = guest.InNetns(b.Netns, argv...)
	} else {
		cmd = exec.CommandContext(b.Ctx, argv[0], argv[1:]...)
	}
	out, err := cmd.CombinedOutput()
	b.T.Logf("host: %s\n%s", strings.Join(argv, " "), out)
	if m := regexp.MustCompile(`(\d+) (packets )?received`).FindSubmatch(out); err != nil || m == nil || string(m[1]) != "3" {
		b.T.Fatalf("host ping to the guest: %v (want 3 replies)", err)
	}
}

// Release connects to the guest's waithost PORT and closes: the guest's script goes on.
func (b *Bed) Release(port int) {
	b.T.Helper()
	c, err := b.dial(net.JoinHostPort(b.Net.GuestIP(), strconv.Itoa(port)))
	if err != nil {
		b.T.Fatalf("release the guest (waithost %d): %v", port, err)
	}
	c.Close()
}

// PingBothWays is the guest's half of the ping scenario ($PINGOPTS are its ping options);
// CheckPingBothWays is the host's.
const PingBothWays = "pingcheck $PINGOPTS $HIP || exit 1\nwaithost 5000\n"

// CheckPingBothWays checks the guest's pings of the host (printed after offset from), pings
// the guest from the host with hostPingOpts, and lets the guest's script go on.
func (b *Bed) CheckPingBothWays(from int, hostPingOpts ...string) {
	b.T.Helper()
	b.GuestPinged(from)
	b.HostPing(hostPingOpts...)
	b.Release(5000)
}

// WaitExit waits for the guest to power off and QEMU to exit 0.
func (b *Bed) WaitExit() {
	b.T.Helper()
	if rc, err := b.Guest.WaitScript(b.Ctx); err != nil {
		b.T.Errorf("script: %v", err)
	} else if rc != 0 {
		b.T.Errorf("guest script exit status %d", rc)
	}
	if err := b.Guest.Wait(b.Ctx); err != nil {
		b.T.Errorf("qemu exit: %v", err)
	}
}

// dial connects to addr from the host's end, retrying while the guest does not listen yet.
func (b *Bed) dial(addr string) (net.Conn, error) { return b.dialCtx(b.Ctx, addr) }

// dialCtx is dial, retrying until ctx ends.
func (b *Bed) dialCtx(ctx context.Context, addr string) (net.Conn, error) {
	for {
		var c net.Conn
		err := b.inHostNetns(func() (err error) {
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (b *Bed) inHostNetns(f func() error) error {
	if b.Netns == "" {
		return f()
	}
	return guest.RunInNetns(b.Netns, f)
}

// QueueStats are one queue pair's counters from vhostd's SIGUSR1 output.
type QueueStats map[string]uint64

var queueLine = regexp.MustCompile(`(?m)^queue (\d+):(.*)\n`)

// Stats sends vhostd SIGUSR1 and parses the "queue N: name=value ..." lines it prints, one per
// queue pair; it waits for pairs lines.
func (b *Bed) Stats(pairs int) []QueueStats {
	b.T.Helper()
	from := len(b.Vhostd.Log())
	if err := b.Vhostd.Signal(syscall.SIGUSR1); err != nil {
		b.T.Fatalf("SIGUSR1 to vhostd: %v", err)
	}
	last := regexp.MustCompile(fmt.Sprintf(`(?m)^queue %d:.*\n`, pairs-1))
	if _, err := b.Vhostd.WaitForFrom(b.Ctx, last, from); err != nil {
		b.T.Fatalf("vhostd's counters: %v", err)
	}
	st := make([]QueueStats, pairs)
	for _, m := range queueLine.FindAllStringSubmatch(b.Vhostd.Log()[from:], -1) {
		i, _ := strconv.Atoi(m[1])
		if i >= pairs || st[i] != nil {
			continue
		}
		st[i] = QueueStats{}
		for _, kv := range strings.Fields(m[2]) {
			k, v, _ := strings.Cut(kv, "=")
			st[i][k], _ = strconv.ParseUint(v, 10, 64)
		}
	}
	for i, s := range st {
		if s == nil {
			b.T.Fatalf("no counters for queue %d in vhostd's output", i)
		}
	}
	return st
}

// errExitTimeout says a process did not exit in time.
var errExitTimeout = errors.New("did not exit in time")

// waitExit waits up to d for p to exit and returns its exit status.
func waitExit(p *guest.Process, d time.Duration) error {
	select {
	case <-p.Done():
		_, err := p.Exited()
		return err
	case <-time.After(d):
		return errExitTimeout
	}
}

// guestOpts is a guest that runs script.
func guestOpts(script string) guest.Options { return guest.Options{Script: script} }

// waitSocket waits for QEMU's listening socket, or QEMU's exit.
func waitSocket(ctx context.Context, g *guest.Guest, sock string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-g.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := guest.WaitFile(ctx, sock, nil); err != nil {
		return fmt.Errorf("%w (qemu stderr: %s)", err, g.QEMULog())
	}
	return nil
}

// checkTermExit checks vhostd's end after SIGTERM: err is what waitExit
// said took after the signal; it must have exited 0 within that time and
// removed its socket and its TAP.
func (b *Bed) checkTermExit(t *testing.T, err error, took time.Duration) {
	t.Helper()
	switch {
	case errors.Is(err, errExitTimeout):
		t.Errorf("vhostd still runs 2 s after SIGTERM")
	case err != nil:
		t.Errorf("vhostd exit after SIGTERM: %v (want status 0)", err)
	default:
		t.Logf("vhostd exited 0 %.3f s after SIGTERM", took.Seconds())
	}
	if _, err := os.Stat(b.Sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vhostd left its socket %s (stat: %v)", b.Sock, err)
	}
	if guest.LinkExists(b.Tap) {
		t.Errorf("vhostd left its TAP %s", b.Tap)
	}
}

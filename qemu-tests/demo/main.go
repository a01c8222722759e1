// Command demo is the README's first command: it builds vhostd, starts it
// on a fresh TAP, boots a small Linux guest under QEMU whose NIC is served by
// vhostd, pings both ways, prints vhostd's per-queue counters, and cleans
// up. Run it as root after qemu-tests/setup.sh (scripts/demo.sh does both).
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

const guestScript = `
HIP=$(cat /etc/hip)
k=0; while [ $k -lt 30 ]; do k=$((k+1)); ping -c 1 -W 1 $HIP >/dev/null 2>&1 && break; done
echo "guest pings the host at $HIP:"
ping -c 5 -i 0.2 -W 2 $HIP
echo DEMO-GUEST-DONE
# Stay up while the host pings back; the host powers the guest off by ending QEMU.
sleep 60
`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n== "+format+"\n", args...)
}

func run() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the demo creates a TAP and boots a guest")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	q, err := guest.FindQEMU()
	if err != nil {
		return fmt.Errorf("%w (run qemu-tests/setup.sh first)", err)
	}
	if err := guest.CheckCache(); err != nil {
		return fmt.Errorf("%w (run qemu-tests/setup.sh first)", err)
	}
	dir, err := os.MkdirTemp("", "vhostd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sn, err := guest.RandomSubnet()
	if err != nil {
		return err
	}
	tap := "vhdemo" + guest.RandomSuffix(6)
	vd, err := startVhostd(ctx, dir, tap, sn)
	if err != nil {
		return err
	}
	defer vd.Stop(5 * time.Second)

	step("booting a guest under QEMU %s (TCG), eth0 %s served by vhostd", q.Version, sn.GuestCIDR())
	g, err := guest.Boot(ctx, guest.Options{
		QEMU:    q,
		NIC:     &guest.NIC{SocketPath: filepath.Join(dir, "vhost-user.sock")},
		GuestIP: sn.GuestCIDR(),
		Files:   map[string][]byte{"etc/hip": []byte(sn.HostIP() + "\n")},
		Script:  guestScript,
		Serial:  newPrefixWriter("guest  | "),
	})
	if err != nil {
		return err
	}
	defer g.Close()
	if _, err := g.WaitFor(ctx, regexp.MustCompile(`DEMO-GUEST-DONE`)); err != nil {
		return fmt.Errorf("the guest did not finish pinging: %w", err)
	}

	step("the host pings the guest at %s", sn.GuestIP())
	ping := exec.CommandContext(ctx, "ping", "-c", "5", "-i", "0.2", "-W", "2", sn.GuestIP())
	ping.Stdout, ping.Stderr = os.Stdout, os.Stderr
	pingErr := ping.Run()

	step("vhostd's per-queue counters (SIGUSR1)")
	vd.Signal(syscall.SIGUSR1)
	time.Sleep(300 * time.Millisecond)
	return cleanUp(g, vd, tap, pingErr)
}

// startVhostd builds vhostd into dir and starts it on a new TAP with its
// socket in dir, the host address sn on the TAP.
func startVhostd(ctx context.Context, dir, tap string, sn guest.Subnet) (*guest.Process, error) {
	step("building vhostd")
	bin := filepath.Join(dir, "vhostd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vhostd/vhostd/cmd/vhostd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "vhost-user.sock")
	step("starting vhostd on TAP %s, socket %s", tap, sock)
	vd, err := guest.StartProcess("vhostd", newPrefixWriter("vhostd | "), bin, "--socket-path", sock, "--tap", tap, "--queues", "1")
	if err != nil {
		return nil, err
	}
	if err := guest.WaitFile(ctx, sock, vd); err != nil {
		vd.Stop(5 * time.Second)
		return nil, fmt.Errorf("vhostd did not create its socket: %w", err)
	}
	if err := guest.AddAddr(tap, sn.HostCIDR()); err != nil {
		vd.Stop(5 * time.Second)
		return nil, err
	}
	return vd, nil
}

// cleanUp ends the guest and vhostd, checks that the TAP went with vhostd,
// and reports whether traffic flowed both ways.
func cleanUp(g *guest.Guest, vd *guest.Process, tap string, pingErr error) error {
	step("cleaning up: guest off, vhostd SIGTERM, TAP removed")
	g.Kill()
	if err := vd.Stop(5 * time.Second); err != nil {
		return fmt.Errorf("vhostd exit: %w", err)
	}
	if guest.LinkExists(tap) {
		return fmt.Errorf("TAP %s still exists after vhostd exited", tap)
	}
	if pingErr != nil {
		return fmt.Errorf("host ping: %w", pingErr)
	}
	if !strings.Contains(g.Log(), " 0% packet loss") {
		return fmt.Errorf("the guest's pings were lost")
	}
	fmt.Println("\ndemo: traffic flowed both ways through vhostd")
	return nil
}

// prefixWriter writes whole lines to stdout, each with a prefix; a partial
// line waits for its end.
type prefixWriter struct {
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func newPrefixWriter(prefix string) *prefixWriter { return &prefixWriter{prefix: prefix} }

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		fmt.Print(p.prefix + strings.TrimRight(string(p.buf[:i]), "\r") + "\n")
		p.buf = p.buf[i+1:]
	}
}

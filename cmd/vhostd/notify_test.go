package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
)

// notifySocket listens for datagrams at addr (a path, or @name).
func notifySocket(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readNotify returns the next datagram, or fails after d.
func readNotify(t *testing.T, c *net.UnixConn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("no notification within %v: %v", d, err)
	}
	return string(b[:n])
}

func TestSdNotify(t *testing.T) {
	for _, addr := range []string{filepath.Join(t.TempDir(), "notify"), "@vhostd-test-" + testutil.Suffix(8)} {
		c := notifySocket(t, addr)
		t.Setenv("NOTIFY_SOCKET", addr)
		if err := sdNotify("READY=1"); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if got := readNotify(t, c, time.Second); got != "READY=1" {
			t.Fatalf("%s: got %q", addr, got)
		}
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody"))
	if err := sdNotify("READY=1"); err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
		t.Fatalf("a socket nobody listens on: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
}

// TestWatchdog: WATCHDOG=1 at half $WATCHDOG_USEC while alive returns,
// none while it blocks, none for another $WATCHDOG_PID.
func TestWatchdog(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	c := notifySocket(t, addr)
	t.Setenv("NOTIFY_SOCKET", addr)
	t.Setenv("WATCHDOG_USEC", "20000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	stop := startWatchdog(hclog.NewNullLogger(), func() {})
	expectSilence(t, c, 100*time.Millisecond)
	stop()
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	block := make(chan struct{})
	blocked := atomic.Bool{}
	blocked.Store(true)
	stop = startWatchdog(hclog.NewNullLogger(), func() {
		if blocked.Load() {
			<-block
		}
	})
	defer stop()
	expectSilence(t, c, 100*time.Millisecond)
	blocked.Store(false)
	close(block)
	for i := 0; i < 3; i++ {
		if got := readNotify(t, c, time.Second); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: %q", i, got)
		}
	}
}

// expectSilence fails if a notification arrives within d.
func expectSilence(t *testing.T, c *net.UnixConn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b := make([]byte, 64)
	if n, err := c.Read(b); err == nil {
		t.Fatalf("unexpected notification %q", b[:n])
	}
}

// TestReadyAndControlSocket runs the real binary as systemd would run a
// Type=notify service: READY=1 arrives once it serves, the default
// control socket (SOCKET.ctl) answers "vhostd ctl status" and
// --metrics-listen serves /metrics over TCP; SIGTERM sends STOPPING=1, exits 0 and removes both
// sockets.
func TestReadyAndControlSocket(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	bin := buildVhostd(t, dir)
	ns := notifySocket(t, filepath.Join(dir, "notify"))
	sock, tapName := filepath.Join(dir, "s"), "vhn"+testutil.Suffix(8)
	cmd := exec.Command(bin, "--socket-path", sock, "--tap", tapName, "--metrics-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(dir, "notify"))
	var log testutil.SyncBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if got := readNotify(t, ns, 10*time.Second); !strings.HasPrefix(got, "READY=1\n") || !strings.Contains(got, tapName) {
		t.Fatalf("notification %q\n%s", got, log.String())
	}
	out, err := exec.Command(bin, "ctl", "--socket-path", sock, "status").CombinedOutput()
	if err != nil || !regexp.MustCompile(`interface: +`+tapName+` \(tap, mtu 1500\)`).Match(out) {
		t.Fatalf("vhostd ctl status: %v\n%s\n%s", err, out, log.String())
	}
	m := regexp.MustCompile(`metrics listening: address=(\S+)`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no metrics listener in the log:\n%s", log.String())
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `vhostd_frames_total{queue="0",direction="tx"} 0`) {
		t.Fatalf("GET /metrics over TCP:\n%s", body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if got := readNotify(t, ns, 5*time.Second); got != "STOPPING=1" {
		t.Fatalf("on SIGTERM: %q", got)
	}
	waitExit0(t, cmd, &log)
	for _, p := range []string{sock, sock + ".ctl"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

// buildVhostd builds the binary into dir and returns its path.
func buildVhostd(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "vhostd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// waitExit0 waits up to 5 s for a signalled vhostd to exit with status 0.
func waitExit0(t *testing.T, cmd *exec.Cmd, log *testutil.SyncBuffer) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("vhostd on SIGTERM: %v\n%s", err, log.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("vhostd did not exit within 5 s of SIGTERM\n%s", log.String())
	}
}

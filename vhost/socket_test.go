package vhost_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// TestListenSocketMode: --socket-mode and --socket-group give the socket
// file that mode and group, and nothing is left next to it.
func TestListenSocketMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	gid := os.Getgid()
	if os.Geteuid() == 0 {
		gid = 65534
	}
	srv := vhost.NewServer(vhosttest.NewNullDevice(testFeatures, testVrings), nil)
	srv.SetSocketOptions(vhost.SocketOptions{Mode: 0o660, UID: -1, GID: gid})
	if err := srv.Listen(path); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Mode&0o7777 != 0o660 || int(st.Gid) != gid {
		t.Fatalf("socket mode %#o gid %d, want a socket with 0660 and gid %d", st.Mode, st.Gid, gid)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the socket: %v", len(ents), ents)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	fe, err := vhosttest.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	if err := fe.Sync(); err != nil {
		t.Fatalf("the renamed socket does not serve: %v", err)
	}
}

// dialAs connects to path from a thread whose effective uid and gid are
// uid (set with raw setresuid/setresgid on that thread only; the thread
// ends with its goroutine), so SO_PEERCRED reports uid.
func dialAs(t *testing.T, path string, uid int) *net.UnixConn {
	t.Helper()
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
			ch <- res{-1, e}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
			ch <- res{-1, e}
			return
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			if err = unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
				unix.Close(fd)
			}
		}
		ch <- res{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("connect as uid %d: %v", uid, r.err)
	}
	f := os.NewFile(uintptr(r.fd), "peer")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.UnixConn)
}

// TestPeerCredRefused: with --allow-uid 0, a front-end connecting as
// nobody is logged with its uid, gid and pid and disconnected; the server
// goes on serving an allowed one.
func TestPeerCredRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		privtest.Missing(t, "needs root (euid %d)", os.Geteuid())
	}
	dir, err := os.MkdirTemp("", "vhostd-peer-") // reachable by nobody, unlike t.TempDir
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "s")
	logs := &logBuf{}
	srv := vhost.NewServer(vhosttest.NewNullDevice(testFeatures, testVrings), newLogger(logs, hclog.Info))
	srv.SetSocketOptions(vhost.SocketOptions{Mode: 0o666, UID: -1, GID: -1})
	srv.SetPeerPolicy(vhost.PeerPolicy{UIDs: []int{0}})
	if err := srv.Listen(path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { srv.Close(); cancel(); <-done }()

	bad := vhosttest.New(dialAs(t, path, 65534))
	if err := bad.Sync(); err == nil {
		t.Fatal("a refused peer was served")
	}
	bad.Close()
	if !logs.hasLine("refused front-end", "uid=65534", "gid=65534", "pid=") {
		t.Fatalf("no refusal logged with the peer's credentials:\n%s", logs)
	}
	good, err := vhosttest.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := good.Sync(); err != nil {
		t.Fatalf("an allowed peer after a refused one: %v", err)
	}
}

// TestPeerCredRefusedClient: in --client mode the listening front-end's
// credentials are checked; a refused one is logged and vhostd retries.
func TestPeerCredRefusedClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qemu.sock")
	logs := &logBuf{}
	srv := vhost.NewServer(vhosttest.NewNullDevice(testFeatures, testVrings), newLogger(logs, hclog.Info))
	srv.SetPeerPolicy(vhost.PeerPolicy{UIDs: []int{os.Geteuid() + 1}, GIDs: []int{os.Getegid() + 1}})
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.DialAndServe(ctx, path, 20*time.Millisecond) }()
	for i := 0; i < 2; i++ { // refused, then retried
		ln.SetDeadline(time.Now().Add(5 * time.Second))
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a refused listener got data")
		}
		c.Close()
	}
	cancel()
	<-done
	if !logs.hasLine("refused front-end listener", "uid=", "pid=") {
		t.Fatalf("no refusal logged:\n%s", logs)
	}
}

// TestListenSocketModeLongPath: a path that fits a unix socket but not
// the private directory it is first bound in is refused, naming both.
func TestListenSocketModeLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	dir += strings.Repeat("x", 95-len(dir))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s")
	srv := vhost.NewServer(vhosttest.NewNullDevice(testFeatures, testVrings), nil)
	srv.SetSocketOptions(vhost.SocketOptions{Mode: 0o600, UID: -1, GID: -1})
	err := srv.Listen(path)
	if err == nil || !strings.Contains(err.Error(), "more than a unix socket path holds") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Listen(%d-byte path) with a mode: %v", len(path), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

// TestPeerCredRefusedFd: an inherited connected socket (--fd) whose peer
// the policy does not admit is refused, logged and closed.
func TestPeerCredRefusedFd(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	logs := &logBuf{}
	srv := vhost.NewServer(vhosttest.NewNullDevice(testFeatures, testVrings), newLogger(logs, hclog.Info))
	srv.SetPeerPolicy(vhost.PeerPolicy{UIDs: []int{os.Geteuid() + 1}})
	err = srv.ServeFd(context.Background(), fds[0])
	if err == nil || !strings.Contains(err.Error(), "refused by the peer policy") {
		t.Fatalf("ServeFd: %v", err)
	}
	if !logs.hasLine("refused front-end", fmt.Sprintf("uid=%d", os.Geteuid()), "pid=") {
		t.Fatalf("no refusal logged:\n%s", logs)
	}
	if n, err := unix.Read(fds[1], make([]byte, 1)); n != 0 || err != nil {
		t.Fatalf("the refused connection is not closed: read %d, %v", n, err)
	}
}

package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

// TestInheritedFd runs the real binary with --fd: a listening socket
// passed as fd 3, as a management layer would. A front-end negotiates over
// it, and SIGTERM ends vhostd with status 0.
func TestInheritedFd(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	bin := buildVhostd(t, dir)
	sock := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // the socket lives on in fd 3
	ln.Close()
	tapName := "vhf" + testutil.Suffix(8)
	cmd := exec.Command(bin, "--fd", "3", "--tap", tapName, "--log-level", "debug")
	cmd.ExtraFiles = []*os.File{lf}
	var log testutil.SyncBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	defer cmd.Process.Kill()

	var fe *vhosttest.FrontEnd
	dialed := func() bool { fe, err = vhosttest.Dial(sock); return err == nil }
	if !testutil.WaitFor(10*time.Second, 50*time.Millisecond, dialed) {
		t.Fatalf("dial: %v\n%s", err, log.String())
	}
	f, err := fe.GetU64(vhost.ReqGetFeatures)
	if err != nil {
		t.Fatalf("GET_FEATURES over the inherited fd: %v\n%s", err, log.String())
	}
	if f&(1<<32) == 0 {
		t.Fatalf("features %#x lack VERSION_1", f)
	}
	fe.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit0(t, cmd, &log)
	if _, err := net.InterfaceByName(tapName); err == nil {
		t.Fatalf("TAP %s left behind", tapName)
	}
}

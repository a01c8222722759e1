package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

// TestSandboxedReattach: the real binary, sandboxed as by default (seccomp
// kill, capabilities dropped), serving a front-end whose TAP is deleted and
// created again: vhostd survives, reattaches (with the XDP program moved to
// the new interface when --xdp is on) and exits 0 on SIGTERM (BAD-INPUTS 51).
func TestSandboxedReattach(t *testing.T) {
	privtest.Require(t)
	bin := buildVhostd(t, t.TempDir())
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"tap", nil},
		{"tap-xdp", []string{"--xdp", "count"}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkReattach(t, bin, tc.flags) })
	}
}

func checkReattach(t *testing.T, bin string, flags []string) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	name := "vhx" + testutil.Suffix(8)
	addTAP := func() {
		if out, err := exec.Command("ip", "tuntap", "add", "dev", name, "mode", "tap", "multi_queue").CombinedOutput(); err != nil {
			t.Fatalf("ip tuntap add %s: %v: %s", name, err, out)
		}
	}
	addTAP()
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	cmd := exec.Command(bin, append([]string{"--socket-path", sock, "--tap", name, "--log-level", "debug"}, flags...)...)
	var log testutil.SyncBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	fe := dialVhostd(t, sock, &log)
	defer fe.Close()
	if err := fe.Start(^uint64(0), ^uint64(0), 2, 256, vhosttest.Layout{Size: 16 << 20}); err != nil {
		t.Fatalf("start: %v\n%s", err, log.String())
	}
	waitLog := func(what string) {
		t.Helper()
		if !testutil.WaitFor(10*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(log.String(), what) }) {
			select {
			case <-exited:
				t.Fatalf("vhostd exited (%v) waiting for %q:\n%s", cmd.ProcessState, what, log.String())
			default:
			}
			t.Fatalf("no %q in the log:\n%s", what, log.String())
		}
	}
	if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v: %s", err, out)
	}
	waitLog("host interface queue gone")
	addTAP()
	waitLog("host interface back: queues reattached")
	if len(flags) > 0 {
		out, _ := exec.Command("ip", "link", "show", "dev", name).CombinedOutput()
		if !strings.Contains(string(out), "xdp") {
			t.Errorf("no XDP program on the reattached TAP: %s\n%s", out, log.String())
		}
	}
	fe.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("vhostd did not exit on SIGTERM:\n%s", log.String())
	}
	if st := cmd.ProcessState; st == nil || !st.Success() {
		t.Fatalf("vhostd exit: %v\n%s", st, log.String())
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after exit: %v", err)
	}
}

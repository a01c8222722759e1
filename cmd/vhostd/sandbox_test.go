package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

func TestSandboxFlagErrors(t *testing.T) {
	base := []string{"--socket-path", "s", "--tap", "a"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--seccomp", "strict"}, `--seccomp "strict"`},
		{[]string{"--runas", "no-such-user-x9"}, "--runas"},
		{[]string{"--runas", "root"}, "uid 0"},
		{[]string{"--runas", "nobody:"}, "USER:GROUP"},
		{[]string{"--socket-mode", "0999"}, "--socket-mode"},
		{[]string{"--socket-mode", "01777"}, "--socket-mode"},
		{[]string{"--socket-mode", "0"}, "--socket-mode"},
		{[]string{"--socket-group", "no-such-group-x9"}, "--socket-group"},
		{[]string{"--allow-uid", "0,x"}, `--allow-uid "0,x"`},
		{[]string{"--allow-gid", "-1"}, "--allow-gid"},
		{[]string{"--client", "--socket-mode", "0600"}, "--socket-mode and --socket-group apply"},
	} {
		var out, errb bytes.Buffer
		args := append(append([]string{}, base...), tc.args...)
		rc := run(args, &out, &errb)
		if rc != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 mentioning %q", args, rc, errb.String(), tc.want)
		}
	}
	o, err := parseFlags(append(base, "--socket-mode", "0660", "--socket-group", "0", "--allow-uid", "0,107", "--allow-gid", "36"), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	s := o.sandbox
	if s.sock.Mode != 0o660 || s.sock.GID != 0 || s.sock.UID != -1 || len(s.peers.UIDs) != 2 || s.peers.UIDs[1] != 107 || s.peers.GIDs[0] != 36 {
		t.Fatalf("parsed %+v %+v", s.sock, s.peers)
	}
}

// procStatus returns the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

// TestSandboxedVhostd runs the real binary against a TAP with the default
// flags (--seccomp kill), and with --runas nobody: a front-end negotiates,
// maps memory, starts two rings and changes the MTU (CAP_NET_ADMIN kept);
// /proc/PID/status shows only CAP_NET_ADMIN, NoNewPrivs 1, Seccomp 2
// (and uid nobody); SIGTERM ends it with status 0, the socket removed.
func TestSandboxedVhostd(t *testing.T) {
	privtest.Require(t)
	bin := buildVhostd(t, t.TempDir())
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("deny 10.99.0.0/16\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(acl), 0o755)
	xdp := []string{"--xdp", "guard", "--mac", "52:54:00:12:34:56", "--xdp-guard-addrs", "10.98.0.2", "--xdp-acl", acl}
	for _, tc := range []struct {
		name  string
		flags []string
		uid   string
	}{
		{"root", []string{"--socket-mode", "0600"}, "0 0 0 0"},
		{"runas-nobody", []string{"--runas", "nobody", "--socket-mode", "0660", "--socket-group", "0"}, "65534 65534 65534 65534"},
		{"xdp-guard", xdp, "0 0 0 0"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkSandboxed(t, bin, tc.flags, tc.uid) })
	}
}

// checkSignals: SIGUSR1 prints the counters (with XDP's), SIGHUP re-reads
// the ACL (map updates after the sandbox).
func checkSignals(t *testing.T, cmd *exec.Cmd, log *testutil.SyncBuffer, xdp bool) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGUSR1)
	want := []string{"queue 0:"}
	if xdp {
		cmd.Process.Signal(syscall.SIGHUP)
		want = append(want, "xdp: ", "ACL reloaded")
	}
	for _, w := range want {
		if !testutil.WaitFor(5*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(log.String(), w) }) {
			t.Errorf("no %q in the log after SIGUSR1/SIGHUP:\n%s", w, log.String())
		}
	}
}

func checkSandboxed(t *testing.T, bin string, flags []string, wantUid string) {
	// A sticky world-writable directory, like /tmp: the socket's owner
	// (nobody with --runas) may remove it at exit.
	dir, err := os.MkdirTemp("", "vhostd-sandbox-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o1777)
	sock := filepath.Join(dir, "s")
	tapName := "vhs" + testutil.Suffix(8)
	cmd, log, fe := serveVhostd(t, bin, sock, ^uint64(0), append([]string{"--tap", tapName, "--log-level", "debug"}, flags...)...)
	if ack, err := fe.Ack(vhost.ReqNetSetMTU, vhosttest.U64(1400)); err != nil || ack != 0 {
		t.Fatalf("NET_SET_MTU: ack %d, %v\n%s", ack, err, log.String())
	}
	if ifi, err := net.InterfaceByName(tapName); err != nil || ifi.MTU != 1400 {
		t.Fatalf("TAP after NET_SET_MTU 1400: %+v %v", ifi, err)
	}
	checkSignals(t, cmd, log, slices.Contains(flags, "--xdp"))
	st := procStatus(t, cmd.Process.Pid)
	netAdmin := fmt.Sprintf("%016x", uint64(1)<<unix.CAP_NET_ADMIN)
	for k, want := range map[string]string{
		"Uid": wantUid, "CapEff": netAdmin, "CapPrm": netAdmin, "CapBnd": netAdmin,
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
	} {
		if st[k] != want {
			t.Errorf("/proc/PID/status %s: %q, want %q", k, st[k], want)
		}
	}
	fe.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit0(t, cmd, log)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after exit: %v\n%s", err, log.String())
	}
}

// dialVhostd connects a front-end to a vhostd starting up at sock.
func dialVhostd(t *testing.T, sock string, log *testutil.SyncBuffer) *vhosttest.FrontEnd {
	t.Helper()
	var fe *vhosttest.FrontEnd
	var err error
	dialed := func() bool { fe, err = vhosttest.Dial(sock); return err == nil }
	if !testutil.WaitFor(10*time.Second, 50*time.Millisecond, dialed) {
		t.Fatalf("dial: %v\n%s", err, log.String())
	}
	return fe
}

// TestSandboxedClient: vhostd --client (root, no --runas) connects to a
// front-end socket owned by nobody with mode 0755, as libvirt's
// mode='server' socket is, and reconnects to it after the sandbox: it
// keeps CAP_DAC_OVERRIDE for that, and only that beyond CAP_NET_ADMIN.
// Before, the sandboxed vhostd got "connect: permission denied".
func TestSandboxedClient(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	bin := buildVhostd(t, dir)
	sock := filepath.Join(dir, "qemu.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chown(sock, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o755)
	tapName := "vhc" + testutil.Suffix(8)
	cmd := exec.Command(bin, "--client", "--socket-path", sock, "--tap", tapName, "--reconnect", "100ms")
	var log testutil.SyncBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for i := 0; i < 2; i++ { // the first connection, then a reconnection
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Fatalf("connection %d: %v\n%s", i, err, log.String())
		}
		fe := vhosttest.New(c)
		if _, err := fe.GetU64(vhost.ReqGetFeatures); err != nil {
			t.Fatalf("connection %d: GET_FEATURES: %v\n%s", i, err, log.String())
		}
		fe.Close()
	}
	st := procStatus(t, cmd.Process.Pid)
	want := fmt.Sprintf("%016x", uint64(1)<<unix.CAP_NET_ADMIN|1<<unix.CAP_DAC_OVERRIDE)
	if st["CapEff"] != want || st["CapPrm"] != want || st["Seccomp"] != "2" {
		t.Errorf("CapEff %s CapPrm %s Seccomp %s, want %s %s 2", st["CapEff"], st["CapPrm"], st["Seccomp"], want, want)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit0(t, cmd, &log)
}

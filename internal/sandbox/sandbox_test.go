package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// childEnv makes the test binary a child that applies the sandbox
// ("MODE:CALL": the --seccomp mode), prints its /proc/self/status lines,
// starts new threads, and then makes CALL (see forbidden).
const childEnv = "SANDBOX_TEST_CHILD"

// forbidden are calls the allow-list refuses; each prints "survived" if it
// returns.
var forbidden = map[string]func() error{
	"sysinfo": func() error { var si unix.Sysinfo_t; return unix.Sysinfo(&si) },
	"netlink": func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err == nil {
			unix.Close(fd)
		}
		return err
	},
	"newuser": func() error {
		pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if e == 0 && pid == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0) // the new process ends at once
		}
		return errnoErr(e)
	},
	// Allowed only with Config.IOURing; on fd -1 it fails with EBADF.
	"io_uring_enter": func() error {
		_, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, ^uintptr(0), 0, 0, 0, 0, 0)
		return errnoErr(e)
	},
	"clone3": func() error {
		_, _, e := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
		return errnoErr(e)
	},
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

func child(arg string) int {
	mode, call, _ := strings.Cut(arg, ":")
	mode, uring := strings.CutSuffix(mode, "+uring")
	m, err := ParseSeccompMode(mode)
	if err != nil {
		fmt.Println(err)
		return 3
	}
	if err := Apply(Config{Keep: []cap.Value{cap.NET_ADMIN}, Seccomp: m, IOURing: uring}); err != nil {
		fmt.Println(err)
		return 3
	}
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Println(err)
		return 3
	}
	fmt.Print(string(st))
	newThreads()
	fmt.Println("threads started")
	if f := forbidden[call]; f != nil {
		fmt.Printf("survived %s: %v\n", call, f())
	}
	return 0
}

// newThreads makes the runtime start OS threads under the filter: each
// locked goroutine that exits takes its thread along, so the next one needs
// a new thread.
func newThreads() {
	for i := 0; i < 4; i++ {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(done)
		}()
		<-done
	}
	time.Sleep(10 * time.Millisecond)
}

func runChild(t *testing.T, mode string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.Output()
	return string(out), err
}

func statusField(status, key string) string {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestSeccompKillStopsForbiddenCall: with --seccomp kill, a call outside
// the allow-list kills the process with SIGSYS before it returns.
func TestSeccompKillStopsForbiddenCall(t *testing.T) {
	out, err := runChild(t, "kill:sysinfo")
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("child: %v, want death by SIGSYS; output:\n%s", err, out)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Fatalf("child ended with %v, want SIGSYS; output:\n%s", ws, out)
	}
	if strings.Contains(out, "survived") {
		t.Fatalf("the forbidden call returned:\n%s", out)
	}
	if got := statusField(out, "Seccomp"); got != "2" {
		t.Errorf("Seccomp: %q, want 2", got)
	}
	if got := statusField(out, "NoNewPrivs"); got != "1" {
		t.Errorf("NoNewPrivs: %q, want 1", got)
	}
}

// TestSeccompLogLetsCallThrough: --seccomp log installs the filter but a
// call outside the list proceeds.
func TestSeccompLogLetsCallThrough(t *testing.T) {
	out, err := runChild(t, "log:sysinfo")
	if err != nil {
		t.Fatalf("child: %v; output:\n%s", err, out)
	}
	if !strings.Contains(out, "survived sysinfo: <nil>") {
		t.Fatalf("sysinfo did not go through:\n%s", out)
	}
	if got := statusField(out, "Seccomp"); got != "2" {
		t.Errorf("Seccomp: %q, want 2", got)
	}
}

// TestCapabilitiesDropped: after Apply, a root process keeps only the
// capabilities asked for, in every set; the inheritable and ambient sets
// are empty.
func TestCapabilitiesDropped(t *testing.T) {
	if os.Geteuid() != 0 {
		privtest.Missing(t, "needs root (euid %d)", os.Geteuid())
	}
	out, err := runChild(t, "off:")
	if err != nil {
		t.Fatalf("child: %v; output:\n%s", err, out)
	}
	want := fmt.Sprintf("%016x", uint64(1)<<cap.NET_ADMIN)
	for k, v := range map[string]string{
		"CapEff": want, "CapPrm": want, "CapBnd": want,
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "0",
	} {
		if got := statusField(out, k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

// TestSeccompArguments: the filter looks at arguments: a netlink socket
// and a clone that makes a user namespace are killed; clone3 fails with
// ENOSYS (so glibc falls back to clone); new threads start (the child
// prints "threads started" after the filter is on).
func TestSeccompArguments(t *testing.T) {
	for _, call := range []string{"netlink", "newuser"} {
		out, err := runChild(t, "kill:"+call)
		ee, ok := err.(*exec.ExitError)
		if !ok || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGSYS {
			t.Errorf("%s: child ended with %v, want SIGSYS; output:\n%s", call, err, out)
		}
		if !strings.Contains(out, "threads started") || strings.Contains(out, "survived") {
			t.Errorf("%s: output:\n%s", call, out)
		}
	}
	out, err := runChild(t, "kill:clone3")
	if err != nil || !strings.Contains(out, "survived clone3: function not implemented") {
		t.Errorf("clone3: %v, output:\n%s", err, out)
	}
}

func TestParseSeccompMode(t *testing.T) {
	for _, s := range []string{"kill", "log", "off"} {
		m, err := ParseSeccompMode(s)
		if err != nil || m.String() != s {
			t.Errorf("%q: %v %v", s, m, err)
		}
	}
	if _, err := ParseSeccompMode("strict"); err == nil || !strings.Contains(err.Error(), `--seccomp "strict"`) {
		t.Errorf("strict: %v", err)
	}
}

func TestParseRunAs(t *testing.T) {
	id, err := ParseRunAs("nobody")
	if err != nil {
		t.Fatal(err)
	}
	if id.UID != 65534 {
		t.Errorf("nobody: uid %d", id.UID)
	}
	if id, err = ParseRunAs("nobody:0"); err != nil || id.GID != 0 {
		t.Errorf("nobody:0: %+v %v", id, err)
	}
	for _, bad := range []string{"", ":", "nobody:", "root", "0", "no-such-user-x9", "nobody:no-such-group-x9", "nobody:-1"} {
		if _, err := ParseRunAs(bad); err == nil || !strings.Contains(err.Error(), "--runas") {
			t.Errorf("ParseRunAs(%q): %v, want an error naming --runas", bad, err)
		}
	}
}

// TestSeccompIOURing: io_uring_enter is outside the allow-list unless
// Config.IOURing (--tap-write uring) adds it.
func TestSeccompIOURing(t *testing.T) {
	out, err := runChild(t, "kill:io_uring_enter")
	ee, ok := err.(*exec.ExitError)
	if !ok || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGSYS {
		t.Errorf("without IOURing: child ended with %v, want SIGSYS; output:\n%s", err, out)
	}
	out, err = runChild(t, "kill+uring:io_uring_enter")
	if err != nil || !strings.Contains(out, "survived io_uring_enter: bad file descriptor") {
		t.Errorf("with IOURing: %v, output:\n%s", err, out)
	}
}

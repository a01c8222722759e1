package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/control"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
)

// TestSandboxedTAPWrite runs the real binary under the default sandbox
// (--seccomp kill) with --tap-write uring and auto: guest TX frames reach
// the TAP (its rx_packets count them), the process survives its
// io_uring_enter calls, and /status reports the mode and how it was chosen
// (auto: a calibration, with its figures, logged once).
func TestSandboxedTAPWrite(t *testing.T) {
	privtest.Require(t)
	bin := buildVhostd(t, t.TempDir())
	for _, mode := range []string{"uring", "auto"} {
		t.Run(mode, func(t *testing.T) { checkTAPWrite(t, bin, mode) })
	}
}

func checkTAPWrite(t *testing.T, bin, mode string) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	tapName := "vhw" + testutil.Suffix(8)
	cmd, log, fe := serveVhostd(t, bin, sock, ^uint64(0), "--tap", tapName, "--log-level", "debug", "--tap-write", mode)
	const n = 200
	tx := fe.Ring(1).Driver
	sent := 0
	for sent < n {
		for k := 0; k < 50; k++ {
			frame := testutil.TaggedFrame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, net.HardwareAddr{2, 0, 0, 0, 0, 1}, "tw", uint32(sent+k), 60)
			if _, err := tx.AddChain([][]byte{make([]byte, 12), frame}, nil); err != nil {
				t.Fatal(err)
			}
		}
		tx.Publish()
		fe.Kick(1)
		got := 0
		if !testutil.WaitFor(10*time.Second, time.Millisecond, func() bool { got += len(tx.UsedAll()); return got == 50 }) {
			t.Fatalf("%d of 50 TX chains returned\n%s", got, log.String())
		}
		sent += 50
	}
	rx := func() int {
		b, _ := os.ReadFile("/sys/class/net/" + tapName + "/statistics/rx_packets")
		v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return v
	}
	if !testutil.WaitFor(5*time.Second, 10*time.Millisecond, func() bool { return rx() >= n }) {
		t.Fatalf("the TAP received %d frames, want %d\n%s", rx(), n, log.String())
	}
	st := getStatus(t, sock+".ctl")
	if st.TAPWrite.Mode != "uring" && mode == "uring" || st.TAPWrite.Mode != "uring" && st.TAPWrite.Mode != "write" {
		t.Fatalf("status tap_write %+v with --tap-write %s", st.TAPWrite, mode)
	}
	if mode == "auto" {
		if st.TAPWrite.By != "calibration" || st.TAPWrite.WriteNs <= 0 || st.TAPWrite.UringNs <= 0 ||
			!strings.Contains(log.String(), "TAP write mode chosen by calibration") {
			t.Fatalf("status tap_write %+v; log:\n%s", st.TAPWrite, log.String())
		}
		t.Logf("auto chose %+v", st.TAPWrite)
	}
	if s := procStatus(t, cmd.Process.Pid)["Seccomp"]; s != "2" {
		t.Fatalf("Seccomp %q, want 2 (the default filter)", s)
	}
	fe.Close()
	cmd.Process.Signal(os.Interrupt)
	waitExit0(t, cmd, log)
}

// getStatus reads GET /status from the control socket at path.
func getStatus(t *testing.T, path string) control.StatusReply {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
	resp, err := c.Get("http://vhostd/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st control.StatusReply
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

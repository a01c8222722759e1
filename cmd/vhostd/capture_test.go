package main

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/pcapng"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/netdev"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

// pcapFrames reads a capture file with gopacket's pcapng reader: each
// frame's bytes and comments.
func pcapFrames(t *testing.T, path string) (frames [][]byte, comments []string) {
	t.Helper()
	fs, err := pcapng.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		frames = append(frames, f.Data)
		comments = append(comments, strings.Join(f.Comments, " | "))
	}
	return frames, comments
}

// serveVhostd runs bin with args (after --socket-path sock), connects a
// front-end and starts two rings of 256 with features; cleanup closes the
// front-end and kills vhostd if it still runs.
func serveVhostd(t *testing.T, bin, sock string, features uint64, args ...string) (*exec.Cmd, *testutil.SyncBuffer, *vhosttest.FrontEnd) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--socket-path", sock}, args...)...)
	log := &testutil.SyncBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	fe := dialVhostd(t, sock, log)
	t.Cleanup(func() { fe.Close() })
	if err := fe.Start(features, ^uint64(0), 2, 256, vhosttest.Layout{Size: 16 << 20}); err != nil {
		t.Fatalf("start: %v\n%s", err, log.String())
	}
	return cmd, log, fe
}

// guestSend has the guest transmit frame on queue pair 0.
func guestSend(t *testing.T, fe *vhosttest.FrontEnd, frame []byte) {
	t.Helper()
	tx := fe.Ring(1).Driver
	if _, err := tx.AddChain([][]byte{make([]byte, 12), frame}, nil); err != nil {
		t.Fatal(err)
	}
	tx.Publish()
	fe.Kick(1)
}

// waitFrames waits until the guest got back n TX chains.
func waitTXDone(t *testing.T, fe *vhosttest.FrontEnd, n int) {
	t.Helper()
	got := 0
	if !testutil.WaitFor(5*time.Second, 10*time.Millisecond, func() bool { got += len(fe.Ring(1).Driver.UsedAll()); return got >= n }) {
		t.Fatalf("%d TX chains returned, want %d", got, n)
	}
}

// TestCtlPcap runs the real binary (sandboxed, as by default) with --pcap
// and drives "vhostd ctl pcap": a second start and a stop with none
// running fail naming why, an unwritable path fails naming it, a relative
// FILE is taken from ctl's directory; each file opens with pcapgo and
// holds the frame the guest sent while it ran, byte for byte.
func TestCtlPcap(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	bin := buildVhostd(t, dir)
	sock, tapName := filepath.Join(dir, "s"), "vhp"+testutil.Suffix(8)
	first, second := filepath.Join(dir, "first.pcapng"), filepath.Join(dir, "second.pcapng")
	cmd, log, fe := serveVhostd(t, bin, sock, ^uint64(0), "--tap", tapName, "--pcap", first)
	ctlRun := func(wantOK bool, want string, args ...string) {
		t.Helper()
		c := exec.Command(bin, append([]string{"ctl", "--socket-path", sock, "pcap"}, args...)...)
		c.Dir = dir
		out, err := c.CombinedOutput()
		if (err == nil) != wantOK || !strings.Contains(string(out), want) {
			t.Fatalf("vhostd ctl pcap %q: %v, output %q; want ok=%v and %q\n%s", args, err, out, wantOK, want, log.String())
		}
	}
	one, two := testutil.PatternFrame(90, 1), testutil.PatternFrame(120, 2)
	guestSend(t, fe, one)
	waitTXDone(t, fe, 1)
	ctlRun(true, "capturing to "+first)
	if out, err := exec.Command(bin, "ctl", "--socket-path", sock, "status").CombinedOutput(); err != nil || !regexp.MustCompile(`(?m)^capture: +`+regexp.QuoteMeta(first)+`$`).Match(out) {
		t.Errorf("vhostd ctl status: %v\n%s", err, out)
	}
	ctlRun(false, "a capture is already running (to "+first+")", "start", second)
	ctlRun(true, "capture stopped", "stop")
	ctlRun(false, "pcap stop: no capture is running", "stop")
	bad := filepath.Join(dir, "no-such-dir", "x.pcapng")
	ctlRun(false, bad, "start", bad)
	ctlRun(true, "capturing to "+second, "start", "second.pcapng")
	guestSend(t, fe, two)
	waitTXDone(t, fe, 1)
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit0(t, cmd, log)
	for _, c := range []struct {
		path  string
		frame []byte
	}{{first, one}, {second, two}} {
		frames, comments := pcapFrames(t, c.path)
		if len(frames) != 1 || !bytes.Equal(frames[0], c.frame) || !strings.HasPrefix(comments[0], "vnet hdr: flags=none gso_type=none") {
			t.Errorf("%s: %d frames %x, comments %q; want the guest's one frame %x", c.path, len(frames), frames, comments, c.frame)
		}
	}
}

// TestCtlPcapUsage: pcap's arguments are checked before the socket is
// reached (exit 2), and so is --pcap-snaplen.
func TestCtlPcapUsage(t *testing.T) {
	for _, n := range []string{"10", "70000"} {
		var out, errb bytes.Buffer
		if rc := run([]string{"--socket-path", "s", "--tap", "a", "--pcap-snaplen", n}, &out, &errb); rc != 2 || !strings.Contains(errb.String(), "--pcap-snaplen "+n) {
			t.Errorf("--pcap-snaplen %s: exit %d, stderr %q", n, rc, errb.String())
		}
	}
	for _, args := range [][]string{
		{"pcap", "start"}, {"pcap", "start", "a", "b"}, {"pcap", "stop", "now"}, {"pcap", "pause"}, {"pcap", "--watch"},
	} {
		if _, errs := ctl(t, 2, append([]string{"--control-socket", "x"}, args...)...); !strings.Contains(errs, "pcap") {
			t.Errorf("%q: stderr %q", args, errs)
		}
	}
}

// TestPcapRecordsDrops (issue 16's acceptance): the real binary with the
// XDP guard and --pcap records a frame the guard dropped (a spoofed source
// MAC: vhostd's write succeeded, the guard's ring buffer reported it) and
// one vhostd dropped as oversize, each with its reason, next to a frame
// that went through; the file opens with pcapgo and the bytes match.
func TestPcapRecordsDrops(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	bin := buildVhostd(t, dir)
	sock, tapName, file := filepath.Join(dir, "s"), "vhd"+testutil.Suffix(8), filepath.Join(dir, "drops.pcapng")
	const mac = "52:54:00:12:34:56"
	// No host segmentation offload: the largest TX frame is 1518 bytes.
	noTSO := uint64(1)<<netdev.FHostTSO4 | 1<<netdev.FHostTSO6 | 1<<netdev.FHostUFO | 1<<netdev.FHostUSO
	cmd, log, fe := serveVhostd(t, bin, sock, ^noTSO, "--tap", tapName, "--xdp", "guard", "--mac", mac,
		"--xdp-guard-addrs", "10.98.0.2", "--pcap", file)
	if out, err := exec.Command("ip", "link", "set", "dev", tapName, "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s up: %v %s", tapName, err, out)
	}
	guestMAC, _ := net.ParseMAC(mac)
	other, _ := net.ParseMAC("52:54:00:99:99:99")
	frame := func(src net.HardwareAddr, n int, fill byte) []byte {
		f := append(append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src...), 0x88, 0xb5) // local experimental ethertype
		return append(f, bytes.Repeat([]byte{fill}, n-len(f))...)
	}
	good, spoofed, big := frame(guestMAC, 80, 1), frame(other, 90, 2), frame(guestMAC, 1600, 3)
	for _, f := range [][]byte{good, spoofed, big} {
		guestSend(t, fe, f)
	}
	waitTXDone(t, fe, 3)
	dropped := func(n int) func() bool {
		return func() bool {
			out, _ := exec.Command(bin, "ctl", "--socket-path", sock, "stats").CombinedOutput()
			return strings.Contains(string(out), fmt.Sprintf("xdp_guard_drop_src_mac=%d", n))
		}
	}
	if !testutil.WaitFor(5*time.Second, 20*time.Millisecond, dropped(1)) {
		t.Fatalf("the guard did not drop the spoofed frame\n%s", log.String())
	}
	// A capture started through ctl, after the sandbox, reads the guard's
	// reports too.
	again := filepath.Join(dir, "again.pcapng")
	for _, args := range [][]string{{"stop"}, {"start", again}} {
		if out, err := exec.Command(bin, append([]string{"ctl", "--socket-path", sock, "pcap"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ctl pcap %q: %v %s\n%s", args, err, out, log.String())
		}
	}
	guestSend(t, fe, spoofed)
	waitTXDone(t, fe, 1)
	if !testutil.WaitFor(5*time.Second, 20*time.Millisecond, dropped(2)) {
		t.Fatalf("the guard did not drop the second spoofed frame\n%s", log.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitExit0(t, cmd, log)
	checkCapture(t, file, map[string][]byte{"": good, "dropped: xdp guard src_mac": spoofed, "dropped: tx_oversize": big})
	checkCapture(t, again, map[string][]byte{"dropped: xdp guard src_mac": spoofed})
}

// checkCapture checks that file holds each frame of want with its reason
// ("": not dropped) as the last comment.
func checkCapture(t *testing.T, file string, want map[string][]byte) {
	t.Helper()
	frames, comments := pcapFrames(t, file)
	for reason, f := range want {
		found := false
		for i := range frames {
			if bytes.Equal(frames[i], f) && (reason == "" && !strings.Contains(comments[i], "dropped") || reason != "" && strings.HasSuffix(comments[i], reason)) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no frame of %d bytes with %q: %d frames, comments %q", file, len(f), reason, len(frames), comments)
		}
	}
}

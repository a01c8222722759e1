package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vhostd/vhostd/busypoll"
	"github.com/vhostd/vhostd/internal/control"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/netdev"
)

// ctlDevice is a control.Device with fixed figures, except tx_packets,
// which grows by 100 at every read.
type ctlDevice struct{ tx atomic.Uint64 }

func (d *ctlDevice) Status() netdev.Status {
	return netdev.Status{Interface: "vhc-t", Kind: "tap", MTU: 1500, QueuePairs: 1,
		Offered: 1<<32 | 1<<15, Acked: 1 << 32, Pairs: []netdev.PairStatus{{
			RX: netdev.RingStatus{Index: 0, Size: 256, State: "enabled"}, TX: netdev.RingStatus{Index: 1, Size: 256, State: "broken"}, TAPGone: true}}}
}

func (d *ctlDevice) Stats() []netdev.QueueStats {
	return []netdev.QueueStats{{Values: map[string]uint64{
		"rx_packets": 3, "rx_bytes": 180, "tx_packets": d.tx.Add(100), "tx_oversize": 2, "tx_queue_broken": 1, "tap_gone": 1, "kicks": 9}}}
}

func (d *ctlDevice) WorkerStats() []*busypoll.Stats {
	return []*busypoll.Stats{{Polls: 20, Work: 5, Sleeps: 4}}
}

// ctlServer serves a ctlDevice on a fresh control socket.
func ctlServer(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "v-"+testutil.Suffix(6)+".ctl")
	s := control.New(control.Config{Device: &ctlDevice{}, Version: "vhostd test", Mode: "client", Socket: "/run/q.sock"})
	if err := s.ListenUnix(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return path
}

func ctl(t *testing.T, want int, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if rc := run(append([]string{"ctl"}, args...), &out, &errb); rc != want {
		t.Fatalf("vhostd ctl %q: exit %d, want %d; stderr %q", args, rc, want, errb.String())
	}
	return out.String(), errb.String()
}

// mustMatch fails unless text has a line matching each pattern (runs of
// spaces in a pattern match any run of spaces).
func mustMatch(t *testing.T, text string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		re := regexp.MustCompile("(?m)^" + regexp.MustCompile(` +`).ReplaceAllString(regexp.QuoteMeta(p), ` +`) + "$")
		if !re.MatchString(text) {
			t.Errorf("no line %q in:\n%s", p, text)
		}
	}
}

func TestCtlStatus(t *testing.T) {
	path := ctlServer(t)
	out, _ := ctl(t, 0, "--control-socket", path, "status")
	mustMatch(t, out,
		"version: vhostd test",
		"vhost-user: client /run/q.sock",
		"interface: vhc-t (tap, mtu 1500)",
		"queue pairs: 1",
		"features: 0x100000000 VERSION_1",
		"xdp: off",
		"QUEUE RX RING SIZE STATE TX RING SIZE STATE HOST QUEUE",
		"0 0 256 enabled 1 256 broken gone")
}

func TestCtlStats(t *testing.T) {
	path := ctlServer(t)
	// --socket-path finds the socket next to it; flags may follow the command.
	out, _ := ctl(t, 0, "--socket-path", strings.TrimSuffix(path, ".ctl"), "stats")
	mustMatch(t, out,
		" QUEUE RX FRAMES RX BYTES RX/S TX FRAMES TX BYTES TX/S DROPPED KICKS CALLS",
		" 0 3 180 - 100 0 - 2 9 0",
		"queue 0: tx_oversize=2 tx_queue_broken=1 tap_gone=1 (the host interface queue is gone)",
		" QUEUE POLLS WORK IDLE ROUNDS SLEEPS ARM PENDING WAKEUPS CTL WAKES",
		" 0 20 5 0 4 0 0 0")
}

// TestCtlStatsWatch: --watch refreshes (here twice) and shows rates from
// the second refresh on.
func TestCtlStatsWatch(t *testing.T) {
	path := ctlServer(t)
	out, _ := ctl(t, 0, "--control-socket", path, "stats", "--watch", "--interval", "50ms", "--count", "2")
	if n := strings.Count(out, "RX FRAMES"); n != 2 {
		t.Fatalf("%d refreshes, want 2:\n%s", n, out)
	}
	second := out[strings.LastIndex(out, "RX FRAMES"):]
	if !regexp.MustCompile(`(?m)^ +0 +3 +180 +0 +200 +0 +[1-9][0-9]* +2 `).MatchString(second) {
		t.Fatalf("second refresh has no TX rate:\n%s", second)
	}
}

func TestCtlMetrics(t *testing.T) {
	out, _ := ctl(t, 0, "--control-socket", ctlServer(t), "metrics")
	mustMatch(t, out, `vhostd_frames_total{queue="0",direction="tx"} 100`, `vhostd_worker_sleeps_total{queue="0"} 4`)
}

func TestCtlErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.ctl")
	if _, errs := ctl(t, 1, "--control-socket", missing, "status"); !strings.Contains(errs, missing) {
		t.Errorf("unreachable socket: stderr %q does not name %s", errs, missing)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--control-socket", "x"}, "no command"},
		{[]string{"--control-socket", "x", "reboot"}, `unknown command "reboot"`},
		{[]string{"status"}, "one of --control-socket PATH or --socket-path PATH"},
		{[]string{"--control-socket", "x", "--socket-path", "y", "status"}, "one of --control-socket"},
		{[]string{"--control-socket", "x", "stats", "--interval", "0s"}, "--interval 0s"},
		{[]string{"--control-socket", "x", "stats", "now"}, "unexpected arguments"},
		{[]string{"--bogus", "status"}, "flag provided but not defined: -bogus"},
	} {
		if _, errs := ctl(t, 2, tc.args...); !strings.Contains(errs, tc.want) {
			t.Errorf("%q: stderr %q, want %q", tc.args, errs, tc.want)
		}
	}
	if out, _ := ctl(t, 0, "--help"); !strings.Contains(out, "Commands:") {
		t.Errorf("ctl --help: %q", out)
	}
}

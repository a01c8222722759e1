package qemutests

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSandboxedGuest: vhostd with --runas nobody (through
// VHOSTD_TEST_EXTRA_FLAGS, as the whole suite can be run) and the default
// --seccomp kill serves a guest: pings both ways, per-queue counters on
// SIGUSR1; /proc/PID/status shows uid nobody, only CAP_NET_ADMIN,
// NoNewPrivs 1, Seccomp 2; SIGTERM ends it with status 0, socket and TAP
// removed.
func TestSandboxedGuest(t *testing.T) {
	t.Setenv("VHOSTD_TEST_EXTRA_FLAGS", "--runas nobody")
	b := StartBed(t, BedConfig{Guest: guestOpts(PingBothWays)})
	b.CheckPingBothWays(0)
	if st := b.Stats(1); st[0]["tx_packets"] == 0 || st[0]["rx_packets"] == 0 {
		t.Errorf("counters after pings both ways: %v", st[0])
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.Vhostd.PID()))
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			status[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	const netAdmin = "0000000000001000"
	for k, want := range map[string]string{
		"Uid": "65534 65534 65534 65534", "CapEff": netAdmin, "CapPrm": netAdmin, "CapBnd": netAdmin,
		"CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
	} {
		if status[k] != want {
			t.Errorf("vhostd /proc/PID/status %s: %q, want %q", k, status[k], want)
		}
	}
	b.WaitExit()
	start := time.Now()
	if err := b.Vhostd.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	err = waitExit(b.Vhostd, 2*time.Second)
	b.checkTermExit(t, err, time.Since(start))
}

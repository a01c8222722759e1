package qemutests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// TestGuestBoots proves the harness without vhostd: a guest with no network device boots,
// its /init runs the script and the guest powers off.
func TestGuestBoots(t *testing.T) {
	Gate(t)
	ctx := Context(t, 3*guest.BootTimeout)
	g := StartGuest(t, guest.Options{Script: `
echo "BOOT hello uname=$(uname -r)"
echo "BOOT ifaces=$(ls /sys/class/net | tr '\n' ' ')"
if [ -x /sbin/ethtool ]; then echo "BOOT ethtool=$(ethtool --version 2>&1 | head -n 1)"; else echo "BOOT ethtool=none"; fi
exit 3
`})
	rest, err := g.WaitMarker(ctx, "INIT ")
	if err != nil {
		t.Fatalf("init marker: %v", err)
	}
	want, _ := os.ReadFile(filepath.Join(guest.CacheDir(), "VERSION"))
	if k := regexp.MustCompile(`kernel=(\S+)`).FindStringSubmatch(rest); k == nil || k[1] != strings.TrimSpace(string(want)) {
		t.Errorf("INIT line %q: want kernel=%s", rest, strings.TrimSpace(string(want)))
	}
	rc, err := g.WaitScript(ctx)
	if err != nil {
		t.Fatalf("script: %v", err)
	}
	if rc != 3 {
		t.Errorf("script exit status %d, want 3 (passed through from the script)", rc)
	}
	log := g.Log()
	if !strings.Contains(log, "BOOT hello uname=") {
		t.Errorf("script output missing")
	}
	if m := regexp.MustCompile(`BOOT ifaces=(.*)`).FindStringSubmatch(log); m == nil || strings.TrimSpace(m[1]) != "lo" {
		t.Errorf("guest interfaces %q, want only lo (no NIC)", m)
	}
	if _, err := exec.LookPath("ethtool"); err == nil && !regexp.MustCompile(`BOOT ethtool=ethtool version`).MatchString(log) {
		t.Errorf("ethtool does not run in the guest")
	}
	if _, err := g.WaitMarker(ctx, "POWEROFF"); err != nil {
		t.Fatalf("poweroff marker: %v", err)
	}
	if err := g.Wait(ctx); err != nil {
		t.Fatalf("qemu exit: %v", err)
	}
}

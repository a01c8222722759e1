package qemutests

import (
	"os"
	"strings"
	"testing"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// TestJumbo: MTU 9000 offered through VIRTIO_NET_F_MTU (QEMU host_mtu=9000, vhostd --mtu
// 9000): the guest's eth0 comes up with MTU 9000 and the TAP has it too; 8000-byte pings go
// both ways (the host's with DF set: -M do) and a 16 MiB transfer each way keeps its SHA-256.
func TestJumbo(t *testing.T) {
	flows := []Flow{{Port: 5001, MiB: 16}, {ToGuest: true, Port: 5002, MiB: 16}}
	// If the MTU did not come through, the test fails on the NET line; setting it by hand
	// then still shows whether the data path carries 9000-byte frames.
	script := `[ "$(cat /sys/class/net/eth0/mtu)" = 9000 ] || ip link set eth0 mtu 9000` + "\n" +
		"PINGOPTS='-s 8000'\n" + PingBothWays + FlowScript(false, flows...)
	b := StartBed(t, BedConfig{VhostdArgs: []string{"--mtu", "9000"}, NIC: guest.NIC{MTU: 9000},
		Guest: guest.Options{MemoryMiB: 512, Script: script}})
	if net := b.WaitLine(`VHOSTD: NET eth0 (.*)\n`, 0)[1]; !strings.Contains(net, " mtu=9000 ") {
		t.Errorf("guest eth0 came up with %q: want mtu=9000 from VIRTIO_NET_F_MTU", net)
	}
	if mtu, err := os.ReadFile("/sys/class/net/" + b.Tap + "/mtu"); err != nil || strings.TrimSpace(string(mtu)) != "9000" {
		t.Errorf("TAP %s mtu %q (%v), want 9000 (vhostd --mtu 9000)", b.Tap, mtu, err)
	}
	b.CheckPingBothWays(0, "-M", "do", "-s", "8000")
	b.RunFlows(flows...)
	b.WaitExit()
}

package qemutests

import (
	"strings"
	"testing"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// featCsum is VIRTIO_NET_F_CSUM (virtio 1.x section 5.1.3): the device takes partial checksums.
const featCsum = 0

// offloadsOff turns the guest's transmit offloads off (checksum, scatter-gather, TSO, GSO), so
// every frame reaches vhostd whole and with its checksum filled in.
const offloadsOff = "ethtool -K eth0 tx off sg off tso off gso off\n" +
	`ethtool -k eth0 | grep -E '^(tx-checksumming|scatter-gather|tcp-segmentation-offload|generic-segmentation-offload):' | sed 's/^/OFFLOAD /'` + "\n"

// featuresLine prints the negotiated virtio feature bits: "FEAT bits=0101...", bit 0 first.
const featuresLine = "echo \"FEAT bits=$(cat /sys/class/net/eth0/device/features)\"\n"

// TestTransfer sends 64 MiB of random data over TCP guest->host, then host->guest, and checks
// that both ends see the same SHA-256; with vhostd's default offloads and with all of them off
// (vhostd --no-csum, guest ethtool -K ... off). Throughput is logged, never asserted.
func TestTransfer(t *testing.T) {
	flows := []Flow{{Port: 5001, MiB: 64}, {ToGuest: true, Port: 5002, MiB: 64}}
	for _, tc := range []struct {
		name   string
		args   []string
		script string
	}{
		{"offloads=on", nil, ""},
		{"offloads=off", []string{"--no-csum"}, offloadsOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := StartBed(t, BedConfig{VhostdArgs: tc.args, Guest: guest.Options{MemoryMiB: 512,
				Script: featuresLine + tc.script + pingScript + FlowScript(false, flows...)}})
			bits := b.WaitLine(`FEAT bits=(\d*)\n`, 0)[1]
			if want := tc.args == nil; featureSet(bits, featCsum) != want {
				t.Errorf("CSUM negotiated=%v, want %v (features %s)", !want, want, bits)
			}
			b.GuestPinged(0)
			b.RunFlows(flows...)
			if tc.script != "" {
				n := 0
				for _, l := range strings.Split(b.Guest.Log(), "\n") {
					if !strings.HasPrefix(l, "OFFLOAD ") {
						continue
					}
					n++
					if !strings.Contains(l, ": off") {
						t.Errorf("guest offload still on: %s", l)
					}
				}
				if n != 4 {
					t.Errorf("%d OFFLOAD lines, want 4: ethtool -k failed in the guest", n)
				}
			}
			b.WaitExit()
		})
	}
}

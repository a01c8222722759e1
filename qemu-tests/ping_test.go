package qemutests

import (
	"testing"
)

// pingScript pings the host's end until a first reply comes (ARP and the back-end's set-up
// can take a few seconds), then 3 more times: "PING first_ok=1 tries=N rcv=3".
const pingScript = "pingcheck $HIP\n"

// TestPing: the guest pings the host's address on vhostd's TAP, then (the guest waiting in
// waithost) the host pings the guest.
func TestPing(t *testing.T) {
	b := StartBed(t, BedConfig{Guest: guestOpts(PingBothWays)})
	b.CheckPingBothWays(0)
	b.WaitExit()
}

// TestClientMode is TestPing with vhostd as the vhost-user client (--client) of a listening
// QEMU (server=on,wait=on).
func TestClientMode(t *testing.T) {
	b := StartBed(t, BedConfig{Client: true, Guest: guestOpts(PingBothWays)})
	b.CheckPingBothWays(0)
	b.WaitExit()
}

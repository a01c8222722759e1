package qemutests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// startTestpmd starts dpdk-testpmd without PCI or huge pages, with memMiB of memory, a
// unique --file-prefix, the vdevs, one forwarding core on CPU 1 and the application
// arguments; its log is shown if the test fails, and cleanup stops it and removes EAL's
// runtime directory.
func startTestpmd(t *testing.T, testpmd, memMiB string, vdevs []string, args ...string) *guest.Process {
	t.Helper()
	prefix := "vhq-" + guest.RandomSuffix(8)
	argv := []string{"--lcores=(0,1)@1", "--no-pci", "--no-huge", "-m", memMiB, "--file-prefix=" + prefix}
	for _, v := range vdevs {
		argv = append(argv, "--vdev", v)
	}
	argv = append(append(argv, "--", "--nb-cores=1", "--auto-start"), args...)
	p, err := guest.StartProcess("testpmd", nil, testpmd, argv...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	AddFailureLog(t, "testpmd log", p.Log)
	t.Cleanup(func() {
		p.Stop(VhostdStopGrace)
		os.RemoveAll(filepath.Join("/var/run/dpdk", prefix)) // EAL's runtime directory
	})
	return p
}

// TestReferenceBackend runs the ping scenario against DPDK's testpmd (vhost PMD <-> tap PMD),
// the back-end the traces in shared/traces were recorded with. It checks the harness's NIC,
// TAP-address and ping plumbing independently of vhostd, and shows what TestPing expects of
// vhostd. It is optional: without dpdk-testpmd (Debian's dpdk-dev) it skips, even in CI.
func TestReferenceBackend(t *testing.T) {
	q := Gate(t)
	testpmd, err := exec.LookPath("dpdk-testpmd")
	if err != nil {
		t.Skip("optional reference back-end: dpdk-testpmd not installed (apt-get install dpdk-dev)")
	}
	ctx := Context(t, 3*guest.BootTimeout)
	sn := Subnet(t)
	sock := filepath.Join(TempDir(t), "vu.sock")
	tap := TapName()
	p := startTestpmd(t, testpmd, "1024", []string{"net_vhost0,iface=" + sock + ",queues=1", "net_tap0,iface=" + tap},
		"--forward-mode=io", "--stats-period=60", "--total-num-mbufs=16384")
	if err := guest.WaitFile(ctx, sock, p); err != nil {
		t.Fatalf("testpmd socket: %v", err)
	}
	if err := guest.WaitFile(ctx, "/sys/class/net/"+tap, p); err != nil {
		t.Fatalf("testpmd's TAP %s: %v", tap, err)
	}
	HostAddr(t, tap, sn.HostCIDR())
	mac := guest.RandomMAC()
	g := StartGuest(t, guest.Options{
		QEMU:    q,
		NIC:     &guest.NIC{SocketPath: sock, MAC: mac},
		GuestIP: sn.GuestCIDR(),
		Files:   GuestFiles(sn, nil),
		Script:  WithLib(handshakeScript + pingScript),
	})
	m, err := g.WaitFor(ctx, regexp.MustCompile(pingLine))
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if m[1] != "1" {
		t.Fatalf("the guest got no reply from %s in %s tries", sn.HostIP(), m[2])
	}
	if rcv, _ := strconv.Atoi(m[3]); rcv != 3 {
		t.Errorf("%s/3 replies after the first one", m[3])
	}
	hs := fields(g.Log(), "HS ")
	if hs["mac"] != mac || !featureSet(hs["features"], featVersion1) || !featureSet(hs["features"], featMrgRxbuf) {
		t.Errorf("handshake lines %v: want mac=%s and VERSION_1, MRG_RXBUF", hs, mac)
	}
	if err := g.Wait(ctx); err != nil {
		t.Errorf("qemu exit: %v", err)
	}
}

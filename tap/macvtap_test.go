package tap

import (
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/testutil"
)

// macvtapSetup makes a veth pair and a macvtap on it in a fresh netns (privtest.Macvtap).
func macvtapSetup(t *testing.T) (ns, mvt, peer string) {
	t.Helper()
	return privtest.Macvtap(t, "vh", nil)
}

// A macvtap on a veth: frames written on a queue come out of the veth peer, frames sent
// into the peer to the macvtap's address arrive on the queues with the header.
func TestMacvtapRoundTrip(t *testing.T) {
	_, mvt, peer := macvtapSetup(t)
	d, err := OpenMacvtap(Config{Name: mvt, Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if d.Kind() != KindMacvtap || d.NumQueues() != 2 || d.Created() {
		t.Fatalf("kind %v queues %d created %v", d.Kind(), d.NumQueues(), d.Created())
	}
	for i := 0; i < 2; i++ {
		if sz, err := unix.IoctlGetInt(d.Queue(i).Fd(), unix.TUNGETVNETHDRSZ); err != nil || sz != VnetHdrLen {
			t.Fatalf("queue %d: TUNGETVNETHDRSZ = %d, %v", i, sz, err)
		}
	}
	if got, err := d.SetOffload(OffloadCSUM | OffloadTSO4 | OffloadTSO6 | OffloadUSO4 | OffloadUSO6); err != nil || got != OffloadCSUM|OffloadTSO4|OffloadTSO6|OffloadUSO4|OffloadUSO6 {
		t.Fatalf("SetOffload = %v, %v", got, err)
	}
	if _, err := d.SetOffload(0); err != nil {
		t.Fatal(err)
	}
	peerIf, err := net.InterfaceByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	pkt := packetSocket(t, peerIf.Index)

	const n = 8
	var hdr [VnetHdrLen]byte
	frames := make([][]unix.Iovec, n)
	for i := range frames {
		frames[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "mvt-w", uint32(i), 64))}
	}
	if got, e := d.Queue(1).WriteBatch(frames); got != n || e != 0 {
		t.Fatalf("WriteBatch = %d, %v", got, e)
	}
	if seen := recvTestFrames(t, pkt, "mvt-w", n, 5*time.Second); len(seen) != n {
		t.Fatalf("veth peer saw %d of %d frames", len(seen), n)
	}

	mac, err := d.MAC()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := unix.Write(pkt, testutil.TaggedFrame(mac, testSrcMAC, "mvt-r", uint32(i), 64)); err != nil {
			t.Fatal(err)
		}
	}
	got, perQueue := tapFrames(t, d, "mvt-r", n, 5*time.Second)
	if len(got) != n {
		t.Fatalf("read %d of %d frames sent to the macvtap (per queue %v)", len(got), n, perQueue)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName(mvt); err != nil {
		t.Fatalf("macvtap gone after Close: %v", err)
	}
}

// Deleting the macvtap under an open queue: tap.c then drops writes silently and the fd
// never becomes readable (no error, no spin either); Probe reports the gone condition.
func TestMacvtapDeletedIsGone(t *testing.T) {
	ns, mvt, _ := macvtapSetup(t)
	d, err := OpenMacvtap(Config{Name: mvt, Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if e := d.Queue(0).Probe(); e != 0 {
		t.Fatalf("Probe before deletion = %v", e)
	}
	privtest.IP(t, ns, "link", "del", mvt)
	var hdr [VnetHdrLen]byte
	frames := [][]unix.Iovec{{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "x", 0, 64))}}
	n, e := d.Queue(0).WriteBatch(frames)
	buf := make([]byte, 2048)
	rn, re := d.Queue(0).ReadBatch([][]unix.Iovec{{rawio.Iovec(buf)}}, []int{0})
	pfd := []unix.PollFd{{Fd: int32(d.Queue(0).Fd()), Events: unix.POLLIN | unix.POLLOUT}}
	pn, _ := unix.Poll(pfd, 1000)
	t.Logf("macvtap deleted: write %d, %v; read %d, %v; poll %d revents %#x", n, e, rn, re, pn, pfd[0].Revents)
	if rn != 0 || re != unix.EAGAIN || (e != 0 && !IsGone(e)) {
		t.Fatalf("write %d, %v; read %d, %v; want writes dropped or gone, reads EAGAIN", n, e, rn, re)
	}
	if pe := d.Queue(0).Probe(); !IsGone(pe) {
		t.Fatalf("Probe after deletion = %v, want a gone errno", pe)
	} else {
		t.Logf("Probe after deletion: %v", pe)
	}
}

// Without a usable /dev/tapN, OpenMacvtap makes its own node from sysfs. The test mounts a
// sysfs of its namespace in a private mount namespace (this thread only; it is discarded).
func TestMacvtapNodeFromSysfs(t *testing.T) {
	_, mvt, _ := macvtapSetup(t)
	runtime.LockOSThread() // never unlocked: the thread dies with the test goroutine
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		privtest.Missing(t, "unshare(CLONE_NEWNS): %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make / private: %v", err)
	}
	sys := t.TempDir()
	if err := unix.Mount("sysfs", sys, "sysfs", 0, ""); err != nil {
		privtest.Missing(t, "mount sysfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(sys, unix.MNT_DETACH) })
	noDev := t.TempDir() // an empty /dev
	d, err := openMacvtap(Config{Name: mvt, Queues: 2}, noDev, sys)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if d.NumQueues() != 2 {
		t.Fatalf("%d queues", d.NumQueues())
	}
	for i := 0; i < d.NumQueues(); i++ {
		if e := d.Queue(i).Probe(); e != 0 {
			t.Fatalf("queue %d: Probe = %v", i, e)
		}
	}
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "vhostd-macvtap-") {
			t.Errorf("temporary node directory %s left behind", e.Name())
		}
	}
	// A sysfs from another namespace (the host's /sys, mounted before the test moved
	// here) does not show our macvtap: refused, not trusted.
	if _, err := macvtapDevNum("/sys", mvt, d.Ifindex()); err == nil {
		t.Error("macvtapDevNum trusted the host's /sys for a namespaced macvtap")
	}
}

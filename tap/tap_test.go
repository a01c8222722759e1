package tap

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/testutil"
)

// Frames written on queue 0 come out of the TAP interface (seen by AF_PACKET); frames sent
// into the interface by AF_PACKET arrive on the queues with the 12-byte header.
func TestTAPMultiqueueRoundTrip(t *testing.T) {
	d, _ := openTestTAP(t, 2)
	if d.NumQueues() != 2 || d.Kind() != KindTAP || !d.Created() || d.Ifindex() <= 0 {
		t.Fatalf("device %q: queues %d kind %v created %v ifindex %d", d.Name(), d.NumQueues(), d.Kind(), d.Created(), d.Ifindex())
	}
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	if up, err := d.IsUp(); err != nil || !up {
		t.Fatalf("IsUp = %v, %v", up, err)
	}
	pkt := packetSocket(t, d.Ifindex())

	// Write: queue 0 -> interface.
	const n = 16
	var hdr [VnetHdrLen]byte // no offload: all zero
	frames := make([][]unix.Iovec, n)
	for i := range frames {
		frames[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "w0", uint32(i), 64))}
	}
	if got, e := d.Queue(0).WriteBatch(frames); got != n || e != 0 {
		t.Fatalf("WriteBatch = %d, %v; want %d, 0", got, e, n)
	}
	seen := recvTestFrames(t, pkt, "w0", n, 5*time.Second)
	if len(seen) != n {
		t.Fatalf("AF_PACKET saw %d of %d frames written to queue 0", len(seen), n)
	}

	// Read: interface -> queues. Different source ports would spread flows; tun hashes our
	// frames all the same, so look on both queues.
	for i := 0; i < n; i++ {
		if _, err := unix.Write(pkt, testutil.TaggedFrame(broadcast, testSrcMAC, "r0", uint32(i), 60+i)); err != nil {
			t.Fatalf("AF_PACKET write: %v", err)
		}
	}
	got, perQueue := tapFrames(t, d, "r0", n, 5*time.Second)
	if len(got) != n {
		t.Fatalf("read %d of %d injected frames (per queue %v)", len(got), n, perQueue)
	}
	t.Logf("frames per queue: %v", perQueue)
	for seq, b := range got {
		var h VnetHdr
		h.Unmarshal((*[VnetHdrLen]byte)(b))
		if h.GSOType != VirtioNetHdrGSONone || h.Flags&VirtioNetHdrFNeedsCsum != 0 {
			t.Errorf("frame %d: header %v, want no offload", seq, h)
		}
		if len(b)-VnetHdrLen != 60+int(seq) {
			t.Errorf("frame %d: %d bytes after the header, want %d", seq, len(b)-VnetHdrLen, 60+seq)
		}
	}
}

// Each queue is an O_NONBLOCK|O_CLOEXEC fd (the fast path needs nonblocking).
func TestTAPQueueFlags(t *testing.T) {
	d, _ := openTestTAP(t, 3)
	for i := 0; i < d.NumQueues(); i++ {
		fd := d.Queue(i).Fd()
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("queue %d: F_GETFL %#x, %v: want O_NONBLOCK", i, fl, err)
		}
		fdfl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || fdfl&unix.FD_CLOEXEC == 0 {
			t.Errorf("queue %d: F_GETFD %#x, %v: want FD_CLOEXEC", i, fdfl, err)
		}
		ifr, _ := unix.NewIfreq("")
		if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
			t.Fatal(err)
		}
		if f := ifr.Uint16(); f&tapFlags != tapFlags {
			t.Errorf("queue %d: TUNGETIFF flags %#x, want %#x", i, f, tapFlags)
		}
		if sz, err := unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ); err != nil || sz != VnetHdrLen {
			t.Errorf("queue %d: TUNGETVNETHDRSZ = %d, %v", i, sz, err)
		}
	}
}

// A TAP we create disappears on Close; one that existed is attached to and left; Persist
// keeps one we created. Close is idempotent.
func TestTAPLifetime(t *testing.T) {
	ns := privtest.NetNS(t)
	exists := func(name string) bool {
		_, err := net.InterfaceByName(name) // netlink from this (namespaced) thread
		return err == nil
	}

	name := "vht" + testutil.Suffix(8)
	d, err := OpenTAP(Config{Name: name, Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Created() || !exists(name) {
		t.Fatalf("created=%v exists=%v", d.Created(), exists(name))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := d.SetOffload(OffloadCSUM); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetOffload after Close: %v", err)
	}
	if exists(name) {
		t.Fatalf("%s still exists after Close", name)
	}

	// MustExist attaches only: a missing TAP is an error and is not created.
	if _, err := OpenTAP(Config{Name: name, Queues: 1, MustExist: true}); !errors.Is(err, ErrNoInterface) || exists(name) {
		t.Fatalf("MustExist on a missing TAP: %v, created %v", err, exists(name))
	}

	// Persist.
	d, err = OpenTAP(Config{Name: name, Queues: 1, Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if !exists(name) {
		t.Fatalf("persistent %s gone after Close", name)
	}
	privtest.IP(t, ns, "link", "del", name)

	// Existing multi_queue TAP: attached, not created, left in place.
	privtest.IP(t, ns, "tuntap", "add", "dev", name, "mode", "tap", "multi_queue")
	d, err = OpenTAP(Config{Name: name, Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	if d.Created() {
		t.Fatal("Created() = true for an existing TAP")
	}
	d.Close()
	if !exists(name) {
		t.Fatalf("existing %s removed by Close", name)
	}

	// Existing single-queue TAP: refused with a hint.
	other := "vhs" + testutil.Suffix(8)
	privtest.IP(t, ns, "tuntap", "add", "dev", other, "mode", "tap")
	if d, err = OpenTAP(Config{Name: other, Queues: 1}); err == nil {
		d.Close()
		t.Fatal("attached to a single-queue TAP")
	}
	t.Logf("single-queue TAP: %v", err)

	// Bad configs.
	for _, c := range []Config{{Name: "x", Queues: -1}, {Name: "x", Queues: MaxQueues + 1}, {Name: "0123456789abcdefg"}} {
		if d, err := OpenTAP(c); err == nil {
			d.Close()
			t.Errorf("OpenTAP(%+v) succeeded", c)
		}
	}
}

// SetOffload applies what the kernel accepts and reports it; the kernel itself refuses
// segmentation offloads without CSUM, which Effective prevents.
func TestTAPSetOffload(t *testing.T) {
	d, _ := openTestTAP(t, 2)
	cases := []struct {
		name string
		in   Offloads
		want Offloads
	}{
		{"none", 0, 0},
		{"csum", OffloadCSUM, OffloadCSUM},
		{"csum_tso4_tso6_ecn", OffloadCSUM | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN, OffloadCSUM | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN},
		{"tso_without_csum", OffloadTSO4 | OffloadTSO6, 0},
		{"uso_pair", OffloadCSUM | OffloadUSO4 | OffloadUSO6, OffloadCSUM | OffloadUSO4 | OffloadUSO6},
		{"everything", 0x7f, 0x7f},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := d.SetOffload(c.in)
			if err != nil {
				t.Fatalf("SetOffload(%v): %v", c.in, err)
			}
			if got != c.want {
				t.Fatalf("SetOffload(%v) applied %v, want %v", c.in, got, c.want)
			}
		})
	}
	// The rule Effective encodes, straight from the kernel.
	fd := d.Queue(0).Fd()
	for _, raw := range []int{tunFTSO4, tunFTSO6, tunFUSO4 | tunFUSO6, tunFCsum | tunFTSOECN, 0x80} {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, raw); !errors.Is(err, unix.EINVAL) {
			t.Errorf("raw TUNSETOFFLOAD %#x: %v, want EINVAL", raw, err)
		}
	}
	// tun wants USO4 and USO6 together (tun.c set_offload); Effective drops a lone one.
	for _, raw := range []int{tunFCsum | tunFUSO4, tunFCsum | tunFUSO6} {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, raw); !errors.Is(err, unix.EINVAL) {
			t.Errorf("raw TUNSETOFFLOAD %#x: %v, want EINVAL", raw, err)
		}
	}
}

func TestTAPMTUMACUpDown(t *testing.T) {
	d, _ := openTestTAP(t, 1)
	if err := d.SetMTU(9000); err != nil {
		t.Fatal(err)
	}
	if mtu, err := d.MTU(); err != nil || mtu != 9000 {
		t.Fatalf("MTU = %d, %v; want 9000", mtu, err)
	}
	if err := d.SetMTU(0); err == nil {
		t.Fatal("SetMTU(0) succeeded")
	}
	mac := net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}
	if err := d.SetMAC(mac); err != nil {
		t.Fatal(err)
	}
	if got, err := d.MAC(); err != nil || got.String() != mac.String() {
		t.Fatalf("MAC = %v, %v; want %v", got, err, mac)
	}
	if err := d.SetMAC(net.HardwareAddr{1, 2}); err == nil {
		t.Fatal("SetMAC with 2 bytes succeeded")
	}
	for _, up := range []bool{true, false, true} {
		if err := d.SetUp(up); err != nil {
			t.Fatal(err)
		}
		if got, err := d.IsUp(); err != nil || got != up {
			t.Fatalf("IsUp = %v, %v; want %v", got, err, up)
		}
	}
	if idx, err := d.LookupIfindex(); err != nil || idx != d.Ifindex() {
		t.Fatalf("LookupIfindex = %d, %v; want %d", idx, err, d.Ifindex())
	}
}

// A frame longer than the reader's buffers is truncated, and tun reports only the bytes it
// copied, one buffer or several: a reader that must see an oversized frame needs buffers
// longer than the largest frame it expects (netdev's overflow buffer).
func TestReadTruncatedReportsCopiedLength(t *testing.T) {
	d, _ := openTestTAP(t, 1)
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	pkt := packetSocket(t, d.Ifindex())
	q := d.Queue(0)
	frame := testutil.TaggedFrame(broadcast, testSrcMAC, "trunc", 0, 1000)
	for _, bufs := range [][]int{{4000}, {200}, {100, 100}} {
		if _, err := unix.Write(pkt, frame); err != nil {
			t.Fatalf("AF_PACKET write: %v", err)
		}
		var in []unix.Iovec
		capacity := 0
		for _, n := range bufs {
			in = append(in, rawio.Iovec(make([]byte, n)))
			capacity += n
		}
		want := VnetHdrLen + len(frame)
		if want > capacity {
			want = capacity
		}
		// Other frames the stack sends (IPv6 chatter, under 200 bytes) are skipped: ours
		// is the one that fills the buffers, or all 1012 bytes of the large one.
		sizes := []int{0}
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, e := q.ReadBatch([][]unix.Iovec{in}, sizes)
			if n == 1 && sizes[0] >= 200 {
				break
			}
			if (n == 0 && e != unix.EAGAIN) || time.Now().After(deadline) {
				t.Fatalf("%v buffers: ReadBatch = %d, %v; our frame did not come", bufs, n, e)
			}
			if n == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if sizes[0] != want {
			t.Fatalf("%v buffers: size %d, want %d", bufs, sizes[0], want)
		}
	}
}

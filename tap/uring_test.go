package tap

import (
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/testutil"

	"golang.org/x/sys/unix"
)

// dgramPair is a datagram socketpair standing in for a TAP queue (one datagram per frame).
func dgramPair(t *testing.T) (w, r *Queue) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, r = &Queue{fd: fds[0]}, &Queue{fd: fds[1]}
	t.Cleanup(func() { w.Close(); r.Close() })
	return w, r
}

// useRing gives q an io_uring of entries slots.
func useRing(t *testing.T, q *Queue, entries int) {
	t.Helper()
	if err := q.UseWriteRing(entries); err != nil {
		t.Fatal(err)
	}
	if q.WriteMode() != WriteUring {
		t.Fatalf("WriteMode = %v after UseWriteRing", q.WriteMode())
	}
}

// seqFrames builds n frames (header iovec + payload iovec) whose payload starts with their
// sequence number.
func seqFrames(n, size int) [][]unix.Iovec {
	var hdr [VnetHdrLen]byte
	frames := make([][]unix.Iovec, n)
	for i := range frames {
		p := make([]byte, size)
		binary.BigEndian.PutUint32(p, uint32(i))
		frames[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(p)}
	}
	return frames
}

var drainBuf = make([]byte, 70000)

// readSeqs reads every datagram waiting on r and returns the sequence numbers, in order.
func readSeqs(t *testing.T, r *Queue) []uint32 {
	t.Helper()
	var got []uint32
	for {
		n, e := rawio.Read(r.fd, drainBuf)
		if e == unix.EAGAIN {
			return got
		}
		if e != 0 || n < VnetHdrLen+4 {
			t.Fatalf("read = %d, %v", n, e)
		}
		got = append(got, binary.BigEndian.Uint32(drainBuf[VnetHdrLen:]))
	}
}

// drain empties r without allocating.
func drain(r *Queue) {
	for {
		if _, e := rawio.Read(r.fd, drainBuf); e != 0 {
			return
		}
	}
}

// bothModes runs f once with writev(2) and once with an io_uring of entries slots.
func bothModes(t *testing.T, entries int, f func(t *testing.T, w, r *Queue)) {
	for _, m := range []WriteMode{WriteSyscall, WriteUring} {
		t.Run(m.String(), func(t *testing.T) {
			w, r := dgramPair(t)
			if m == WriteUring {
				useRing(t, w, entries)
			}
			f(t, w, r)
		})
	}
}

// Frames go out in order, each exactly once, across several enters (more frames than
// entries: partial batches), and neither mode allocates.
func TestWriteFramesOrderAndAllocs(t *testing.T) {
	bothModes(t, 8, func(t *testing.T, w, r *Queue) {
		frames := seqFrames(20, 64)
		errs := make([]unix.Errno, len(frames))
		if ok := w.WriteFrames(frames, errs); ok != 20 {
			t.Fatalf("WriteFrames = %d, want 20 (errs %v)", ok, errs)
		}
		got := readSeqs(t, r)
		if len(got) != 20 {
			t.Fatalf("read %d frames, want 20", len(got))
		}
		for i, s := range got {
			if s != uint32(i) {
				t.Fatalf("frame %d carries seq %d: order lost (%v)", i, s, got)
			}
		}
		allocs := testing.AllocsPerRun(100, func() {
			if ok := w.WriteFrames(frames, errs); ok != 20 {
				t.Fatalf("WriteFrames = %d", ok)
			}
			drain(r)
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per WriteFrames of 20, want 0", allocs)
		}
	})
}

// A bad frame fails alone, with the same errno in both modes: empty (EINVAL) and unreadable
// (EFAULT) frames get their errno, the frames around them are written, in order. len(errs)
// bounds the batch.
func TestWriteFramesPerFrameErrors(t *testing.T) {
	noAccess, err := unix.Mmap(-1, 0, 4096, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(noAccess)
	bothModes(t, 4, func(t *testing.T, w, r *Queue) {
		frames := seqFrames(6, 64)
		frames[1] = nil
		frames[4] = []unix.Iovec{rawio.Iovec(noAccess[:64])}
		errs := make([]unix.Errno, 6)
		for i := range errs {
			errs[i] = unix.E2BIG // must be overwritten
		}
		if ok := w.WriteFrames(frames, errs); ok != 4 {
			t.Fatalf("WriteFrames = %d, want 4 (errs %v)", ok, errs)
		}
		want := []unix.Errno{0, unix.EINVAL, 0, 0, unix.EFAULT, 0}
		if fmt.Sprint(errs) != fmt.Sprint(want) {
			t.Fatalf("errs = %v, want %v", errs, want)
		}
		if got := readSeqs(t, r); fmt.Sprint(got) != "[0 2 3 5]" {
			t.Fatalf("read seqs %v, want [0 2 3 5]", got)
		}
		if ok := w.WriteFrames(seqFrames(3, 8), errs[:2]); ok != 2 {
			t.Fatalf("WriteFrames with 2 errs = %d, want 2", ok)
		}
		if got := readSeqs(t, r); len(got) != 2 {
			t.Fatalf("read %d frames, want 2", len(got))
		}
	})
}

// A full peer is EAGAIN for every frame from the first refused one on, in both modes (the
// ring sets RWF_NOWAIT: it never parks a write), and the frames before it were written.
func TestWriteFramesFullIsEAGAIN(t *testing.T) {
	bothModes(t, 64, func(t *testing.T, w, r *Queue) {
		frames := seqFrames(1024, 1024)
		errs := make([]unix.Errno, len(frames))
		done := make(chan int, 1)
		go func() { done <- w.WriteFrames(frames, errs) }()
		var ok int
		select {
		case ok = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("WriteFrames on a full socket did not return: a write was parked")
		}
		checkFullRun(t, errs, ok)
		if got := readSeqs(t, r); len(got) != ok {
			t.Fatalf("read %d frames, WriteFrames said %d", len(got), ok)
		}
	})
}

// checkFullRun checks errs of a batch written into a queue that filled: ok frames taken,
// then EAGAIN for the rest.
func checkFullRun(t *testing.T, errs []unix.Errno, ok int) {
	t.Helper()
	if ok == 0 || ok == len(errs) {
		t.Fatalf("WriteFrames = %d of %d: want the queue to fill part way", ok, len(errs))
	}
	for i, e := range errs {
		if want := unix.Errno(0); i >= ok && e != unix.EAGAIN || i < ok && e != want {
			t.Fatalf("frame %d of %d (ok %d): %v", i, len(errs), ok, e)
		}
	}
}

// The ring holds the fd's file and is closed with its Queue: after that every frame is EBADF
// (IsGone). Bad sizes are refused with the size named; a second UseWriteRing keeps the ring.
func TestWriteRingLifetime(t *testing.T) {
	w, _ := dgramPair(t)
	for _, n := range []int{0, 3, MaxWriteRingEntries * 2} {
		if err := w.UseWriteRing(n); err == nil || !contains(err.Error(), fmt.Sprint(n)) {
			t.Fatalf("UseWriteRing(%d) = %v, want an error naming %d", n, err, n)
		}
	}
	if w.WriteMode() != WriteSyscall {
		t.Fatal("a refused UseWriteRing left a ring")
	}
	useRing(t, w, 2)
	wr := w.ring
	useRing(t, w, 4)
	if w.ring != wr || wr.Entries() != 2 {
		t.Fatal("a second UseWriteRing replaced the ring")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	errs := make([]unix.Errno, 2)
	if ok := wr.WriteFrames(seqFrames(2, 8), errs); ok != 0 || !IsGone(errs[0]) || !IsGone(errs[1]) {
		t.Fatalf("WriteFrames after Close = %d, %v", ok, errs)
	}
	if err := wr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := w.NewWriteRing(2); err == nil {
		t.Fatal("NewWriteRing on a closed queue accepted")
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// On a real TAP through the ring: frames arrive on the interface; a TAP deleted while
// batches are being written turns every later frame gone, and within a batch no frame
// succeeds after one found it gone. (A full queue: tun does not say EAGAIN on write, whatever
// its txqueuelen or send buffer, TestWriteQueueFullPolicy; a macvtap does:
// TestWriteRingMacvtapFull.)
func TestWriteRingTAP(t *testing.T) {
	d, ns := openTestTAP(t, 1)
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	ps := packetSocket(t, d.Ifindex())
	q := d.Queue(0)
	useRing(t, q, 32)
	var hdr [VnetHdrLen]byte
	frames := make([][]unix.Iovec, 50)
	for i := range frames {
		frames[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "uring", uint32(i), 64))}
	}
	errs := make([]unix.Errno, 256)
	if ok := q.WriteFrames(frames, errs); ok != 50 {
		t.Fatalf("WriteFrames = %d, errs %v", ok, errs[:50])
	}
	if got := recvTestFrames(t, ps, "uring", 50, 2*time.Second); len(got) != 50 {
		t.Fatalf("the TAP delivered %d of the 50 frames", len(got))
	}

	// Deleted mid-batch.
	deleted := make(chan struct{})
	go func() {
		time.Sleep(20 * time.Millisecond)
		privtest.IP(t, ns, "link", "del", d.Name())
		close(deleted)
	}()
	many := make([][]unix.Iovec, 256)
	for i := range many {
		many[i] = frames[i%len(frames)]
	}
	for goneSeen := false; !goneSeen; {
		select {
		case <-deleted:
			goneSeen = true // one more batch, after the deletion
		default:
		}
		q.WriteFrames(many, errs)
		// ip link del sets the link down first: EIO (IsDown), then gone.
		failed, gone := false, 0
		for i, e := range errs {
			switch {
			case IsGone(e) || IsDown(e):
				failed = true
				if IsGone(e) {
					gone++
				}
			case e != 0 || failed:
				t.Fatalf("frame %d: %v (a frame before it failed: %v)", i, e, failed)
			}
		}
		if goneSeen && gone != len(errs) {
			t.Fatalf("after the TAP was deleted %d of %d frames gone", gone, len(errs))
		}
	}
}

// A macvtap whose send buffer fills (its lower link's qdisc holds the frames: a token bucket
// at 8 kbit/s) answers EAGAIN per frame through the ring, as write(2) does, and the enter
// does not block (BAD-INPUTS 52). Each mode has its own queue, so its own send buffer.
func TestWriteRingMacvtapFull(t *testing.T) {
	ns, mvt, _ := macvtapSetup(t)
	lower := "vhl" + mvt[len("vhm"):]
	if out, err := exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", lower, "root",
		"tbf", "rate", "8kbit", "burst", "1600", "limit", "100000000").CombinedOutput(); err != nil {
		privtest.Missing(t, "tc qdisc tbf: %v: %s", err, out)
	}
	d, err := OpenMacvtap(Config{Name: mvt, Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	for i, m := range []WriteMode{WriteSyscall, WriteUring} {
		q := d.Queue(i)
		if m == WriteUring {
			useRing(t, q, 64)
		}
		if err := unix.IoctlSetPointerInt(q.Fd(), unix.TUNSETSNDBUF, 64<<10); err != nil {
			t.Fatal(err)
		}
		var hdr [VnetHdrLen]byte
		frames := make([][]unix.Iovec, 256)
		for i := range frames {
			frames[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "full", uint32(i), 1000))}
		}
		errs := make([]unix.Errno, len(frames))
		done := make(chan int, 1)
		go func() { done <- q.WriteFrames(frames, errs) }()
		select {
		case ok := <-done:
			checkFullRun(t, errs, ok)
			t.Logf("%v: %d of 256 frames taken, the rest EAGAIN", m, ok)
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: WriteFrames on a full macvtap did not return: a write was parked", m)
		}
	}
}

// Calibrate measures both modes on a private TAP and removes it.
func TestCalibrate(t *testing.T) {
	privtest.NetNS(t)
	c, err := Calibrate(20 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if c.Rounds < 2 || c.WriteNs <= 0 || c.UringNs <= 0 || c.WriteNs > 1e5 || c.UringNs > 1e5 {
		t.Fatalf("calibration %+v", c)
	}
	t.Logf("write %.0f ns/frame, io_uring %.0f ns/frame, %d rounds", c.WriteNs, c.UringNs, c.Rounds)
	// The TAP goes with its last file reference, which the ring gives up in its Close.
	left := func() (names []string) {
		ifs, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range ifs {
			if strings.HasPrefix(i.Name, "vhcal") {
				names = append(names, i.Name)
			}
		}
		return names
	}
	if l := left(); len(l) != 0 {
		t.Fatalf("calibration TAP %v left behind", l)
	}
}

// A batch of fewer than MinRingBatch frames goes out by write(2): one io_uring_enter for a
// single frame costs more than the write it saves (perf/FINDINGS.md: 1 frame per enter moved
// 0.6x what write(2) did). Larger batches take the ring. Both keep order and report errors the
// same way.
func TestWriteFramesSmallBatchesSkipRing(t *testing.T) {
	w, r := dgramPair(t)
	useRing(t, w, 8)
	errs := make([]unix.Errno, 8)
	for n := 1; n <= 8; n++ {
		before := w.ring.batches
		if ok := w.WriteFrames(seqFrames(n, 64), errs); ok != n {
			t.Fatalf("WriteFrames(%d frames) = %d (errs %v)", n, ok, errs[:n])
		}
		if got := readSeqs(t, r); len(got) != n {
			t.Fatalf("%d frames written, %d read", n, len(got))
		}
		enters := w.ring.batches - before
		if want := uint64(0); n >= MinRingBatch {
			if enters != 1 {
				t.Errorf("%d frames: %d ring batches, want 1", n, enters)
			}
		} else if enters != want {
			t.Errorf("%d frames: %d ring batches, want write(2) (0)", n, enters)
		}
	}
	// An empty frame is EINVAL by either path.
	frames := [][]unix.Iovec{nil}
	if ok := w.WriteFrames(frames, errs[:1]); ok != 0 || errs[0] != unix.EINVAL {
		t.Fatalf("empty frame: ok %d errno %v, want 0 EINVAL", ok, errs[0])
	}
}

package tap

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"

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

func newTestRing(t *testing.T, q *Queue, entries int) *WriteRing {
	t.Helper()
	wr, err := q.NewWriteRing(entries)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wr.Close() })
	return wr
}

// seqFrames builds n frames (header iovec + payload iovec) whose payload starts with their
// sequence number.
func seqFrames(n, size int) [][]unix.Iovec {
	var hdr [VnetHdrLen]byte
	frames := make([][]unix.Iovec, n)
	for i := range frames {
		p := make([]byte, size)
		binary.BigEndian.PutUint32(p, uint32(i))
		frames[i] = []unix.Iovec{iov(hdr[:]), iov(p)}
	}
	return frames
}

// readSeqs reads every datagram waiting on r and returns the sequence numbers, in order.
func readSeqs(t *testing.T, r *Queue) []uint32 {
	t.Helper()
	buf := make([]byte, 4096)
	in := [][]unix.Iovec{{iov(buf)}}
	sizes := []int{0}
	var got []uint32
	for {
		n, e := r.ReadBatch(in, sizes)
		if e == unix.EAGAIN {
			return got
		}
		if n != 1 || e != 0 {
			t.Fatalf("ReadBatch = %d, %v", n, e)
		}
		got = append(got, binary.BigEndian.Uint32(buf[VnetHdrLen:]))
	}
}

// Frames go out in order, each exactly once, across several enters (more frames than
// entries), and the ring allocates nothing.
func TestWriteRingOrderAndAllocs(t *testing.T) {
	w, r := dgramPair(t)
	wr := newTestRing(t, w, 8)
	if wr.Entries() != 8 {
		t.Fatalf("Entries = %d, want 8", wr.Entries())
	}
	frames := seqFrames(20, 64)
	errs := make([]unix.Errno, len(frames))
	if ok := wr.WriteFrames(frames, errs); ok != 20 {
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
		if ok := wr.WriteFrames(frames, errs); ok != 20 {
			t.Fatalf("WriteFrames = %d", ok)
		}
		readSeqs2(r)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per WriteFrames of 20, want 0", allocs)
	}
}

var drainBuf = make([]byte, 4096)

// readSeqs2 drains r without allocating.
func readSeqs2(r *Queue) {
	for {
		if _, e := readv(r.fd, []unix.Iovec{iov(drainBuf)}); e != 0 {
			return
		}
	}
}

// A bad frame fails alone: empty (EINVAL) and unreadable (EFAULT) frames get their errno, the
// frames around them are written, in order. len(errs) bounds the batch.
func TestWriteRingPerFrameErrors(t *testing.T) {
	w, r := dgramPair(t)
	wr := newTestRing(t, w, 4)
	frames := seqFrames(6, 64)
	frames[1] = nil
	// A page the kernel may not read.
	noAccess, err := unix.Mmap(-1, 0, 4096, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(noAccess)
	frames[4] = []unix.Iovec{iov(noAccess[:64])}
	errs := make([]unix.Errno, 6)
	for i := range errs {
		errs[i] = unix.E2BIG // must be overwritten
	}
	if ok := wr.WriteFrames(frames, errs); ok != 4 {
		t.Fatalf("WriteFrames = %d, want 4 (errs %v)", ok, errs)
	}
	want := []unix.Errno{0, unix.EINVAL, 0, 0, unix.EFAULT, 0}
	for i := range want {
		if errs[i] != want[i] {
			t.Fatalf("errs = %v, want %v", errs, want)
		}
	}
	got := readSeqs(t, r)
	if len(got) != 4 || got[0] != 0 || got[1] != 2 || got[2] != 3 || got[3] != 5 {
		t.Fatalf("read seqs %v, want [0 2 3 5]", got)
	}
	if ok := wr.WriteFrames(seqFrames(3, 8), errs[:2]); ok != 2 {
		t.Fatalf("WriteFrames with 2 errs = %d, want 2", ok)
	}
	if got := readSeqs(t, r); len(got) != 2 {
		t.Fatalf("read %d frames, want 2", len(got))
	}
}

// A full peer is EAGAIN per frame (the fd is nonblocking: the ring does not hand the write to
// a kernel worker), and the frames before it were written.
func TestWriteRingFullIsEAGAIN(t *testing.T) {
	w, r := dgramPair(t)
	wr := newTestRing(t, w, 64)
	frames := seqFrames(1024, 1024)
	errs := make([]unix.Errno, len(frames))
	ok := wr.WriteFrames(frames, errs)
	if ok == 0 || ok == len(frames) {
		t.Fatalf("WriteFrames = %d of %d: want the socket buffer to fill part way", ok, len(frames))
	}
	for i := 0; i < ok; i++ {
		if errs[i] != 0 {
			t.Fatalf("frame %d: %v before the buffer filled", i, errs[i])
		}
	}
	for i := ok; i < len(frames); i++ {
		if errs[i] != unix.EAGAIN {
			t.Fatalf("frame %d: %v, want EAGAIN once full", i, errs[i])
		}
	}
	if got := readSeqs(t, r); len(got) != ok {
		t.Fatalf("read %d frames, WriteFrames said %d", len(got), ok)
	}
}

// The ring holds the fd's file: after Close the ring answers EBADF for every frame, and
// closing twice is fine. Bad sizes are refused with the size named.
func TestWriteRingLifetime(t *testing.T) {
	w, _ := dgramPair(t)
	for _, n := range []int{0, 3, MaxWriteRingEntries * 2} {
		if wr, err := w.NewWriteRing(n); err == nil {
			wr.Close()
			t.Fatalf("NewWriteRing(%d) accepted", n)
		}
	}
	wr, err := w.NewWriteRing(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := wr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	errs := make([]unix.Errno, 2)
	if ok := wr.WriteFrames(seqFrames(2, 8), errs); ok != 0 || errs[0] != unix.EBADF || errs[1] != unix.EBADF {
		t.Fatalf("WriteFrames after Close = %d, %v", ok, errs)
	}
	w.Close()
	if _, err := w.NewWriteRing(2); err == nil {
		t.Fatal("NewWriteRing on a closed queue accepted")
	}
}

// On a real TAP: frames written through the ring arrive on the interface; a deleted TAP is
// gone for every frame.
func TestWriteRingTAP(t *testing.T) {
	d, ns := openTestTAP(t, 1)
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	ps := packetSocket(t, d.Ifindex())
	q := d.Queue(0)
	wr := newTestRing(t, q, 32)
	var hdr [VnetHdrLen]byte
	frames := make([][]unix.Iovec, 50)
	for i := range frames {
		frames[i] = []unix.Iovec{iov(hdr[:]), iov(testFrame(t, broadcast, "uring", uint32(i), 64))}
	}
	errs := make([]unix.Errno, len(frames))
	if ok := wr.WriteFrames(frames, errs); ok != 50 {
		t.Fatalf("WriteFrames = %d, errs %v", ok, errs)
	}
	if got := recvTestFrames(t, ps, "uring", 50, 2*time.Second); len(got) != 50 {
		t.Fatalf("the TAP delivered %d of the 50 frames", len(got))
	}
	privtest.IP(t, ns, "link", "del", d.Name())
	if ok := wr.WriteFrames(frames[:4], errs); ok != 0 {
		t.Fatalf("WriteFrames on a deleted TAP = %d", ok)
	}
	for _, e := range errs[:4] {
		if !IsGone(e) {
			t.Fatalf("errs %v: want gone errnos", errs[:4])
		}
	}
}

package tap

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/testutil"
)

// The batch calls work on any fd that takes readv/writev, so the zero-allocation guard runs
// without privileges on a datagram socketpair (one datagram per frame, like a TAP).
func TestBatchZeroAllocsSocketpair(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, r := &Queue{fd: fds[0]}, &Queue{fd: fds[1]}
	t.Cleanup(func() { w.Close(); r.Close() })

	const batch = 32
	var hdr [VnetHdrLen]byte
	payload := make([]byte, 64)
	out := make([][]unix.Iovec, batch)
	for i := range out {
		out[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(payload)}
	}
	bufs := make([][]byte, batch)
	in := make([][]unix.Iovec, batch)
	for i := range in {
		bufs[i] = make([]byte, 2048)
		in[i] = []unix.Iovec{rawio.Iovec(bufs[i])}
	}
	sizes := make([]int, batch)

	allocs := testing.AllocsPerRun(100, func() {
		if n, e := w.WriteBatch(out); n != batch || e != 0 {
			t.Fatalf("WriteBatch = %d, %v", n, e)
		}
		if n, e := r.ReadBatch(in, sizes); n != batch || e != 0 {
			t.Fatalf("ReadBatch = %d, %v", n, e)
		}
		if n, e := r.ReadBatch(in, sizes); n != 0 || e != unix.EAGAIN {
			t.Fatalf("ReadBatch on empty = %d, %v", n, e)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch of %d frames, want 0", allocs, batch)
	}
	if sizes[0] != VnetHdrLen+len(payload) {
		t.Fatalf("size %d", sizes[0])
	}
}

// Same guard on a real TAP: write 32 frames, read back nothing (EAGAIN), no allocation.
func TestBatchZeroAllocsTAP(t *testing.T) {
	d, _ := openTestTAP(t, 1)
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	const batch = 32
	var hdr [VnetHdrLen]byte
	frame := testutil.TaggedFrame(broadcast, testSrcMAC, "alloc", 0, 64)
	out := make([][]unix.Iovec, batch)
	for i := range out {
		out[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(frame)}
	}
	buf := make([]byte, 2048)
	in := [][]unix.Iovec{{rawio.Iovec(buf)}}
	sizes := []int{0}
	q := d.Queue(0)
	allocs := testing.AllocsPerRun(100, func() {
		if n, e := q.WriteBatch(out); n != batch || e != 0 {
			t.Fatalf("WriteBatch = %d, %v", n, e)
		}
		q.ReadBatch(in, sizes) // whatever the host stack sent; usually EAGAIN
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}

// Short sizes bound the batch; empty frames are EINVAL at their index.
func TestBatchEdges(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, r := &Queue{fd: fds[0]}, &Queue{fd: fds[1]}
	t.Cleanup(func() { w.Close(); r.Close() })
	b := make([]byte, 16)
	if n, e := w.WriteBatch([][]unix.Iovec{{rawio.Iovec(b)}, {}, {rawio.Iovec(b)}}); n != 1 || e != unix.EINVAL {
		t.Fatalf("WriteBatch with an empty frame = %d, %v; want 1, EINVAL", n, e)
	}
	if n, e := w.WriteBatch(nil); n != 0 || e != 0 {
		t.Fatalf("WriteBatch(nil) = %d, %v", n, e)
	}
	w.WriteBatch([][]unix.Iovec{{rawio.Iovec(b)}, {rawio.Iovec(b)}})
	in := [][]unix.Iovec{{rawio.Iovec(make([]byte, 64))}, {rawio.Iovec(make([]byte, 64))}, {rawio.Iovec(make([]byte, 64))}}
	sizes := make([]int, 2)
	if n, e := r.ReadBatch(in, sizes); n != 2 || e != 0 {
		t.Fatalf("ReadBatch with 2 sizes = %d, %v; want 2, 0", n, e)
	}
	if n, e := r.ReadBatch(in[:1], sizes); n != 1 || e != 0 {
		t.Fatalf("ReadBatch = %d, %v; want the third frame", n, e)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n, e := w.WriteBatch([][]unix.Iovec{{rawio.Iovec(b)}}); n != 0 || !IsGone(e) {
		t.Fatalf("WriteBatch after Close = %d, %v; want a gone errno (EBADF)", n, e)
	}
}

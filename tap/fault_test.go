package tap

import (
	"github.com/vhostd/vhostd/internal/privtest"

	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/testutil"
	"golang.org/x/sys/unix"
)

// BAD-INPUTS 52, read side: nobody reads the TAP, so its queue toward us (a ring of
// txqueuelen frames) fills and tun drops the rest. ReadBatch then returns what the ring
// held and EAGAIN; nothing blocks, nothing spins.
func TestReadQueueFullDropsAndEAGAIN(t *testing.T) {
	d, _ := openTestTAP(t, 1)
	const qlen = 16
	if err := d.SetTxQueueLen(qlen); err != nil {
		t.Fatal(err)
	}
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	pkt := packetSocket(t, d.Ifindex())
	const sent = 200
	for i := 0; i < sent; i++ {
		if _, err := unix.Write(pkt, testutil.TaggedFrame(broadcast, testSrcMAC, "full", uint32(i), 64)); err != nil {
			t.Fatalf("AF_PACKET write %d: %v", i, err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the qdisc hand everything to tun

	const batch = 4 * qlen
	bufs := make([][]byte, batch)
	frames := make([][]unix.Iovec, batch)
	for i := range frames {
		bufs[i] = make([]byte, 2048)
		frames[i] = []unix.Iovec{rawio.Iovec(bufs[i])} // header and frame in one buffer
	}
	sizes := make([]int, batch)
	n, e := d.Queue(0).ReadBatch(frames, sizes)
	if e != unix.EAGAIN {
		t.Fatalf("ReadBatch = %d, %v; want EAGAIN once the ring is empty", n, e)
	}
	if n == 0 || n > qlen {
		t.Fatalf("ReadBatch read %d frames; the ring holds %d", n, qlen)
	}
	tagged := 0
	for i := 0; i < n; i++ {
		if _, ok := testutil.ParseTaggedFrame(bufs[i][VnetHdrLen:sizes[i]], "full"); ok {
			tagged++
		}
	}
	t.Logf("sent %d into a TAP with txqueuelen %d: read %d (%d ours), then EAGAIN; tun dropped the rest", sent, qlen, n, tagged)
	// Empty now: EAGAIN immediately with n == 0.
	if n, e := d.Queue(0).ReadBatch(frames, sizes); n != 0 || e != unix.EAGAIN {
		t.Fatalf("second ReadBatch = %d, %v; want 0, EAGAIN", n, e)
	}
}

// BAD-INPUTS 52, write side: what the kernel does when we write faster than the host stack
// takes frames. Observed on Linux 6.x: tun never answers EAGAIN here; each write hands the
// frame to the stack (netif_rx / the per-CPU backlog) and the stack drops on overload, so
// WriteBatch returns len(frames), 0. EAGAIN on write is possible only when the queue's
// socket send buffer is exhausted (TUNSETSNDBUF, macvtap), and then WriteBatch stops at
// that frame and returns the count. The test accepts both and checks the contract.
func TestWriteQueueFullPolicy(t *testing.T) {
	d, _ := openTestTAP(t, 1)
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	var hdr [VnetHdrLen]byte
	const batch = 256
	frames := make([][]unix.Iovec, batch)
	for i := range frames {
		frames[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "wq", uint32(i), 64))}
	}
	var written, eagain int
	for round := 0; round < 200; round++ {
		n, e := d.Queue(0).WriteBatch(frames)
		written += n
		switch {
		case e == 0:
			if n != batch {
				t.Fatalf("WriteBatch = %d, 0; want %d", n, batch)
			}
		case e == unix.EAGAIN:
			eagain++
			if n >= batch {
				t.Fatalf("EAGAIN with n = %d", n)
			}
		default:
			t.Fatalf("WriteBatch = %d, %v", n, e)
		}
	}
	t.Logf("tun, default sndbuf: wrote %d frames, %d batches ended in EAGAIN", written, eagain)

	// A tiny send buffer with frames too large for tun's build_skb fast path (which does not
	// charge the socket): now EAGAIN can show; WriteBatch must stop there and report it.
	if err := unix.IoctlSetPointerInt(d.Queue(0).Fd(), unix.TUNSETSNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	big := make([][]unix.Iovec, batch)
	for i := range big {
		big[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "wq", uint32(i), 8000))}
	}
	written, eagain = 0, 0
	for round := 0; round < 50; round++ {
		n, e := d.Queue(0).WriteBatch(big)
		written += n
		if e == unix.EAGAIN {
			eagain++
		} else if e != 0 {
			t.Fatalf("WriteBatch(8000-byte frames) = %d, %v", n, e)
		}
	}
	t.Logf("tun, 4 KiB sndbuf, 8000-byte frames: wrote %d frames, %d batches ended in EAGAIN", written, eagain)
}

// BAD-INPUTS 51: the TAP is deleted under an open queue. Writes and reads answer an errno
// that IsGone recognises, at once, without writing anything, and poll reports the fd
// readable with an error so an event loop wakes up and removes it.
func TestDeletedTAPIsGone(t *testing.T) {
	d, ns := openTestTAP(t, 2)
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	run := func(when string) {
		var hdr [VnetHdrLen]byte
		frames := make([][]unix.Iovec, 64)
		for i := range frames {
			frames[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "gone", uint32(i), 64))}
		}
		for qi := 0; qi < d.NumQueues(); qi++ {
			q := d.Queue(qi)
			start := time.Now()
			n, e := q.WriteBatch(frames)
			if n != 0 || !IsGone(e) {
				t.Errorf("%s: queue %d WriteBatch = %d, %v; want 0 and a gone errno", when, qi, n, e)
			}
			buf := make([]byte, 2048)
			rf := [][]unix.Iovec{{rawio.Iovec(buf)}}
			sizes := make([]int, 1)
			n, re := q.ReadBatch(rf, sizes)
			if n != 0 || !IsGone(re) {
				t.Errorf("%s: queue %d ReadBatch = %d, %v; want 0 and a gone errno", when, qi, n, re)
			}
			pfd := []unix.PollFd{{Fd: int32(q.Fd()), Events: unix.POLLIN | unix.POLLOUT}}
			pn, perr := unix.Poll(pfd, 1000)
			t.Logf("%s: queue %d: write %v (%s), read %v, poll=%d revents=%#x err=%v, %v",
				when, qi, e, e.Error(), re, pn, pfd[0].Revents, perr, time.Since(start))
			if time.Since(start) > 500*time.Millisecond {
				t.Errorf("%s: queue %d: gone condition took %v to show", when, qi, time.Since(start))
			}
		}
	}
	privtest.IP(t, ns, "link", "del", d.Name())
	run("after ip link del")
	if _, err := d.LookupIfindex(); err == nil {
		t.Error("LookupIfindex succeeded for a deleted TAP")
	}
}

// A TAP set down: writes fail with an errno IsGone recognises (the device no longer carries
// traffic) and resume after it comes back up.
func TestLinkDownIsDown(t *testing.T) {
	d, _ := openTestTAP(t, 1)
	var hdr [VnetHdrLen]byte
	frames := [][]unix.Iovec{{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "down", 0, 64))}}
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	if n, e := d.Queue(0).WriteBatch(frames); n != 1 || e != 0 {
		t.Fatalf("up: WriteBatch = %d, %v", n, e)
	}
	if err := d.SetUp(false); err != nil {
		t.Fatal(err)
	}
	n, e := d.Queue(0).WriteBatch(frames)
	t.Logf("down: WriteBatch = %d, %v", n, e)
	if n != 0 || !IsDown(e) || IsGone(e) {
		t.Fatalf("down: WriteBatch = %d, %v; want 0 and a down (not gone) errno", n, e)
	}
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	if n, e := d.Queue(0).WriteBatch(frames); n != 1 || e != 0 {
		t.Fatalf("up again: WriteBatch = %d, %v", n, e)
	}
}

// BAD-INPUTS 53: fd numbers above 1023 work (no select, no FD_SET anywhere).
func TestFdAbove1023(t *testing.T) {
	d, _ := openTestTAP(t, 1)
	if err := d.SetUp(true); err != nil {
		t.Fatal(err)
	}
	hi, err := unix.FcntlInt(uintptr(d.Queue(0).Fd()), unix.F_DUPFD_CLOEXEC, 1100)
	if err != nil {
		privtest.Missing(t, "F_DUPFD 1100: %v (RLIMIT_NOFILE too low?)", err)
	}
	q := &Queue{fd: hi}
	t.Cleanup(func() { q.Close() })
	if hi < 1100 {
		t.Fatalf("dup gave %d", hi)
	}
	pkt := packetSocket(t, d.Ifindex())
	var hdr [VnetHdrLen]byte
	frames := [][]unix.Iovec{{rawio.Iovec(hdr[:]), rawio.Iovec(testutil.TaggedFrame(broadcast, testSrcMAC, "hi", 7, 64))}}
	if n, e := q.WriteBatch(frames); n != 1 || e != 0 {
		t.Fatalf("WriteBatch on fd %d = %d, %v", hi, n, e)
	}
	if got := recvTestFrames(t, pkt, "hi", 1, 5*time.Second); len(got) != 1 {
		t.Fatalf("frame written on fd %d not seen", hi)
	}
	if _, err := unix.Write(pkt, testutil.TaggedFrame(broadcast, testSrcMAC, "hi-in", 9, 64)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	rf := [][]unix.Iovec{{rawio.Iovec(buf)}}
	sizes := []int{0}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(hi), Events: unix.POLLIN}} // poll(2), not select(2)
		unix.Poll(pfd, 100)
		if n, _ := q.ReadBatch(rf, sizes); n == 1 {
			if seq, ok := testutil.ParseTaggedFrame(buf[VnetHdrLen:sizes[0]], "hi-in"); ok && seq == 9 {
				return
			}
		}
	}
	t.Fatalf("injected frame not read on fd %d", hi)
}

// Probe on a TAP: 0 while attached, a gone errno once the TAP is deleted; no allocation.
func TestTAPProbe(t *testing.T) {
	d, ns := openTestTAP(t, 1)
	q := d.Queue(0)
	if e := q.Probe(); e != 0 {
		t.Fatalf("Probe = %v", e)
	}
	if a := testing.AllocsPerRun(10, func() { q.Probe() }); a != 0 {
		t.Fatalf("Probe allocates %v", a)
	}
	privtest.IP(t, ns, "link", "del", d.Name())
	if e := q.Probe(); !IsGone(e) {
		t.Fatalf("Probe after deletion = %v, want a gone errno", e)
	}
}

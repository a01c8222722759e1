package netdev

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/virtqueue"
	"github.com/vhostd/vhostd/virtqueue/vqdriver"
	"golang.org/x/sys/unix"
)

const testBase = 0x100000

// rig is one ring played by vqdriver over heap guest memory, with a
// datagram socketpair standing in for the TAP queue.
type rig struct {
	t    testing.TB
	mem  *virtqueue.Memory
	drv  *vqdriver.Driver
	q    *virtqueue.Queue
	tq   *tap.Queue
	peer int
	c    counters
}

func newRig(t testing.TB, size uint16, slab uint64, eventIdx bool) *rig {
	t.Helper()
	cfg := vqdriver.Layout(size, testBase, slab)
	cfg.EventIdx = eventIdx
	buf := make([]byte, cfg.End()-testBase+4096)
	reg, err := virtqueue.NewRegionFromBytes(virtqueue.RegionSpec{GPA: testBase, Size: uint64(len(buf)), UserAddr: 0x7f0000000000}, buf)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := virtqueue.NewMemory([]*virtqueue.Region{reg})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := vqdriver.New(buf, testBase, cfg)
	if err != nil {
		t.Fatal(err)
	}
	q, err := virtqueue.NewQueue(mem, virtqueue.Config{Size: size, Desc: cfg.Desc, Avail: cfg.Avail, Used: cfg.Used, EventIdx: eventIdx, Indirect: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	tq, peer := tapStandIn(t, 0)
	return &rig{t: t, mem: mem, drv: drv, q: q, tq: tq, peer: peer}
}

// tapStandIn is a datagram socketpair standing in for TAP queue i: the
// queue end, and the far end the test reads and writes frames on. Both
// are closed at cleanup.
func tapStandIn(t testing.TB, i int) (*tap.Queue, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Room for 64 KiB datagrams both ways.
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	q := tap.NewQueueFd(fds[0], i)
	t.Cleanup(func() { q.Close(); unix.Close(fds[1]) })
	standInWriteMode(t, q)
	return q, fds[1]
}

// hdrBytes is h as the TAP carries it. (Not in internal/testutil: tap's own tests import
// testutil, so testutil cannot import tap.)
func hdrBytes(h tap.VnetHdr) []byte {
	var b [tap.VnetHdrLen]byte
	h.Marshal(&b)
	return b[:]
}

func (r *rig) recv() []byte {
	b := make([]byte, 70000)
	n, err := unix.Read(r.peer, b)
	if err != nil {
		r.t.Fatalf("read from the TAP stand-in: %v", err)
	}
	return b[:n]
}

func (r *rig) runTX(tx *txPath) (notify bool) {
	for {
		n, err := tx.pop(budget, &r.c)
		if err != nil {
			r.t.Fatalf("pop: %v", err)
		}
		tx.toTAP(r.tq, true, &r.c)
		_, n2 := tx.complete()
		notify = n2 || notify
		if n == 0 {
			return notify
		}
	}
}

func TestTXFrameReachesTAP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		split func(hdr, frame []byte) [][]byte
	}{
		{"one descriptor", func(h, f []byte) [][]byte { return [][]byte{append(append([]byte{}, h...), f...)} }},
		{"header apart", func(h, f []byte) [][]byte { return [][]byte{h, f} }},
		{"header split in three", func(h, f []byte) [][]byte {
			return [][]byte{h[:3], h[3:7], append(append([]byte{}, h[7:]...), f[:5]...), f[5:]}
		}},
		{"one byte each", func(h, f []byte) [][]byte {
			var out [][]byte
			for _, b := range append(append([]byte{}, h...), f[:20]...) {
				out = append(out, []byte{b})
			}
			return append(out, f[20:])
		}},
	} {
		// 100 bytes is copied behind the header (smallFrame); 3000 goes
		// from guest memory.
		for _, size := range []int{100, 3000} {
			{
				t.Run(fmt.Sprintf("%s/%d bytes", tc.name, size), func(t *testing.T) {
					r := newRig(t, 64, 4096, true)
					tx := newTxPath()
					tx.reset(r.q, maxGSOFrame)
					h := hdrBytes(tap.VnetHdr{})
					f := testutil.PatternFrame(size, 7)
					if _, err := r.drv.AddChain(tc.split(h, f), nil); err != nil {
						t.Fatal(err)
					}
					r.drv.Publish()
					r.runTX(tx)
					got := r.recv()
					if want := append(append([]byte{}, h...), f...); !bytes.Equal(got, want) {
						t.Fatalf("TAP got %d bytes %x, want %x", len(got), got, want)
					}
					cs := r.drv.UsedAll()
					if len(cs) != 1 || cs[0].Len != 0 {
						t.Fatalf("used entries %+v, want one with length 0", cs)
					}
					s := r.c.local
					if s[cTxPackets] != 1 || s[cTxBytes] != uint64(size) {
						t.Fatalf("tx_packets %d tx_bytes %d, want 1 and %d", s[cTxPackets], s[cTxBytes], size)
					}
				})
			}
		}
	}
}

func TestTXDropsAndReturnsBadChains(t *testing.T) {
	r := newRig(t, 64, 4096, false)
	tx := newTxPath()
	tx.reset(r.q, 1518)
	good := append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(60, 1)...)
	lying := append(hdrBytes(tap.VnetHdr{Flags: tap.VirtioNetHdrFNeedsCsum, CsumStart: 200, CsumOffset: 16}), testutil.PatternFrame(60, 2)...)
	short := hdrBytes(tap.VnetHdr{}) // BAD-INPUTS 36: nothing after the header
	big := append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(1600, 3)...)
	for _, c := range []struct {
		out [][]byte
		in  []int
	}{{[][]byte{good}, nil}, {[][]byte{lying}, nil}, {[][]byte{short}, nil}, {[][]byte{big}, nil}, {[][]byte{good}, []int{16}}, {[][]byte{good}, nil}} {
		if _, err := r.drv.AddChain(c.out, c.in); err != nil {
			t.Fatal(err)
		}
	}
	r.drv.Publish()
	r.runTX(tx)
	for i := 0; i < 2; i++ {
		if got := r.recv(); !bytes.Equal(got, good) {
			t.Fatalf("frame %d: got %x", i, got)
		}
	}
	if _, err := unix.Read(r.peer, make([]byte, 10)); err != unix.EAGAIN {
		t.Fatalf("a malformed frame reached the TAP (read: %v)", err)
	}
	if cs := r.drv.UsedAll(); len(cs) != 6 {
		t.Fatalf("%d chains returned, want all 6 (BAD-INPUTS 41)", len(cs))
	}
	s := r.c.local
	if s[cTxMalformed] != 3 || s[cTxOversize] != 1 || s[cTxPackets] != 2 {
		t.Fatalf("tx_malformed %d tx_oversize %d tx_packets %d, want 3 1 2", s[cTxMalformed], s[cTxOversize], s[cTxPackets])
	}
}

func (r *rig) runRX(rx *rxPath) {
	for i := 0; i < 4; i++ {
		if _, err := rx.refill(budget, &r.c); err != nil {
			r.t.Fatalf("refill: %v", err)
		}
		rx.fromTAP(r.tq, budget, &r.c)
		rx.complete()
		if rx.stock.Empty() {
			rx.noteStarved(r.tq, &r.c) // as the worker does before sleeping
		}
	}
}

func TestRXFrameLandsInGuestBuffer(t *testing.T) {
	r := newRig(t, 64, 4096, true)
	rx := newRxPath()
	rx.reset(r.q, true, 1518+tap.VnetHdrLen)
	for i := 0; i < 4; i++ {
		r.drv.AddChain(nil, []int{2048})
	}
	r.drv.Publish()
	h := hdrBytes(tap.VnetHdr{})
	f := testutil.PatternFrame(300, 9)
	if _, err := unix.Write(r.peer, append(h, f...)); err != nil {
		t.Fatal(err)
	}
	r.runRX(rx)
	cs := r.drv.UsedAll()
	if len(cs) != 1 {
		t.Fatalf("%d used entries, want 1", len(cs))
	}
	got := cs[0].Written
	if len(got) != 312 || !bytes.Equal(got[12:], f) {
		t.Fatalf("guest got %d bytes", len(got))
	}
	if nb := binary.LittleEndian.Uint16(got[10:]); nb != 1 {
		t.Fatalf("num_buffers %d, want 1", nb)
	}
	// The three other chains stay stocked: GET_VRING_BASE must give them back.
	if rx.inflight != 3 || r.q.NextAvail()-uint16(rx.inflight) != 1 {
		t.Fatalf("inflight %d next avail %d", rx.inflight, r.q.NextAvail())
	}
}

func TestRXMergeableSpansChains(t *testing.T) {
	r := newRig(t, 64, 256, true)
	rx := newRxPath()
	rx.reset(r.q, true, 65535)
	for i := 0; i < 16; i++ {
		r.drv.AddChain(nil, []int{100})
	}
	r.drv.Publish()
	f := testutil.PatternFrame(350, 4) // 362 bytes with the header: 4 chains of 100
	unix.Write(r.peer, append(hdrBytes(tap.VnetHdr{}), f...))
	r.runRX(rx)
	cs := r.drv.UsedAll()
	if len(cs) != 4 {
		t.Fatalf("%d used entries, want 4", len(cs))
	}
	var all []byte
	for _, c := range cs {
		all = append(all, c.Written...)
	}
	if nb := binary.LittleEndian.Uint16(all[10:]); nb != 4 {
		t.Fatalf("num_buffers %d, want 4", nb)
	}
	if !bytes.Equal(all[12:], f) {
		t.Fatalf("frame corrupted across chains")
	}
	if r.c.local[cRxPackets] != 1 || r.c.local[cRxBytes] != 350 {
		t.Fatalf("rx counters %v", r.c.local)
	}
}

func TestRXWithoutMergeableTruncates(t *testing.T) {
	r := newRig(t, 64, 256, true)
	rx := newRxPath()
	rx.reset(r.q, false, 1518+12)
	r.drv.AddChain(nil, []int{100})
	r.drv.AddChain(nil, []int{100})
	r.drv.Publish()
	unix.Write(r.peer, append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(200, 1)...))
	r.runRX(rx)
	cs := r.drv.UsedAll()
	if len(cs) != 1 || cs[0].Len != 0 {
		t.Fatalf("used %+v, want one empty entry", cs)
	}
	if r.c.local[cRxTruncated] != 1 {
		t.Fatalf("rx_truncated %d", r.c.local[cRxTruncated])
	}
}

// A chain longer than the largest frame is read without the overflow
// buffer; a frame too long for it is still seen (the stand-in, like tun,
// reports only the bytes it copied) and counted rx_truncated, while frames
// that fit are delivered whole, as with the overflow buffer. MRG_RXBUF on
// and off.
func TestRXLongChainSeesOversizedFrames(t *testing.T) {
	for _, mrg := range []bool{false, true} {
		t.Run(fmt.Sprintf("mrg %v", mrg), func(t *testing.T) {
			r := newRig(t, 64, 4096, true)
			rx := newRxPath()
			const maxFrame = 200 + tap.VnetHdrLen
			rx.reset(r.q, mrg, maxFrame)
			for i := 0; i < 3; i++ {
				r.drv.AddChain(nil, []int{300})
			}
			r.drv.Publish()
			for _, n := range []int{500, 200, 250} {
				unix.Write(r.peer, append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(n, 1)...))
			}
			r.runRX(rx)
			cs := r.drv.UsedAll()
			if len(cs) != 3 || cs[0].Len != 0 || cs[1].Len != maxFrame || cs[2].Len != 250+tap.VnetHdrLen {
				t.Fatalf("used %d entries (lengths 0, %d, %d wanted): %+v", len(cs), maxFrame, 250+tap.VnetHdrLen, cs)
			}
			if got := r.c.local[cRxTruncated]; got != 1 {
				t.Fatalf("rx_truncated %d, want 1", got)
			}
			if got := r.c.local[cRxPackets]; got != 2 {
				t.Fatalf("rx_packets %d, want 2", got)
			}
		})
	}
}

func TestRXNoBuffersCounts(t *testing.T) {
	r := newRig(t, 64, 4096, true)
	rx := newRxPath()
	rx.reset(r.q, true, 1530)
	unix.Write(r.peer, append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(60, 1)...))
	r.runRX(rx)
	if r.c.local[cRxNoBuffer] == 0 {
		t.Fatalf("rx_no_buffer not counted (BAD-INPUTS 44)")
	}
	// The frame waits in the TAP until the guest gives a buffer.
	if _, err := r.drv.AddChain(nil, []int{2048}); err != nil {
		t.Fatal(err)
	}
	r.drv.Publish()
	r.runRX(rx)
	if cs := r.drv.UsedAll(); len(cs) != 1 || cs[0].Len != 72 {
		t.Fatalf("used %+v after the guest added a buffer", cs)
	}
}

// TestPathsZeroAllocs guards the hot path: a steady stream of frames both
// ways allocates nothing.
func TestPathsZeroAllocs(t *testing.T) {
	frame := append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(60, 1)...)
	// vqdriver allocates (it plays the guest), so the guest's chains are
	// all queued before measuring the device side alone.
	r2 := newRig(t, 256, 2048, true)
	tx2 := newTxPath()
	tx2.reset(r2.q, 1518)
	for i := 0; i < 200; i++ {
		r2.drv.AddChain([][]byte{frame}, nil)
	}
	r2.drv.Publish()
	for _, ring := range []bool{false, true} {
		if ring {
			// The same through an io_uring (tapwrite.go).
			if err := r2.tq.UseWriteRing(slotCount); err != nil {
				t.Fatal(err)
			}
		}
		dev := testing.AllocsPerRun(10, func() {
			tx2.pop(8, &r2.c)
			tx2.toTAP(r2.tq, true, &r2.c)
			tx2.complete()
			r2.c.publish()
		})
		if dev != 0 {
			t.Fatalf("TX path (%v) allocates %.1f times per batch", r2.tq.WriteMode(), dev)
		}
	}
	r3 := newRig(t, 256, 2048, true)
	rx := newRxPath()
	rx.reset(r3.q, true, 1530)
	for i := 0; i < 200; i++ {
		r3.drv.AddChain(nil, []int{2048})
	}
	r3.drv.Publish()
	dev := testing.AllocsPerRun(20, func() {
		for i := 0; i < 4; i++ {
			unix.Write(r3.peer, frame)
		}
		rx.refill(8, &r3.c)
		rx.fromTAP(r3.tq, 8, &r3.c)
		rx.complete()
		r3.c.publish()
	})
	if dev != 0 {
		t.Fatalf("RX path allocates %.1f times per batch", dev)
	}
}
